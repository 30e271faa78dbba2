"""smp baselines (UNet, UNet++, DeepLabv3+): tiny forward, paper sizes, offline encoder weights."""
from __future__ import annotations

import pytest
import torch

import vlsm
from naming import raises_naming

ARCHS = ("unet", "unetpp", "deeplabv3plus")


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_forward(arch):
    model = vlsm.create_model(arch, preset="tiny").eval()
    assert not model.uses_text and model.preprocess.image_size == 64
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64), torch.zeros(2, 1, dtype=torch.long))
    assert out.shape == (2, 1, 64, 64)
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.randn(1, 3, 60, 60))


@pytest.mark.parametrize("arch,count", [("unet", 32_521_105), ("unetpp", 48_985_745), ("deeplabv3plus", 26_677_585)])
def test_paper_size(arch, count):
    with torch.device("meta"):
        model = vlsm.create_model(arch)
    assert model.parameter_counts() == (count, count)
    assert model.preprocess.image_size == 256
    assert model.net.encoder.__class__.__name__ == "ResNetEncoder"


def test_imagenet_weights_missing_offline_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="smp-hub/resnet18.imagenet"):
        vlsm.create_model("unet", preset="tiny", pretrained="imagenet")


def test_encoder_weights_from_local_folder(tmp_path):
    from safetensors.torch import save_file

    donor = vlsm.create_model("deeplabv3plus", preset="tiny")
    state = {k: v.contiguous() for k, v in donor.net.encoder.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    model = vlsm.create_model("deeplabv3plus", preset="tiny", pretrained=str(tmp_path))
    for k, v in model.net.encoder.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_unknown_option():
    with raises_naming(ValueError, "unet", "'encoder'", "encoder_name"):
        vlsm.create_model("unet", preset="tiny", encoder="resnet18")
