"""vlsm.devices: ``auto`` precision is bf16-mixed on a GPU with native bfloat16, 16-mixed on other
GPUs and 32-true on a CPU (CUDA faked with monkeypatched torch.cuda functions)."""
from __future__ import annotations

import pytest
import torch

from vlsm.devices import resolve_precision


@pytest.fixture()
def fake_cuda(monkeypatch):
    """A CUDA GPU whose native bf16 support the test chooses."""
    support = {"bf16": True}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        assert including_emulation is False, "emulated bf16 must not count"
        return support["bf16"]

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    return support


@pytest.mark.parametrize("device", ["auto", "cuda", "gpu", torch.device("cuda")])
def test_auto_is_bf16_where_the_gpu_has_it_else_fp16(fake_cuda, device):
    assert resolve_precision("auto", device) == "bf16-mixed"
    assert resolve_precision(None, device) == "bf16-mixed"
    fake_cuda["bf16"] = False
    assert resolve_precision("auto", device) == "16-mixed"


def test_cpu_stays_fp32_and_explicit_names_win(fake_cuda):
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("auto", torch.device("cpu")) == "32-true"
    assert resolve_precision("16-mixed", "cuda") == "16-mixed"
    assert resolve_precision("32-true", "gpu") == "32-true"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8", "cuda")


def test_no_gpu_means_fp32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", "auto") == "32-true"
