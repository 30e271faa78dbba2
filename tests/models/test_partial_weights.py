"""Weight sources that lack tensors or hold tensors of another shape, in each real format.

Missing tensors are an error naming the file, the model and the first missing keys, unless
``create_model(..., allow_partial_weights=True)`` (then a warning, and the spec does not record it).
A shape mismatch always fails, naming the file, the model, the first key and both shapes.
"""
from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file, save_file

import vlsm
from models.test_weights import _biomedclip_dir  # tests/ is on the path (pyproject: pythonpath)
from naming import raises_naming
from vlsm.models.checkpoint import CheckpointError, load_state_dict_strict
from vlsm.models.vlsm_base import load_config_json

SHAPES_2D_VS_3D = re.compile(r"\(\d+, \d+, 2\) vs \(\d+, \d+\)")  # the file's shape, then the model's


def _edit_safetensors(path, drop=(), reshape=()):
    state = load_file(str(path))
    for key in drop:
        del state[key]
    for key in reshape:
        state[key] = torch.zeros(*state[key].shape, 2)
    save_file(state, str(path), metadata={"format": "pt"})


def _edit_torch(path, drop=(), reshape=()):
    state = torch.load(str(path), weights_only=True)
    for key in drop:
        del state[key]
    for key in reshape:
        state[key] = torch.zeros(*state[key].shape, 2)
    torch.save(state, str(path))


# -- transformers CLIPSeg folder -----------------------------------------------------------------------------
@pytest.fixture()
def clipseg_folder(tmp_path):
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    torch.manual_seed(1)
    CLIPSegForImageSegmentation(CLIPSegConfig(**load_config_json("clipseg_tiny.json"))).save_pretrained(
        tmp_path / "clipseg")
    return tmp_path / "clipseg"


def test_clipseg_folder_missing_tensors(clipseg_folder):
    _edit_safetensors(clipseg_folder / "model.safetensors", drop=["decoder.film_add.bias", "decoder.film_mul.bias"])
    with raises_naming(CheckpointError, str(clipseg_folder / "model.safetensors"), "clipseg", "decoder.film_add.bias",
                       "decoder.film_mul.bias", "allow_partial_weights=True", "--allow-partial-weights"):
        vlsm.create_model("clipseg", pretrained=str(clipseg_folder), preset="tiny")
    with pytest.warns(UserWarning, match="is missing 2 tensors"):
        model = vlsm.create_model("clipseg", pretrained=str(clipseg_folder), preset="tiny",
                                  allow_partial_weights=True)
    assert "allow_partial_weights" not in model.spec.overrides and "allow_partial_weights" not in str(model.spec)


def test_clipseg_folder_shape_mismatch(clipseg_folder):
    _edit_safetensors(clipseg_folder / "model.safetensors", reshape=["decoder.film_add.weight"])
    for allow in (False, True):
        with raises_naming(CheckpointError, str(clipseg_folder / "model.safetensors"), "clipseg",
                           "decoder.film_add.weight", SHAPES_2D_VS_3D):
            vlsm.create_model("clipseg", pretrained=str(clipseg_folder), preset="tiny", allow_partial_weights=allow)


def test_biomedclipseg_d_decoder_source_missing_tensors(tmp_path, clipseg_folder):
    folder, _ = _biomedclip_dir(tmp_path)
    _edit_safetensors(clipseg_folder / "model.safetensors", drop=["decoder.film_add.bias"])
    with raises_naming(CheckpointError, str(clipseg_folder / "model.safetensors"), "CLIPSeg", "decoder.film_add.bias",
                       "allow_partial_weights=True"):
        vlsm.create_model("biomedclipseg-d", pretrained=str(folder), preset="tiny",
                          decoder_pretrained=str(clipseg_folder))


