"""vlsm.models.Stack: any VLSM with UNet-D or an image-only CNN, built directly or from a spec."""
from __future__ import annotations

import warnings

import pytest
import torch
import yaml

import vlsm
from golden.golden_tools import seeded_input, seeded_state_dict
from vlsm.models import Stack
from vlsm.models.ensembles.stack import with_injection

PROMPTS = ["a polyp", "lesion", "red bump"]


def _vlsm(name="clipseg"):
    return vlsm.create_model(name, preset="tiny")


def _inputs(model, batch):
    tok = model.get_tokenizer()(PROMPTS[:batch])
    s = model.preprocess.image_size
    return seeded_input((batch, 3, s, s)), tok["input_ids"], tok["attention_mask"]


def test_stack_unet_d_bottleneck_conv1x1_is_batch_independent():
    model = Stack(vlsm=_vlsm(), cnn=vlsm.create_model("unet-d", preset="tiny"), preset="tiny").eval()
    assert model.cnn.config.inject_channels == (model.sizes.reduce_dim,)
    px, ids, mask = _inputs(model, 3)
    with torch.no_grad():
        out = model(px, ids, mask)
        alone = model(px[:1], ids[:1], mask[:1])
    assert out.shape == (3, 1, 64, 64)
    torch.testing.assert_close(out[:1], alone, atol=1e-4, rtol=1e-4)


def test_extending_unet_d_keeps_its_function():
    unet = vlsm.create_model("unet-d", preset="tiny")
    unet.load_state_dict(seeded_state_dict(unet))
    unet.eval()
    extended = with_injection(unet, 5).eval()
    x = seeded_input((2, 3, 64, 64))
    with torch.no_grad():
        torch.testing.assert_close(extended(x, inject=[torch.randn(2, 5, 4, 4)]), unet(x))


@pytest.mark.parametrize("fusion", ["mean", "weighted"])
def test_parameter_free_and_weighted_fusion(fusion):
    model = Stack(vlsm=_vlsm("biomedclipseg"), cnn={"name": "unet", "preset": "tiny"}, fusion=fusion,
                  inject="none", preset="tiny").eval()
    px, ids, mask = _inputs(model, 2)
    with torch.no_grad():
        out = model(px, ids, mask)
        a = model.vlsm(px, ids, mask)
        b = model.cnn(px)
    torch.testing.assert_close(out, 0.5 * (a + b))  # weighted starts at sigmoid(0) = 0.5
    n_fusion = sum(p.numel() for n, p in model.named_parameters() if n.startswith("fusion"))
    assert n_fusion == (1 if fusion == "weighted" else 0)


def test_stack_from_yaml_spec_via_registry(tmp_path):
    spec = yaml.safe_load("""
name: stack
preset: tiny
overrides:
  vlsm: {name: clipseg, preset: tiny}
  cnn: {name: unet-d, preset: tiny}
  fusion: conv1x1
  inject: bottleneck
""")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vlsm.create_model(spec["name"], preset=spec["preset"], **spec["overrides"]).eval()
    assert isinstance(model, Stack)
    px, ids, mask = _inputs(model, 2)
    model.save_pretrained(tmp_path / "stack")
    again = vlsm.load_pretrained(tmp_path / "stack").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(px, ids, mask), model(px, ids, mask))


def test_stack_errors():
    with pytest.raises(ValueError, match="needs UNet-D"):
        Stack(vlsm=_vlsm(), cnn={"name": "unet", "preset": "tiny"}, inject="bottleneck", preset="tiny")
    with pytest.raises(ValueError, match="fusion"):
        Stack(vlsm=_vlsm(), fusion="max", preset="tiny")
    with pytest.raises(ValueError, match="image-only"):
        Stack(vlsm=_vlsm(), cnn=_vlsm(), inject="none", preset="tiny")
    with pytest.raises(ValueError, match="unknown option"):
        vlsm.create_model("stack", preset="tiny", vlsms={"name": "clipseg"})
