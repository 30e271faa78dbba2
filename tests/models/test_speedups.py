"""The exact shortcuts (vlsm.models.speedups): same outputs with and without them, and they really happen.

Text cut to the batch's longest prompt, the per-prompt cache of a frozen deterministic text encoder and
ViTs that stop after the last block their decoder reads. "Same" is up to summation order: the encoders
then multiply matrices of other shapes.
"""
from __future__ import annotations

import pytest
import torch

import vlsm
from vlsm.models.speedups import TextEmbeddingCache, exact_speedups, is_deterministic, speedups_enabled

PROMPTS = ["a polyp", "small polyp"]  # shorter than the tiny context (16), even character by character
# every model with text, both variants of the ensembles
CASES = [("clipseg", {}), ("biomedclipseg", {}), ("biomedclipseg-d", {}), ("cris", {}),
         ("biomedclipseg-a", {"variant": "fixed"}), ("biomedclipseg-a", {"variant": "reference"}),
         ("clipseg-b", {"variant": "fixed"}), ("clipseg-b", {"variant": "reference"}),
         ("ensemble-c", {"variant": "fixed"}), ("ensemble-c", {"variant": "reference"})]


def _tiny(name, **kw):
    torch.manual_seed(0)
    return vlsm.create_model(name, preset="tiny", **kw)


def _batch(model, prompts=PROMPTS, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = model.preprocess.image_size
    t = model.get_tokenizer()(list(prompts))
    return torch.randn(len(prompts), 3, s, s, generator=g), t["input_ids"], t["attention_mask"]


def _close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * max(1.0, float(want.abs().max())))


def _text_lengths_seen(model):
    """Record the sequence length every text embedding layer of ``model`` is called with."""
    seen = []
    for name, module in model.named_modules():
        if name.endswith(("text_model.embeddings", "transformer.embeddings", "backbone.token_embedding")):
            module.register_forward_hook(lambda m, args, out, name=name: seen.append((name, out.shape[1])))
    return seen


def _blocks_run(model):
    counts = {}
    for name, module in model.named_modules():
        if name.endswith(("vision_model.encoder.layers", "visual.trunk.blocks")):
            for i, block in enumerate(module):
                block.register_forward_hook(lambda m, a, o, key=(name, i): counts.__setitem__(key, 1))
    return counts


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{k.get('variant', '')}" for n, k in CASES])
def test_same_outputs_with_and_without_shortcuts(name, kw):
    model = _tiny(name, **kw).eval()
    x, ids, mask = _batch(model)
    with torch.no_grad():
        with exact_speedups(False):
            full = model(x, ids, mask)
        fast = model(x, ids, mask)
        again = model(x, ids, mask)  # the text cache answers now where it may
    _close(fast, full)
    _close(again, full)


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{k.get('variant', '')}" for n, k in CASES])
def test_text_encoders_see_the_batch_length(name, kw):
    model = _tiny(name, **kw).eval()
    x, ids, mask = _batch(model)
    seen = _text_lengths_seen(model)
    with torch.no_grad():
        model(x, ids, mask)
    assert seen, "no text encoder ran"
    longest = int(mask.sum(1).max()) if name != "ensemble-c" or kw["variant"] == "reference" else None
    for module, length in seen:
        assert length < model.preprocess.context_length, (module, length)
        if longest is not None:
            assert length == longest, (module, length)


def test_ensemble_c_cuts_each_tokenizers_half_separately():
    model = _tiny("ensemble-c").eval()
    x, ids, mask = _batch(model)
    l1, l2 = model.get_tokenizer().split
    hooks = _text_lengths_seen(model)
    with torch.no_grad():
        model(x, ids, mask)
    seen = dict(hooks)
    bert = next(v for k, v in seen.items() if "transformer.embeddings" in k)
    clip = next(v for k, v in seen.items() if "text_model.embeddings" in k)
    assert bert == int(mask[:, :l1].sum(1).max()) < l1
    assert clip == int(mask[:, l1:].sum(1).max()) < l2


def test_cris_zero_ids_attends_to_every_position_and_is_not_cut():
    model = _tiny("cris", padding_mask="zero_ids").eval()
    x, ids, mask = _batch(model)
    seen = _text_lengths_seen(model)
    with torch.no_grad():
        with exact_speedups(False):
            full = model(x, ids, mask)
        fast = model(x, ids, mask)
    assert [length for _, length in seen] == [model.config.context_length] * 2
    assert torch.equal(fast, full)


