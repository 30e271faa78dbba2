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


def test_channels_last_convolutions_keep_names_and_outputs():
    import vlsm
    from vlsm.devices import channels_last_convolutions

    torch.manual_seed(0)
    model = vlsm.create_model("unet-d", preset="tiny", image_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
    keys = list(model.state_dict())
    assert channels_last_convolutions(model) > 0
    conv = model.encoder[0].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-5)


def test_tune_kernels_benchmarks_cudnn_on_cuda_unless_deterministic(fake_cuda, monkeypatch):
    from vlsm.devices import tune_kernels

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert tune_kernels("cuda") and torch.backends.cudnn.benchmark
    assert not tune_kernels("gpu", deterministic=True) and not torch.backends.cudnn.benchmark
    assert not tune_kernels("cpu") and not torch.backends.cudnn.benchmark
