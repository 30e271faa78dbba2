"""``frozen_dropout``: whether frozen encoders run their dropout when the model trains.

true (default, the reference code's behaviour): a frozen encoder follows the model into train mode, so the
tiny BiomedCLIPSeg's BERT (dropout 0.1) gives other outputs every step and nothing can cache it. false: the
frozen encoders stay in eval mode, so train-mode forwards are deterministic there and the text cache and the
frozen image features serve training; the decoder and the trainable parts switch modes as usual.
"""
from __future__ import annotations

import json

import pytest
import torch

import vlsm
from naming import raises_naming
from vlsm.models.base import SPEC_FILE
from vlsm.models.unet_d import UNetD

PROMPTS = ["a polyp", "small polyp"]


def _tiny(name, **kw):
    torch.manual_seed(0)
    return vlsm.create_model(name, preset="tiny", **kw)


def _batch(model, prompts=PROMPTS):
    g = torch.Generator().manual_seed(0)
    s = model.preprocess.image_size
    t = model.get_tokenizer()(list(prompts))
    return torch.randn(len(prompts), 3, s, s, generator=g), t["input_ids"], t["attention_mask"]


def _count_text_runs(vlsm_model):
    """Rows the text encoder of ``vlsm_model`` really computes (cache misses included, hits not)."""
    rows = []
    original = vlsm_model.run_text_encoder

    def counted(ids, mask):
        rows.append(ids.shape[0])
        return original(ids, mask)

    vlsm_model.run_text_encoder = counted
    return rows


def _modes(modules):
    return {m.training for module in modules for m in module.modules()}


def test_default_is_true_and_frozen_bert_still_drops_out_in_training():
    model = _tiny("biomedclipseg").train()
    assert model.config.frozen_dropout is True
    assert _modes(model.text_modules) == _modes(model.image_modules) == {True}
    x, ids, mask = _batch(model)
    runs = _count_text_runs(model)
    with torch.no_grad():
        first, second = model(x, ids, mask), model(x, ids, mask)
    assert not torch.equal(first, second)  # BERT's dropout (p=0.1) is on, as in the reference code
    assert sum(runs) == 2 * len(PROMPTS)  # so the text cache never answers in training
    assert not model.text_cache.usable(model.text_modules)


@pytest.mark.parametrize("name", ["biomedclipseg", "biomedclipseg-d"])
def test_false_makes_train_mode_forwards_identical_and_caches_the_text(name):
    model = _tiny(name, frozen_dropout=False).train()
    assert model.training and model.decoder_module.training
    assert _modes(model.text_modules) == _modes(model.image_modules) == {False}
    x, ids, mask = _batch(model)
    runs = _count_text_runs(model)
    with torch.no_grad():
        first, second = model(x, ids, mask), model(x, ids, mask)
    assert torch.equal(first, second)
    assert sum(runs) == len(PROMPTS)  # each distinct prompt once: the second forward read the cache
    assert model.text_cache.hits == len(PROMPTS)
    assert model.has_frozen_image_features()
    # the same numbers as the whole model in eval mode (dropout off everywhere; the decoder has none here)
    with torch.no_grad():
        assert torch.equal(model.eval()(x, ids, mask), first)


def test_eval_and_train_round_trip_keep_frozen_encoders_in_eval():
    model = _tiny("biomedclipseg", frozen_dropout=False)
    assert _modes(model.text_modules) == {False}  # already at construction: Lightning never calls train()
    model.eval()
    assert _modes(model.text_modules) == _modes(model.decoder_module.modules()) == {False}
    model.train()
    assert _modes(model.text_modules) == {False} and _modes([model.decoder_module]) == {True}


def test_decoder_dropout_and_gradients_still_train():
    model = _tiny("biomedclipseg", frozen_dropout=False).train()
    model.decoder.layers[0].self_attn.dropout = 0.5  # give the trainable decoder a dropout to switch
    x, ids, mask = _batch(model)
    first, second = model(x, ids, mask), model(x, ids, mask)
    assert not torch.equal(first, second)  # the decoder's dropout is live in train mode
    model.zero_grad()
    first.square().mean().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("decoder.") for n in grads)
    assert not any(n.startswith("biomedclip.") for n in grads)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x, ids, mask), model(x, ids, mask))


