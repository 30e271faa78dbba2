"""State-dict files: reading, unwrapping, strict loading with clear errors; reference converters by name."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import vlsm
from naming import raises_naming
from vlsm.models.checkpoint import (
    CheckpointError,
    check_state_dict,
    load_state_dict_strict,
    read_state_dict_file,
    read_weights,
    unwrap_state_dict,
)
from vlsm.models.reference import CheckpointConversionError, load_weights, supported_models


def test_supported_models():
    assert set(supported_models()) == {"unet-d", "biomedclipseg-a", "clipseg-b", "ensemble-c"}
    assert issubclass(CheckpointConversionError, CheckpointError)


def test_unwrap_nested_and_prefixed():
    sd = {"a.weight": torch.ones(1), "b.bias": torch.zeros(2)}
    for wrapped in ({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 3},
                    {"model": {f"net.{k}": v for k, v in sd.items()}},
                    {"model_state_dict": {f"_orig_mod.{k}": v for k, v in sd.items()}},
                    {f"module.model.{k}": v for k, v in sd.items()}):
        out = unwrap_state_dict(wrapped)
        assert set(out) == set(sd)
    # a prefix shared by only some keys is kept
    assert set(unwrap_state_dict({"net.a": torch.ones(1), "b": torch.ones(1)})) == {"net.a", "b"}
    with pytest.raises(CheckpointError, match="no state dict"):
        unwrap_state_dict({"epoch": 3})


def test_read_files(tmp_path):
    sd = {"x.weight": torch.randn(2, 2)}
    save_file(sd, str(tmp_path / "w.safetensors"))
    assert torch.equal(read_state_dict_file(tmp_path / "w.safetensors")["x.weight"], sd["x.weight"])
    for suffix in (".ckpt", ".pt", ".pth", ".bin"):
        torch.save({"state_dict": sd}, tmp_path / f"w{suffix}")
        assert set(read_state_dict_file(tmp_path / f"w{suffix}")) == {"x.weight"}
    (tmp_path / "w.h5").write_bytes(b"xx")
    with pytest.raises(CheckpointError, match="unsupported checkpoint type"):
        read_state_dict_file(tmp_path / "w.h5")
    (tmp_path / "bad.pt").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="bad.pt"):
        read_state_dict_file(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_state_dict_file(tmp_path / "missing.pt")
    # a folder means a saved model folder: its model.safetensors
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        read_weights(tmp_path / "folder")
    save_file(sd, str(tmp_path / "folder" / "model.safetensors"))
    assert set(read_weights(tmp_path / "folder")) == {"x.weight"}


def test_strict_loading_names_file_model_and_first_problem():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    good = {k: torch.ones_like(v) for k, v in model.state_dict().items()}
    load_state_dict_strict(model, good, source="w.pt", model_name="toy")
    assert torch.equal(model[0].weight, torch.ones(3, 2))
    bad = {**good, "0.weight": torch.zeros(3, 3), "1.weight": torch.zeros(2, 3), "extra": torch.zeros(1)}
    del bad["0.bias"]
    with raises_naming(CheckpointError, "w.pt", "toy", "0.weight (3, 3) vs (3, 2)", "2 shape mismatches", "0.bias",
                       "extra", "--preset", "--img-size"):
        check_state_dict(model, bad, source="w.pt", model_name="toy")


def test_load_weights_ours_or_the_references(tmp_path):
    """One loader for every model's pretrained=: a saved folder or a file, our names or the reference's."""
    src = vlsm.create_model("unet-d", preset="tiny")
    src.save_pretrained(tmp_path / "ours")
    model = vlsm.create_model("unet-d", preset="tiny")
    load_weights(model, "unet-d", tmp_path / "ours")
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    paper = vlsm.create_model("unet-d", preset="tiny", encoder_channels=(8, 16, 32, 128))
    with raises_naming(CheckpointError, str(tmp_path / "ours"), "unet-d", "encoder.3.conv1.weight", "--preset"):
        load_weights(paper, "unet-d", tmp_path / "ours")
