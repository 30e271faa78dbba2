"""The VLSM-Ensemble models on tiny configs: both variants, golden outputs, batch (in)dependence,
trainable/frozen split, persistence, reference-checkpoint conversion, paper-size parameter counts."""
from __future__ import annotations

import warnings

import pytest
import torch

import vlsm
from golden.golden_tools import check_golden, seeded_input, seeded_state_dict
from naming import raises_naming
from vlsm.models.ensembles import ConcatTokenizer
from vlsm.models.ensembles.conversion import A_RULES, B_RULES, C_RULES
from vlsm.models.reference import CheckpointConversionError, supported_models
from vlsm.models.unet_d import REFERENCE_RENAMES

NAMES = ("biomedclipseg-a", "clipseg-b", "ensemble-c")
PROMPTS = ["a polyp", "small round polyp in the colon", "lesion", "red bump"]

_cache: dict = {}


def tiny(name: str, variant: str, seed: int = 0):
    """A tiny model with deterministic weights (cached: tests must not modify it)."""
    key = (name, variant, seed)
    if key not in _cache:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = vlsm.create_model(name, preset="tiny", variant=variant)
        model.load_state_dict(seeded_state_dict(model, seed=seed))
        _cache[key] = model.eval()
    return _cache[key]


def inputs(model, batch: int, seed: int = 1):
    s = model.preprocess.image_size
    tok = model.get_tokenizer()(PROMPTS[:batch])
    return seeded_input((batch, 3, s, s), seed=seed), tok["input_ids"], tok["attention_mask"]


@pytest.mark.parametrize("variant", ["fixed", "reference"])
@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_and_golden(name, variant):
    model = tiny(name, variant)
    px, ids, mask = inputs(model, 2)
    assert ids.shape[1] == model.get_tokenizer().context_length == model.preprocess.context_length
    with torch.no_grad():
        out = model(px, ids, mask)
    assert out.shape == (2, 1, model.preprocess.image_size, model.preprocess.image_size)
    assert torch.isfinite(out).all()
    check_golden(f"{name}_{variant}_tiny", out)


def _first_image_output(model, px, ids, mask):
    with torch.no_grad():
        return model(px, ids, mask)[0]