def test_bert_row_without_shown_tokens_is_not_cut():
    model = _tiny("biomedclipseg").eval()
    _, ids, mask = _batch(model)
    mask[1] = 0  # attends to all positions uniformly: depends on the padded length
    assert model.text_lengths(ids, mask) is None
    seen = _text_lengths_seen(model)
    with torch.no_grad():
        model.encode_text(ids, mask)
    assert seen[-1][1] == model.config.context_length


def test_clip_keeps_its_pooling_token_even_outside_the_mask():
    model = _tiny("clipseg").eval()
    _, ids, mask = _batch(model)
    short = mask.clone()
    short[:, 1:] = 0  # a mask that hides the end token: the pooled token must still be computed
    with torch.no_grad():
        with exact_speedups(False):
            want = model.encode_text(ids, short)
        got = model.encode_text(ids, short)
    assert model.text_lengths(ids, short).tolist() == (ids.argmax(1) + 1).tolist()
    _close(got, want)
    # and without a mask: positions up to the end token
    with torch.no_grad():
        with exact_speedups(False):
            want = model.encode_text(ids, None)
        got = model.encode_text(ids, None)
    _close(got, want)


def test_trainable_text_encoder_gets_the_same_gradients():
    model = _tiny("clipseg", freeze_encoder=False).train()
    x, ids, mask = _batch(model)
    grads = []
    for on in (False, True):
        model.zero_grad()
        with exact_speedups(on):
            model(x, ids, mask).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert any("text_model" in n for n in grads[0])
    for n in grads[0]:
        _close(grads[1][n], grads[0][n])
    assert len(model.text_cache) == 0  # never cached while gradients flow into the text encoder


# -- the ViT stops after the last block read -----------------------------------------------------------
@pytest.mark.parametrize("name,kw,dead", [
    ("clipseg", {}, {3}), ("biomedclipseg", {"activation_offset": 0}, {3}),
    ("biomedclipseg-a", {"variant": "reference", "biomedclipseg": {"activation_offset": 0}}, {3}),
    ("clipseg-b", {"variant": "fixed"}, {3}),
    ("clipseg-b", {"variant": "reference"}, set()),  # its adapter reads the last block's output
])
def test_blocks_after_the_last_one_read_are_not_run(name, kw, dead):
    model = _tiny(name, **kw).eval()
    x, ids, mask = _batch(model)
    keys = set(model.state_dict())
    ran = _blocks_run(model)
    with torch.no_grad():
        model(x, ids, mask)
    skipped = {i for i in range(4)} - {i for (_, i) in ran}
    assert skipped == dead
    assert set(model.state_dict()) == keys  # the unused blocks keep their parameters
    ran.clear()
    with torch.no_grad(), exact_speedups(False):
        model(x, ids, mask)
    assert {i for (_, i) in ran} == set(range(4))


def test_last_hidden_state_on_request():
    model = _tiny("clipseg").eval()
    x, ids, mask = _batch(model)
    with torch.no_grad():
        assert model.forward_features(x, ids, mask).last_hidden_state is None
        out = model.forward_features(x, ids, mask, with_last_hidden_state=True)
        want = model.clipseg.clip.vision_model(pixel_values=x).last_hidden_state
    assert torch.equal(out.last_hidden_state, want)


# -- the text cache ------------------------------------------------------------------------------------------
def _count_text_runs(model):
    calls = []
    original = model.run_text_encoder

    def counted(ids, mask):
        calls.append(ids.shape[0])
        return original(ids, mask)

    model.run_text_encoder = counted
    return calls


def test_frozen_encoder_in_eval_computes_each_prompt_once():
    model = _tiny("biomedclipseg").eval()
    calls = _count_text_runs(model)
    x, ids, mask = _batch(model, ["a polyp", "a polyp", "a small polyp"])
    with torch.no_grad():
        first = model.encode_text(ids, mask)
        second = model.encode_text(ids[[2, 0]], mask[[2, 0]])
        with exact_speedups(False):
            want = model.encode_text(ids, mask)
    assert calls == [2, 3]  # two distinct prompts once; nothing the second time; the full run
    _close(first, want)
    torch.testing.assert_close(second, first[[2, 0]], rtol=0, atol=0)
    assert model.text_cache.hits == 2 + 1  # the repeated prompt within the batch, then both


