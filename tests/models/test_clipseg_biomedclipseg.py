"""CLIPSeg and BiomedCLIPSeg: registry, configs, interface, gradients, precision, persistence (tiny presets)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import vlsm
from naming import raises_naming
from vlsm.models.vlsm_base import VLSMConfig, VLSMOutput
from vlsm.text.tokenizers import TokenizerNotAvailableError

VLSMS = ("clipseg", "biomedclipseg", "biomedclipseg-d")
PROMPTS = ["a small round polyp", "a pink polyp in the colon"]


def _batch(model, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = model.config.image_size
    x = torch.randn(n, 3, s, s, generator=g)
    t = model.get_tokenizer()((PROMPTS * n)[:n])
    return x, t["input_ids"], t["attention_mask"]


def _tiny(name, **kw):
    torch.manual_seed(0)
    return vlsm.create_model(name, preset="tiny", **kw)


# -- registry ------------------------------------------------------------------------------------
def test_registered_with_text_and_paper_names():
    from vlsm.models import get_entry

    names = vlsm.list_models()
    for name, paper in zip(VLSMS, ("CLIPSeg", "BiomedCLIPSeg", "BiomedCLIPSeg-D")):
        assert name in names
        entry = get_entry(name)
        assert entry.uses_text and entry.paper_name == paper


def test_wrong_name_lists_valid_ones():
    with raises_naming(ValueError, "'clipsegg'", "clipseg,", "biomedclipseg"):
        vlsm.create_model("clipsegg")


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ValueError, match="freeze_encoder"):
        vlsm.create_model("clipseg", preset="tiny", reduce_dims=3)
    with pytest.raises(ValueError, match="biomedclipseg-d"):
        vlsm.create_model("biomedclipseg", preset="tiny", decoder_pretrained="x/y")


def test_bad_extract_layers_and_image_size():
    with pytest.raises(ValueError, match="blocks"):
        vlsm.create_model("biomedclipseg", preset="tiny", extract_layers=[1, 2, 3])  # offset 1 -> block 4 of 0..3
    with raises_naming(ValueError, "70", "patch size"):
        vlsm.create_model("clipseg", preset="tiny", image_size=70)


# -- configs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VLSMS)
def test_config_roundtrip_and_preprocess(name):
    model = _tiny(name)
    cfg = model.config
    again = VLSMConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert model.preprocess == cfg.preprocess
    assert cfg.num_tokens == (cfg.image_size // cfg.patch_size) ** 2 + 1
    assert model.get_tokenizer().context_length == cfg.context_length
    assert cfg.clipseg_hf_config().projection_dim == cfg.projection_dim


def test_config_rejects_unknown_keys():
    d = _tiny("clipseg").config.to_dict()
    d["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        VLSMConfig.from_dict(d)


# -- interface ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VLSMS)
def test_interface_shapes(name):
    model = _tiny(name)
    cfg = model.config
    x, ids, mask = _batch(model)
    acts, last = model.encode_image(x, with_last_hidden_state=True)
    assert len(acts) == len(cfg.extract_layers)
    for a in acts:
        assert a.shape == (2, cfg.num_tokens, cfg.hidden_size)
    assert last.shape == (2, cfg.num_tokens, cfg.hidden_size)
    cond = model.encode_text(ids, mask)
    assert cond.shape == (2, cfg.projection_dim)
    assert model.decode(acts, cond).shape == (2, 1, cfg.image_size, cfg.image_size)
    out = model.forward_features(x, ids, mask)
    assert isinstance(out, VLSMOutput)
    assert out.logits.shape == (2, 1, cfg.image_size, cfg.image_size)
    assert model(x, ids, mask).shape == (2, 1, cfg.image_size, cfg.image_size)


@pytest.mark.parametrize("name", VLSMS)
def test_batch_of_one_keeps_channel_axis(name):
    model = _tiny(name).eval()
    x, ids, mask = _batch(model, n=1)
    assert model(x, ids, mask).shape == (1, 1, model.config.image_size, model.config.image_size)


@pytest.mark.parametrize("name", ("clipseg", "biomedclipseg"))
def test_image_size_override(name):
    model = _tiny(name, image_size=96)
    x, ids, mask = _batch(model)
    assert x.shape[-1] == 96 and model.preprocess.image_size == 96
    assert model(x, ids, mask).shape == (2, 1, 96, 96)


def test_bad_inputs_have_clear_errors():
    model = _tiny("clipseg")
    x, ids, mask = _batch(model)
    with pytest.raises(ValueError, match="square"):
        model(x[..., :48], ids, mask)
    with pytest.raises(ValueError, match="one prompt per image"):
        model(x, ids[:1], mask[:1])
    with pytest.raises(ValueError, match="input_ids"):
        model(x)


def test_clipseg_matches_transformers_forward():
    model = _tiny("clipseg").eval()
    x, ids, mask = _batch(model)
    with torch.no_grad():
        ref = model.clipseg(input_ids=ids, pixel_values=x, attention_mask=mask).logits
        ours = model(x, ids, mask)
    assert torch.allclose(ours[:, 0], ref, atol=1e-5)


@pytest.mark.parametrize("offset", (1, 0))
def test_biomedclipseg_activations_are_reference_blocks(offset):
    """Activation k is the output of ViT block extract_layers[k] + activation_offset (reference: +1)."""
    model = _tiny("biomedclipseg", activation_offset=offset).eval()
    captured = {}
    hooks = [blk.register_forward_hook(lambda m, i, o, k=k: captured.__setitem__(k, o))
             for k, blk in enumerate(model.biomedclip.visual.trunk.blocks)]
    x, _, _ = _batch(model)
    with torch.no_grad():
        acts, last = model.encode_image(x, with_last_hidden_state=True)
    for h in hooks:
        h.remove()
    for layer, act in zip(model.config.extract_layers, acts):
        assert torch.equal(act, captured[layer + offset])
    assert torch.equal(last, captured[len(captured) - 1])
    # the reference forward: patch_embed, _pos_embed, norm_pre, blocks, hidden_states[i + 1]
    trunk = model.biomedclip.visual.trunk
    with torch.no_grad():
        h = trunk.norm_pre(trunk._pos_embed(trunk.patch_embed(x)))
        states = []
        for blk in trunk.blocks:
            h = blk(h)
            states.append(h)
    if offset == 1:
        for layer, act in zip(model.config.extract_layers, acts):
            assert torch.equal(act, states[layer + 1])


# -- gradients ----------------------------------------------------------------------------------------
def _grads(model):
    model.train()
    x, ids, mask = _batch(model)
    model.zero_grad(set_to_none=True)
    model(x, ids, mask).mean().backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_clipseg_trainable_encoder_really_trains():
    model = _tiny("clipseg")  # medvlsm default: freeze_encoder=False, freeze_decoder=False
    assert not model.config.freeze_encoder
    got = _grads(model)
    assert all(n in got for n, _ in model.clipseg.decoder.named_parameters(prefix="clipseg.decoder"))
    assert any(n.startswith("clipseg.clip.text_model.encoder.layers.0.") for n in got)
    assert "clipseg.clip.text_projection.weight" in got
    last_used = max(model.config.activation_blocks)
    for block in range(last_used + 1):
        assert any(n.startswith(f"clipseg.clip.vision_model.encoder.layers.{block}.") for n in got)
    assert "clipseg.clip.vision_model.embeddings.patch_embedding.weight" in got


def test_clipseg_frozen_encoder_gets_no_grads():
    model = _tiny("clipseg", freeze_encoder=True)
    got = _grads(model)
    assert got and all(n.startswith("clipseg.decoder.") for n in got)
    total, trainable = model.parameter_counts()
    assert trainable == sum(p.numel() for p in model.clipseg.decoder.parameters())


def test_biomedclipseg_default_trains_decoder_only():
    model = _tiny("biomedclipseg")
    assert model.config.freeze_encoder and not model.config.freeze_decoder
    got = _grads(model)
    assert got == {n for n, _ in model.decoder.named_parameters(prefix="decoder")}


def test_biomedclipseg_trainable_encoder():
    model = _tiny("biomedclipseg", freeze_encoder=False)
    got = _grads(model)
    assert "biomedclip.visual.trunk.patch_embed.proj.weight" in got
    assert any(n.startswith("biomedclip.text.transformer.encoder.layer.0.") for n in got)
    assert any(n.startswith("biomedclip.text.proj.") for n in got)


def test_frozen_decoder_and_encoder_trains_nothing():
    model = _tiny("clipseg", freeze_encoder=True, freeze_decoder=True)
    assert model.parameter_counts()[1] == 0


@pytest.mark.parametrize("name", ("clipseg", "biomedclipseg"))
def test_frozen_encoder_outputs_are_not_inference_tensors(name):
    model = _tiny(name, freeze_encoder=True)
    x, ids, mask = _batch(model)
    out = model.forward_features(x, ids, mask)
    assert not out.activations[0].is_inference() and not out.conditional_embeddings.is_inference()
    assert out.logits.requires_grad


# -- training steps --------------------------------------------------------------------------------------
def _step(model, dtype):
    x, ids, mask = _batch(model)
    target = (torch.rand(x.shape[0], 1, *x.shape[-2:]) > 0.5).float()
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    model.train()
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = model(x, ids, mask)
    assert logits.shape == target.shape
    loss = F.binary_cross_entropy_with_logits(logits.float(), target)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, trainable))
    return logits.dtype


@pytest.mark.parametrize("name", VLSMS)
def test_fp32_training_step(name):
    assert _step(_tiny(name), None) == torch.float32


@pytest.mark.parametrize("name", VLSMS)
def test_bf16_autocast_training_step(name):
    assert _step(_tiny(name), torch.bfloat16) == torch.bfloat16


@pytest.mark.parametrize("name", ("clipseg", "biomedclipseg"))
def test_fp16_autocast_training_step(name):
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            torch.nn.Linear(2, 2)(torch.ones(1, 2))
    except (RuntimeError, AssertionError) as err:  # pragma: no cover - depends on the torch build
        pytest.skip(f"fp16 autocast unsupported on this CPU build: {err}")
    assert _step(_tiny(name), torch.float16) == torch.float16


# -- tokenizers of the models --------------------------------------------------------------------------
def test_tokenizer_kinds_and_lengths():
    assert _tiny("clipseg").get_tokenizer().kind == "clip-bpe"
    tok = _tiny("biomedclipseg").get_tokenizer()
    assert tok.kind == "wordpiece" and tok.context_length == 16
    assert _tiny("clipseg", context_length=10).get_tokenizer()(["a"])["input_ids"].shape == (1, 10)
    with pytest.raises(ValueError, match="positions"):
        _tiny("clipseg", context_length=500)


@pytest.mark.parametrize("argument", ["model_dir", "tokenizer_dir"])  # tokenizer_dir: model_dir's former name
def test_model_dir_vocab_is_used(tmp_path, argument):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "polyp", "a"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    model = _tiny("biomedclipseg", **{argument: str(tmp_path)})
    out = model.get_tokenizer()(["a polyp"])
    assert out["input_ids"][0, :4].tolist() == [2, 6, 5, 3]
    assert out["input_ids"].shape == (1, model.config.context_length)


def test_model_dir_and_its_former_name_must_agree(tmp_path):
    with pytest.raises(ValueError, match="pass model_dir= only"):
        _tiny("clipseg", model_dir=str(tmp_path / "a"), tokenizer_dir=str(tmp_path / "b"))


# -- persistence ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VLSMS)
def test_save_load_roundtrip_identical(name, tmp_path):
    model = _tiny(name, image_size=80, extract_layers=[0, 1], freeze_decoder=False).eval()
    x, ids, mask = _batch(model)
    with torch.no_grad():
        want = model(x, ids, mask)
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.safetensors", "tokenizer", "vlsm_config.json"]
    again = vlsm.load_pretrained(tmp_path / "m").eval()
    assert again.config == model.config
    t = again.get_tokenizer()(PROMPTS)
    assert torch.equal(t["input_ids"], ids)
    with torch.no_grad():
        assert torch.equal(again(x, ids, mask), want)
    assert again.parameter_counts() == model.parameter_counts()


def test_save_without_tokenizer_files(tmp_path):
    model = _tiny("biomedclipseg")
    model.set_tokenizer(None, "no vocabulary here")
    with pytest.raises(TokenizerNotAvailableError, match="no vocabulary here"):
        model.get_tokenizer()
    model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "tokenizer").exists()
    assert vlsm.load_pretrained(tmp_path / "m").parameter_counts() == model.parameter_counts()
