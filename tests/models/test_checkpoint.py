"""Reading and unwrapping checkpoint files for reference conversion."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from vlsm.models.reference import ConversionError, check_keys, read_state_dict_file, supported_models, unwrap_state_dict


def test_supported_models():
    assert {"unet-d", "biomedclipseg-a", "clipseg-b", "ensemble-c"} <= set(supported_models())


def test_unwrap_nested_and_prefixed():
    sd = {"a.weight": torch.ones(1), "b.bias": torch.zeros(2)}
    for wrapped in ({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 3},
                    {"model": {f"net.{k}": v for k, v in sd.items()}},
                    {f"module.model.{k}": v for k, v in sd.items()}):
        out = unwrap_state_dict(wrapped)
        assert set(out) == set(sd)
    # a prefix shared by only some keys is kept
    assert set(unwrap_state_dict({"net.a": torch.ones(1), "b": torch.ones(1)})) == {"net.a", "b"}
    with pytest.raises(ConversionError, match="no state dict"):
        unwrap_state_dict({"epoch": 3})


def test_read_files(tmp_path):
    sd = {"x.weight": torch.randn(2, 2)}
    save_file(sd, str(tmp_path / "w.safetensors"))
    assert torch.equal(read_state_dict_file(tmp_path / "w.safetensors")["x.weight"], sd["x.weight"])
    torch.save({"state_dict": sd}, tmp_path / "w.ckpt")
    assert set(read_state_dict_file(tmp_path / "w.ckpt")) == {"x.weight"}
    (tmp_path / "w.h5").write_bytes(b"xx")
    with pytest.raises(ConversionError, match="unsupported checkpoint type"):
        read_state_dict_file(tmp_path / "w.h5")
    (tmp_path / "bad.pt").write_bytes(b"not a pickle")
    with pytest.raises(ConversionError, match="bad.pt"):
        read_state_dict_file(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_state_dict_file(tmp_path / "missing.pt")


def test_check_keys_reports_all_problems():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    with pytest.raises(ConversionError, match="missing 1.*unexpected 1.*shape mismatch"):
        check_keys(model, {"0.weight": torch.zeros(3, 3), "extra": torch.zeros(1)})