def test_cache_not_used_for_a_trainable_text_encoder():
    model = _tiny("clipseg", freeze_encoder=False).eval()
    calls = _count_text_runs(model)
    _, ids, mask = _batch(model)
    with torch.no_grad():
        model.encode_text(ids, mask)
        model.encode_text(ids, mask)
    assert calls == [2, 2] and len(model.text_cache) == 0


def test_cache_not_used_while_dropout_is_active():
    model = _tiny("biomedclipseg").train()  # frozen, but BERT's dropout runs in train mode
    assert not is_deterministic(model.text_modules)
    calls = _count_text_runs(model)
    _, ids, mask = _batch(model)
    model.encode_text(ids, mask)
    model.encode_text(ids, mask)
    assert calls == [2, 2] and len(model.text_cache) == 0


def test_cache_used_in_train_mode_when_the_frozen_encoder_has_no_dropout():
    model = _tiny("clipseg-b", variant="reference").train()  # CLIP's text model has no dropout
    vlsm_ = model.branch.vlsm
    assert is_deterministic(vlsm_.text_modules)
    calls = _count_text_runs(vlsm_)
    x, ids, mask = _batch(model)
    model(x, ids, mask).mean().backward()
    model(x, ids, mask).mean().backward()
    assert calls == [2]


def test_cache_dropped_when_weights_change():
    model = _tiny("clipseg", freeze_encoder=True).eval()
    calls = _count_text_runs(model)
    _, ids, mask = _batch(model)
    with torch.no_grad():
        before = model.encode_text(ids, mask)
        model.encode_text(ids, mask)
        model.clipseg.clip.text_projection.weight.mul_(2)  # in place
        after = model.encode_text(ids, mask)
        model.load_state_dict(model.state_dict())
        model.encode_text(ids, mask)
    assert calls == [2, 2, 2]  # not the second time; again after each change
    _close(after, 2 * before)


def test_cache_keys_on_autocast_and_is_bounded():
    model = _tiny("clipseg", freeze_encoder=True).eval()
    model.text_cache.max_entries = 2
    calls = _count_text_runs(model)
    _, ids, mask = _batch(model, ["a", "b", "c"])
    with torch.no_grad():
        model.encode_text(ids[:2], mask[:2])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.encode_text(ids[:2], mask[:2])
        assert low.dtype == torch.bfloat16 and calls == [2, 2]
        model.encode_text(ids[2:], mask[2:])
    assert len(model.text_cache) == 2


def test_cache_copies_start_empty():
    import copy
    import pickle

    cache = TextEmbeddingCache(max_entries=7)
    cache._entries["k"] = torch.zeros(1)
    for clone in (copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))):
        assert len(clone) == 0 and clone.max_entries == 7


def test_tracing_turns_the_shortcuts_off():
    states = []
    model = torch.nn.Linear(1, 1)
    model.register_forward_hook(lambda m, a, o: states.append(speedups_enabled()))
    torch.jit.trace(model, torch.zeros(1, 1), check_trace=False)
    assert states == [False]
    model(torch.zeros(1, 1))
    with exact_speedups(False):
        model(torch.zeros(1, 1))
    assert states[1:] == [True, False]


# -- paper size, random init ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name,kw", [("biomedclipseg-a", {"variant": "reference"}), ("clipseg", {})])
def test_paper_size_forward_is_the_same(name, kw):
    torch.manual_seed(0)
    model = vlsm.create_model(name, **kw).eval()
    s = model.preprocess.image_size
    length = model.preprocess.context_length
    ids = torch.zeros(2, length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate((12, 27)):
        ids[row, :n] = torch.randint(5, 20000, (n,), generator=torch.Generator().manual_seed(row))
        mask[row, :n] = 1
    if model.preprocess.tokenizer == "clip-bpe":
        ids[mask == 0] = 49407
        ids[torch.arange(2), mask.sum(1) - 1] = 49407
    x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        with exact_speedups(False):
            full = model(x, ids, mask)
        fast = model(x, ids, mask)
    _close(fast, full)