def test_trainable_encoder_switches_modes_as_usual():
    model = _tiny("biomedclipseg", frozen_dropout=False, freeze_encoder=False).train()
    assert _modes(model.text_modules) == _modes(model.image_modules) == {True}
    x, ids, mask = _batch(model)
    assert not torch.equal(model(x, ids, mask), model(x, ids, mask))  # BERT trains, with its dropout


def test_clipseg_frozen_encoder_stays_in_eval_trainable_one_does_not():
    frozen = _tiny("clipseg", freeze_encoder=True, frozen_dropout=False).train()
    assert _modes(frozen.text_modules) == _modes(frozen.image_modules) == {False}
    assert frozen.decoder_module.training
    x, ids, mask = _batch(frozen)
    runs = _count_text_runs(frozen)
    with torch.no_grad():
        assert torch.equal(frozen(x, ids, mask), frozen(x, ids, mask))
    assert sum(runs) == len(PROMPTS)
    trainable = _tiny("clipseg", frozen_dropout=False).train()  # CLIPSeg fine-tunes CLIP by default
    assert _modes(trainable.text_modules) == _modes(trainable.image_modules) == {True}


def test_freezing_later_applies_the_option():
    model = _tiny("clipseg", frozen_dropout=False).train()
    model.config.freeze_encoder = True
    model.apply_freezing()
    assert _modes(model.text_modules) == {False} and model.decoder_module.training


def test_save_and_load_keep_the_option(tmp_path):
    model = _tiny("biomedclipseg", frozen_dropout=False)
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / SPEC_FILE).read_text())["architecture"]["frozen_dropout"] is False
    loaded = vlsm.load_pretrained(tmp_path / "m").train()
    assert loaded.config.frozen_dropout is False
    assert _modes(loaded.text_modules) == {False}
    x, ids, mask = _batch(loaded)
    with torch.no_grad():
        assert torch.equal(loaded(x, ids, mask), model.train()(x, ids, mask))


def test_folder_saved_before_the_option_loads_as_true(tmp_path):
    model = _tiny("biomedclipseg")
    folder = model.save_pretrained(tmp_path / "old")
    path = folder / SPEC_FILE
    config = json.loads(path.read_text())
    del config["architecture"]["frozen_dropout"]
    path.write_text(json.dumps(config))
    loaded = vlsm.load_pretrained(folder).train()
    assert loaded.config.frozen_dropout is True
    assert _modes(loaded.text_modules) == {True}


@pytest.mark.parametrize("name", ["biomedclipseg", "clipseg"])
def test_bad_value_and_unknown_option_name_are_refused(name):
    with raises_naming(ValueError, name, "frozen_dropout", "true or false", "'no'"):
        _tiny(name, frozen_dropout="no")
    with pytest.raises(ValueError, match=r"valid options: .*frozen_dropout"):
        _tiny(name, frozen_droput=False)


@pytest.mark.parametrize("name,kw", [
    ("biomedclipseg-a", {"variant": "reference"}),
    ("biomedclipseg-a", {"variant": "fixed"}),
    ("ensemble-c", {"variant": "fixed", "clipseg": {"freeze_encoder": True, "frozen_dropout": False}}),
])
def test_ensembles_pass_it_to_their_vlsm(tmp_path, name, kw):
    model = _tiny(name, biomedclipseg={"frozen_dropout": False}, **kw).train()
    vlsms = model.vlsms()
    for sub in vlsms.values():
        assert sub.config.frozen_dropout is False
        assert _modes(sub.text_modules) == {False} and sub.decoder_module.training
    unets = [m for m in model.modules() if isinstance(m, UNetD)]
    assert unets and _modes(unets) == {True}  # the CNN and its dropout train as usual
    bio = vlsms["biomedclipseg"]
    runs = _count_text_runs(bio)
    x, ids, mask = _batch(model)
    with torch.no_grad():
        model(x, ids, mask)
        model(x, ids, mask)
    assert sum(runs) == len(PROMPTS)  # the second step's BERT embeddings came from the cache
    model.save_pretrained(tmp_path / "m")
    loaded = vlsm.load_pretrained(tmp_path / "m").train()
    assert all(sub.config.frozen_dropout is False for sub in loaded.vlsms().values())
    assert _modes(loaded.vlsms()["biomedclipseg"].text_modules) == {False}
