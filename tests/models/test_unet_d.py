"""UNet-D: sizes, the reference's exact computation, injection/fusion, conversion and CLI."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import vlsm
from golden.golden_tools import check_golden, seeded_input, seeded_state_dict
from naming import raises_naming
from vlsm.models.reference import CheckpointConversionError
from vlsm.models.unet_d import REFERENCE_RENAMES, UNetD, eca_kernel_size, unet_d_config


def tiny(**over):
    return vlsm.create_model("unet-d", preset="tiny", **over)


def seeded_tiny(**over):
    model = tiny(**over)
    model.load_state_dict(seeded_state_dict(model, seed=0))
    return model.eval()


def test_paper_parameter_count_and_preprocess():
    with torch.device("meta"):  # shapes and counts only
        model = vlsm.create_model("unet-d")
    total, trainable = model.parameter_counts()
    # reference UNet_D: 11,833,596 including its never-called outconv2 (3 parameters)
    assert total == trainable == 11_833_593
    assert model.preprocess.image_size == 352
    assert model.preprocess.tokenizer is None
    assert model.preprocess.mean == (0.485, 0.456, 0.406)
    assert eca_kernel_size(1240) == 5
    assert model.eca.conv.kernel_size == (5,)
    with torch.device("meta"):
        assert vlsm.create_model("unet-d", image_size=224).preprocess.image_size == 224


def test_tiny_forward_shapes():
    model = tiny().eval()
    assert model.preprocess.image_size == 64
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1, 64, 64)
    with torch.no_grad():  # non-square input of multiples of 16 works too
        assert model(torch.randn(1, 3, 32, 48)).shape == (1, 1, 32, 48)


def test_size_not_divisible_is_clear_error():
    model = tiny()
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 3, 60, 64))
    with pytest.raises(ValueError, match="not divisible by 16"):
        tiny(image_size=100)
    with raises_naming(ValueError, "unet-d", "'widths'", "encoder_channels"):
        tiny(widths=3)
    with raises_naming(ValueError, "decoder_channels (1, 2)", "(64, 128, 256, 512)", "2 vs 4"):
        unet_d_config("paper", decoder_channels=(1, 2))


def reference_forward(sd: dict, x: torch.Tensor, inject=(), fuse=None) -> torch.Tensor:
    """Independent functional re-statement of the reference UNet_D forward (eval mode)."""
    def conv(name, t, pad=1):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=pad)

    def bn(name, t):
        return F.batch_norm(t, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                            sd[f"{name}.weight"], sd[f"{name}.bias"], False, 0.0, 1e-5)

    def up(name, t):
        return F.conv_transpose2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=2)

    feats = []
    for k in range(4):
        x = conv(f"encoder.{k}.conv2", conv(f"encoder.{k}.conv1", x))
        x = F.max_pool2d(torch.relu(bn(f"encoder.{k}.bn", x)), 2)
        feats.append(x)
    if inject:
        x = torch.cat([inject[0], x, *inject[1:]], 1)
    x = F.conv2d(x, sd["bottleneck.weight"], sd["bottleneck.bias"])
    g = x.mean((2, 3))[:, None, :]
    k = sd["eca.conv.weight"].shape[-1]
    g = torch.sigmoid(F.conv1d(g, sd["eca.conv.weight"], padding=(k - 1) // 2))
    x = x * g[:, 0, :, None, None]
    for k in range(4):
        x = up(f"decoder.{k}.up", x)
        x = conv(f"decoder.{k}.conv", conv(f"decoder.{k}.conv", x))
        x = torch.relu(bn(f"decoder.{k}.bn", x))
        if k < 3:
            x = torch.cat([x, feats[2 - k]], 1)
    out = F.conv2d(x, sd["head.weight"], sd["head.bias"])
    if fuse is not None:
        out = F.conv2d(torch.cat([fuse, out], 1), sd["fuse.weight"], sd["fuse.bias"])
    return out


def test_matches_functional_restatement_of_reference():
    model = seeded_tiny()
    x = seeded_input((2, 3, 64, 64))
    with torch.no_grad():
        ours = model(x)
        want = reference_forward(model.state_dict(), x)
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-5)


def test_inject_and_fuse_match_reference_order():
    cfg_inject = (5, 3)
    model = seeded_tiny(inject_channels=cfg_inject, fuse_channels=1)
    x = seeded_input((2, 3, 64, 64))
    inj = [seeded_input((2, c, 4, 4), seed=2 + i) for i, c in enumerate(cfg_inject)]
    fuse = seeded_input((2, 1, 64, 64), seed=9)
    with torch.no_grad():
        ours = model(x, inject=inj, fuse=fuse)
        want = reference_forward(model.state_dict(), x, inject=inj, fuse=fuse)
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-5)
    assert model.bottleneck.in_channels == 64 + 8
    with pytest.raises(ValueError, match="injected bottleneck maps"):
        model(x, fuse=fuse)
    with pytest.raises(ValueError, match="fuse"):
        model(x, inject=inj)


def test_golden_output():
    model = seeded_tiny()
    with torch.no_grad():
        out = model(seeded_input((2, 3, 64, 64)))
    check_golden("unet_d_tiny", out)


def test_golden_update_rewrites_and_never_passes(tmp_path, monkeypatch):
    from golden import golden_tools

    monkeypatch.setattr(golden_tools, "GOLDEN_DIR", tmp_path)
    monkeypatch.setenv("VLSM_UPDATE_GOLDEN", "1")
    with pytest.raises(pytest.skip.Exception, match="rewrote .*unet_d_probe.json"):
        check_golden("unet_d_probe", torch.ones(2))
    assert (tmp_path / "unet_d_probe.json").is_file()
    monkeypatch.delenv("VLSM_UPDATE_GOLDEN")
    check_golden("unet_d_probe", torch.ones(2))
    with pytest.raises(AssertionError, match="unet_d_probe: mean"):
        check_golden("unet_d_probe", torch.zeros(2))


def test_every_parameter_trains():
    model = tiny().train()
    out = model(torch.randn(2, 3, 32, 32))
    out.mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad
    assert all(p.requires_grad for p in model.parameters())


def to_reference_names(state: dict) -> dict:
    inverse = {v: k for k, v in REFERENCE_RENAMES.items()}
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        out[f"{inverse[module]}.{leaf}"] = value
    return out


def test_convert_reference_state_dict_strict_and_lists_unused():
    model = seeded_tiny()
    ref = to_reference_names(model.state_dict())
    ref["outconv2.weight"] = torch.zeros(1, 2, 1, 1)
    ref["outconv2.bias"] = torch.zeros(1)
    with pytest.warns(UserWarning, match="outconv2"):
        converted = vlsm.convert_reference_checkpoint("unet-d", {"state_dict": {f"net.{k}": v for k, v in ref.items()}})
    fresh = tiny()
    fresh.load_state_dict(converted, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    with pytest.raises(CheckpointConversionError, match="unknown UNet-D parameter"):
        vlsm.convert_reference_checkpoint("unet-d", {**ref, "mystery.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="no reference converter"):
        vlsm.convert_reference_checkpoint("not-a-model", ref)


def test_cli_convert_checkpoint_roundtrip(tmp_path):
    from vlsm.cli import main

    model = seeded_tiny()
    ref = to_reference_names(model.state_dict())
    ref.update({"outconv2.weight": torch.zeros(1, 2, 1, 1), "outconv2.bias": torch.zeros(1)})
    src = tmp_path / "ref.ckpt"
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in ref.items()}}, src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["convert-checkpoint", "--from", "reference", "--model", "unet-d", str(src),
                     str(tmp_path / "out")]) == 0
        assert main(["convert-checkpoint", "--model", "unet-d", str(src), str(tmp_path / "w.safetensors")]) == 0
        # OUT exists: refuse without --force
        assert main(["convert-checkpoint", "--model", "unet-d", str(src), str(tmp_path / "out")]) == 2
        assert main(["convert-checkpoint", "--model", "unet-d", str(tmp_path / "missing.pt"),
                     str(tmp_path / "o2")]) == 2
    loaded = vlsm.load_pretrained(tmp_path / "out").eval()
    x = seeded_input((1, 3, 64, 64))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    # the .safetensors file loads through `pretrained=` too
    again = vlsm.create_model("unet-d", preset="tiny", pretrained=str(tmp_path / "w.safetensors")).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_unet_d_is_a_segmentation_model():
    model = tiny()
    assert isinstance(model, UNetD)
    assert not model.uses_text
    assert model.spec.name == "unet-d" and model.spec.preset == "tiny"
    entry = vlsm.models.get_entry("unet-d")
    assert entry.paper_name == "UNet-D"
