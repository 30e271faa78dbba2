"""The frozen image encoder split off (SegmentationModel.frozen_image_features / forward_with_features).

What training's feature cache relies on: with a frozen encoder the features are a fixed function of each
image (the same in train and eval mode, row by row), and running the rest of the model on features computed
earlier gives the very logits and gradients of the plain forward pass.
"""
from __future__ import annotations

import pytest
import torch

import vlsm

PROMPTS = ["a polyp", "small polyp", "polyp"]
FROZEN_CLIPSEG = {"freeze_encoder": True}
# every model with a frozen image encoder: both variants of the ensembles, Ensemble-C with one or two
CASES = [("biomedclipseg", {}), ("biomedclipseg-d", {}), ("clipseg", FROZEN_CLIPSEG),
         ("biomedclipseg-a", {"variant": "fixed"}), ("biomedclipseg-a", {"variant": "reference"}),
         ("clipseg-b", {"variant": "fixed", "clipseg": FROZEN_CLIPSEG}), ("clipseg-b", {"variant": "reference"}),
         ("ensemble-c", {"variant": "fixed"}), ("ensemble-c", {"variant": "fixed", "clipseg": FROZEN_CLIPSEG}),
         ("ensemble-c", {"variant": "reference"}),
         ("stack", {"vlsm": {"name": "biomedclipseg", "preset": "tiny"}, "cnn": {"name": "unet-d", "preset": "tiny"}})]
IDS = ["biomedclipseg", "biomedclipseg-d", "clipseg-frozen", "a-fixed", "a-reference", "b-fixed-frozen", "b-reference",
       "c-fixed", "c-fixed-frozen", "c-reference", "stack"]


def _tiny(name, **kw):
    torch.manual_seed(0)
    return vlsm.create_model(name, preset="tiny", **kw)


def _batch(model, n=3):
    g = torch.Generator().manual_seed(1)
    s = model.preprocess.image_size
    t = model.get_tokenizer()(PROMPTS[:n])
    return torch.randn(n, 3, s, s, generator=g), t["input_ids"], t["attention_mask"]


def _grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_forward_with_features_is_forward(name, kw):
    model = _tiny(name, **kw)
    x, ids, mask = _batch(model)
    assert model.has_frozen_image_features()
    for train in (False, True):
        model.train(train)
        torch.manual_seed(3)  # the trainable adapters' dropout draws the same in both passes
        want = model(x, ids, mask)
        feats = model.frozen_image_features(x)
        assert isinstance(feats, tuple) and all(f.shape[0] == len(x) and not f.requires_grad for f in feats)
        torch.manual_seed(3)
        got = model.forward_with_features(x, feats, ids, mask)
        assert torch.equal(got, want)
    # the gradients of the trainable parts are those of the plain pass
    model.train()
    torch.manual_seed(3)
    model.zero_grad()
    model(x, ids, mask).square().mean().backward()
    want = _grads(model)
    feats = model.frozen_image_features(x)
    torch.manual_seed(3)
    model.zero_grad()
    model.forward_with_features(x, feats, ids, mask).square().mean().backward()
    got = _grads(model)
    assert want and got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_features_are_per_image_and_mode_independent(name, kw):
    """Row i depends on image i only, and train mode computes what eval mode computes: features stored in
    one epoch (one batch composition, train mode) serve another batch and the validation pass."""
    model = _tiny(name, **kw)
    x, _, _ = _batch(model)
    model.eval()
    with torch.no_grad():
        full = model.frozen_image_features(x)
    model.train()
    part = model.frozen_image_features(x[1:])
    for f, p in zip(full, part, strict=True):
        torch.testing.assert_close(p, f[1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,kw", [("clipseg", {}), ("clipseg-b", {"variant": "fixed"}), ("unet-d", {}),
                                     ("biomedclipseg", {"freeze_encoder": False})],
                         ids=["clipseg-trained", "b-fixed-trained", "unet-d", "biomedclipseg-unfrozen"])
def test_no_features_when_nothing_is_frozen(name, kw):
    model = _tiny(name, **kw)
    assert not model.has_frozen_image_features()
    x, ids, mask = _batch(model) if model.uses_text else (torch.randn(2, 3, 64, 64), None, None)
    assert model.frozen_image_features(x) is None
    model.eval()
    assert torch.equal(model.forward_with_features(x, None, ids, mask), model(x, ids, mask))
    with pytest.raises(ValueError, match="feature"):
        model.forward_with_features(x, (torch.zeros(len(x), 1),), ids, mask)


def test_partly_frozen_ensemble_caches_the_frozen_branch_only():
    """Ensemble-C fixed with a trainable CLIPSeg: only BiomedCLIP's activations are features."""
    model = _tiny("ensemble-c", variant="fixed")
    biomed, clip = model.biomed.vlsm, model.clip.vlsm
    assert biomed.has_frozen_image_features() and not clip.has_frozen_image_features()
    x, _, _ = _batch(model)
    feats = model.frozen_image_features(x)
    assert len(feats) == biomed.image_feature_count()


def test_dropout_in_a_frozen_encoder_means_no_features():
    """A frozen encoder whose dropout is on in train mode is not a fixed function of the image."""
    model = _tiny("biomedclipseg")
    model.biomedclip.visual.trunk.blocks[0].attn.attn_drop.p = 0.1
    model.train()
    assert not model.has_frozen_image_features()
    x, _, _ = _batch(model)
    assert model.frozen_image_features(x) is None
    model.eval()
    assert model.has_frozen_image_features()


def test_wrong_number_of_features_is_refused():
    model = _tiny("biomedclipseg").eval()
    x, ids, mask = _batch(model)
    feats = model.frozen_image_features(x)
    with pytest.raises(ValueError, match="image feature tensors"):
        model.forward_with_features(x, feats[:-1], ids, mask)