# -- open_clip BiomedCLIP folder ------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_biomedclip_folder_missing_tensors(tmp_path, fmt):
    folder, _ = _biomedclip_dir(tmp_path, fmt=fmt)
    name = "open_clip_pytorch_model.bin" if fmt == "bin" else "open_clip_model.safetensors"
    edit = _edit_torch if fmt == "bin" else _edit_safetensors
    edit(folder / name, drop=["text.proj.0.weight"])
    with raises_naming(CheckpointError, name, "BiomedCLIP", "text.proj.0.weight", "allow_partial_weights=True"):
        vlsm.create_model("biomedclipseg", pretrained=str(folder), preset="tiny")
    with pytest.warns(UserWarning, match="text.proj.0.weight"):
        model = vlsm.create_model("biomedclipseg", pretrained=str(folder), preset="tiny", allow_partial_weights=True)
    assert model.spec.overrides == {}


def test_biomedclip_folder_shape_mismatch(tmp_path):
    folder, _ = _biomedclip_dir(tmp_path)
    _edit_torch(folder / "open_clip_pytorch_model.bin", reshape=["text.proj.0.weight"])
    with raises_naming(CheckpointError, "open_clip_pytorch_model.bin", "BiomedCLIP", "text.proj.0.weight",
                       SHAPES_2D_VS_3D, "--preset"):
        vlsm.create_model("biomedclipseg", pretrained=str(folder), preset="tiny", allow_partial_weights=True)


# -- CRIS .pt ---------------------------------------------------------------------------------------------------
def _cris_folder(tmp_path):
    torch.manual_seed(0)
    model = vlsm.create_model("cris", preset="tiny")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "cris.pt")
    return tmp_path, model


def test_cris_pt_missing_tensors(tmp_path):
    folder, model = _cris_folder(tmp_path)
    state = torch.load(folder / "cris.pt", weights_only=True)
    del state["state_dict"]["module.proj.txt.weight"]
    torch.save(state, folder / "cris.pt")
    with raises_naming(CheckpointError, "cris.pt", "proj.txt.weight", "allow_partial_weights=True"):
        vlsm.create_model("cris", pretrained=str(folder), preset="tiny")
    with pytest.warns(UserWarning, match="proj.txt.weight"):
        loaded = vlsm.create_model("cris", pretrained=str(folder), preset="tiny", allow_partial_weights=True)
    assert torch.equal(loaded.neck.state_dict()["f1_v_proj.0.weight"], model.neck.state_dict()["f1_v_proj.0.weight"])


def test_cris_pt_shape_mismatch(tmp_path):
    folder, _ = _cris_folder(tmp_path)
    state = torch.load(folder / "cris.pt", weights_only=True)
    state["state_dict"]["module.proj.txt.weight"] = torch.zeros(3, 3)
    torch.save(state, folder / "cris.pt")
    with raises_naming(CheckpointError, "cris.pt", "proj.txt.weight", "(3, 3) vs", "--preset"):
        vlsm.create_model("cris", pretrained=str(folder), preset="tiny", allow_partial_weights=True)


# -- our own model folders ----------------------------------------------------------------------------------------
def test_saved_model_folder_missing_tensors(tmp_path):
    torch.manual_seed(0)
    model = vlsm.create_model("unet-d", preset="tiny")
    model.save_pretrained(tmp_path / "m")
    key = next(iter(model.state_dict()))
    _edit_safetensors(tmp_path / "m" / "model.safetensors", drop=[key])
    with raises_naming(CheckpointError, str(tmp_path / "m" / "model.safetensors"), "unet-d", key,
                       "allow_partial_weights=True"):
        vlsm.load_pretrained(tmp_path / "m")
    with pytest.warns(UserWarning, match=key):
        vlsm.load_pretrained(tmp_path / "m", allow_partial_weights=True)


def test_tied_tensors_saved_once_still_load():
    from safetensors.torch import save_model

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(2, 2)
            self.b = torch.nn.Linear(2, 2)
            self.b.weight = self.a.weight

    import tempfile

    src, dst = Tied(), Tied()
    with tempfile.TemporaryDirectory() as d:
        save_model(src, f"{d}/w.safetensors")
        state = load_file(f"{d}/w.safetensors")
    assert len(state) == 3  # the shared weight once
    load_state_dict_strict(dst, state, source="w.safetensors", model_name="tied")
    assert torch.equal(dst.b.weight, src.a.weight)