@pytest.mark.parametrize("name,variant,independent", [
    ("biomedclipseg-a", "fixed", True), ("clipseg-b", "fixed", True), ("ensemble-c", "fixed", True),
    ("biomedclipseg-a", "reference", True),  # the reference A is batch independent (only wasted work)
    ("clipseg-b", "reference", False), ("ensemble-c", "reference", False),
])
def test_batch_independence(name, variant, independent):
    model = tiny(name, variant)
    px, ids, mask = inputs(model, 3)
    alone = _first_image_output(model, px[:1], ids[:1], mask[:1])
    in_batch = _first_image_output(model, px, ids, mask)
    other = px.clone()
    other[1:] = seeded_input(other[1:].shape, seed=7)
    changed_others = _first_image_output(model, other, ids, mask)
    same = torch.allclose(alone, in_batch, atol=1e-5) and torch.allclose(in_batch, changed_others, atol=1e-5)
    if independent:
        torch.testing.assert_close(in_batch, alone, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(changed_others, in_batch, atol=1e-5, rtol=1e-5)
    else:
        assert not same, f"{name} reference variant should depend on the other images of the batch"
        assert not torch.allclose(in_batch, changed_others, atol=1e-4)


# parameters that are trainable but take no part in the segmentation forward (CLIP's contrastive head
# and image projection, the final ViT norm, the reference adapter's unused steps at this batch size)
UNUSED_TRAINABLE = ("clip.visual_projection", "clip.logit_scale", "vision_model.post_layernorm")


@pytest.mark.parametrize("variant", ["fixed", "reference"])
@pytest.mark.parametrize("name", NAMES)
def test_trainable_frozen_split(name, variant):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vlsm.create_model(name, preset="tiny", variant=variant)
    groups = model.parameter_groups()
    # BiomedCLIP's encoders are frozen everywhere; CLIP's train in the fixed variants (the CLIPSeg preset)
    # and are frozen in the reference variants (transformers' no_grad never let them train)
    for group, (total, trainable) in groups.items():
        if group.endswith("vlsm.encoder"):
            clip = "clip" in group or name == "clipseg-b"
            want = total if (clip and variant == "fixed") else 0
            assert trainable == want, (group, total, trainable)
        else:
            assert trainable == total, group
    px, ids, mask = inputs(model, 3)
    model.eval()  # no dropout: gradients are deterministic
    model(px, ids, mask).square().mean().backward()
    unused = list(UNUSED_TRAINABLE)
    if variant == "fixed":
        # the fixed adapters use the extracted layers only: later CLIP vision layers do not reach the output
        clip_vlsm = {"clipseg-b": lambda: model.branch.vlsm, "ensemble-c": lambda: model.clip.vlsm}.get(name)
        if clip_vlsm is not None:
            cfg = clip_vlsm().config
            unused += [f"vision_model.encoder.layers.{i}." for i in range(max(cfg.activation_blocks) + 1,
                                                                           cfg.num_hidden_layers)]
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, f"frozen {pname} got a gradient"
        elif p.grad is None:
            assert any(u in pname for u in unused), f"trainable {pname} got no gradient"
    total, trainable = model.parameter_counts()
    assert trainable == sum(t for _, t in groups.values()) and total == sum(t for t, _ in groups.values())


def test_ensemble_c_fixed_tokenizer_and_errors():
    model = tiny("ensemble-c", "fixed")
    tok = model.get_tokenizer()
    assert isinstance(tok, ConcatTokenizer)
    l1, l2 = tok.split
    assert l1 == model.biomed.vlsm.config.context_length and l2 == model.clip.vlsm.config.context_length
    assert model.preprocess.context_length == l1 + l2
    px, ids, mask = inputs(model, 1)
    with pytest.raises(ValueError, match="WordPiece"):
        model(px, ids[:, :l1], mask[:, :l1])
    # the reference variant shares one WordPiece id tensor, cut to CLIP's context length
    ref = tiny("ensemble-c", "reference")
    assert ref.get_tokenizer().kind == "wordpiece"


def test_other_image_size():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, variant in (("biomedclipseg-a", "reference"), ("clipseg-b", "fixed"), ("ensemble-c", "fixed")):
            if True:
                model = vlsm.create_model(name, preset="tiny", variant=variant, image_size=96).eval()
                assert model.preprocess.image_size == 96
                px, ids, mask = inputs(model, 1)
                with torch.no_grad():
                    assert model(px, ids, mask).shape == (1, 1, 96, 96)


def test_unknown_options_are_clear():
    with pytest.raises(ValueError, match="unknown option"):
        vlsm.create_model("clipseg-b", preset="tiny", widths=3)
    with pytest.raises(ValueError, match="no variant"):
        vlsm.create_model("clipseg-b", preset="tiny", variant="buggy")
    with pytest.raises(ValueError, match="set by the ensemble"):
        vlsm.create_model("clipseg-b", preset="tiny", unet={"inject_channels": (3,)})


@pytest.mark.parametrize("name,variant", [("ensemble-c", "fixed"), ("biomedclipseg-a", "reference"),
                                          ("clipseg-b", "reference")])
def test_save_and_load_pretrained(tmp_path, name, variant):
    model = tiny(name, variant)
    model.save_pretrained(tmp_path / "m")
    again = vlsm.load_pretrained(tmp_path / "m").eval()
    px, ids, mask = inputs(model, 2)
    ids2 = again.get_tokenizer()(PROMPTS[:2])
    assert torch.equal(ids2["input_ids"], ids)
    with torch.no_grad():
        torch.testing.assert_close(again(px, ids, mask), model(px, ids, mask))


# -- reference conversion -------------------------------------------------------------------------
def to_reference(name: str, state: dict) -> dict:
    """Our state dict in the reference code's names (inverse of the converter rules) + its unused modules."""
    rules = {"biomedclipseg-a": A_RULES, "clipseg-b": B_RULES, "ensemble-c": C_RULES}[name]
    inverse_unet = {v: k for k, v in REFERENCE_RENAMES.items()}
    out = {}
    for key, value in state.items():
        for rule in sorted(rules, key=lambda r: len(r.target or ""), reverse=True):
            if rule.target and key.startswith(rule.target):
                rest = key[len(rule.target):]
                if rule.rename is not None:  # a reference UNet_D, renamed layer by layer
                    module, _, leaf = rest.rpartition(".")
                    rest = f"{'outconv2' if module == 'fuse' else inverse_unet[module]}.{leaf}"
                out[rule.source + rest] = value
                break
        else:
            raise AssertionError(f"no rule produces {key}")
    for rule in rules:
        if rule.target is None:  # modules the reference builds but never calls
            out[rule.source + "weight"] = torch.zeros(1)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_convert_reference_checkpoint(name):
    model = tiny(name, "reference")
    ref = to_reference(name, model.state_dict())
    with pytest.warns(UserWarning, match="never uses"):
        converted = vlsm.convert_reference_checkpoint(name, {"state_dict": {f"net.{k}": v for k, v in ref.items()}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = vlsm.create_model(name, preset="tiny", variant="reference")
    fresh.load_state_dict(converted, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    with raises_naming(CheckpointConversionError, name, "mystery.weight", "another model"):
        vlsm.convert_reference_checkpoint(name, {**ref, "mystery.weight": torch.zeros(1)})
    assert name in supported_models()


def test_cli_convert_ensemble(tmp_path):
    from vlsm.cli import main

    model = tiny("clipseg-b", "reference")
    src = tmp_path / "b.pth"
    torch.save({"model": to_reference("clipseg-b", model.state_dict())}, src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["convert-checkpoint", "--from", "reference", "--model", "clipseg-b", "--preset", "tiny",
                     str(src), str(tmp_path / "out")]) == 0
        # paper preset does not fit a tiny checkpoint: clear error, nothing written
        assert main(["convert-checkpoint", "--model", "clipseg-b", str(src), str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
    loaded = vlsm.load_pretrained(tmp_path / "out").eval()
    px, ids, mask = inputs(model, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(px, ids, mask), model(px, ids, mask))


# -- paper sizes (built on the meta device: shapes only, no memory, no time) --------------------------
PAPER_COUNTS = {  # (total, trainable) of our models at paper size, random init
    # reference code: A 210,407,644 / 14,504,923, B 165,592,188, C 401,564,047 -- the differences are
    # exactly the modules it builds but never calls (dropped here and on conversion)
    ("biomedclipseg-a", "reference"): (209_570_362, 13_667_641),
    ("biomedclipseg-a", "fixed"): (209_570_362, 13_667_641),
    ("clipseg-b", "reference"): (165_180_985, 15_560_248),
    ("clipseg-b", "fixed"): (165_180_985, 165_180_985),
    ("ensemble-c", "reference"): (374_867_667, 29_344_209),
    ("ensemble-c", "fixed"): (374_713_654, 178_810_933),
}


@pytest.mark.parametrize("name,variant", sorted(PAPER_COUNTS))
def test_paper_parameter_counts(name, variant):
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = vlsm.create_model(name, variant=variant)
    assert model.parameter_counts() == PAPER_COUNTS[(name, variant)]
    assert model.preprocess.image_size == (352 if name == "clipseg-b" else 224)
