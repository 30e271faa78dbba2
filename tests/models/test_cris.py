"""CRIS (CLIP RN50): interface, gradients, padding, precision, persistence and local weight files (tiny)."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vlsm
from vlsm.models.checkpoint import UntrustedCheckpointError
from vlsm.models.cris import CRISConfig, cris_config
from vlsm.models.weights import WeightsNotFoundError

PROMPTS = ["a small round polyp", "a polyp"]


def _tiny(**kw):
    torch.manual_seed(0)
    return vlsm.create_model("cris", preset="tiny", **kw)


def _batch(model, n=2, size=None):
    s = size or model.config.image_size
    t = model.get_tokenizer()(PROMPTS[:n])
    return torch.randn(n, 3, s, s, generator=torch.Generator().manual_seed(1)), t["input_ids"], t["attention_mask"]


def test_registered():
    from vlsm.models import get_entry

    entry = get_entry("cris")
    assert entry.uses_text and entry.paper_name == "CRIS"


def test_paper_size_and_preprocessing():
    with torch.device("meta"):
        model = vlsm.create_model("cris")
    assert model.parameter_counts() == (146_849_122, 146_849_122)  # encoder fine-tuned, as in medvlsm
    p = model.preprocess
    assert (p.image_size, p.tokenizer, p.context_length) == (416, "clip-bpe", 77)
    assert p.mean == (0.48145466, 0.4578275, 0.40821073)


@pytest.mark.parametrize("n,size", [(2, None), (1, None), (2, 96)])
def test_forward_shapes(n, size):
    model = _tiny(**({"image_size": size} if size else {}))
    if n == 1:
        x, ids, mask = _batch(model, n)
        with pytest.raises(ValueError, match="batch of one"):
            model(x, ids, mask)  # BatchNorm1d in training mode
        model.eval()
    x, ids, mask = _batch(model, n)
    assert model(x, ids, mask).shape == (n, 1, model.config.image_size, model.config.image_size)


def test_config_checks_and_errors():
    d = cris_config("tiny", {}).to_dict()
    d["fpn_in"] = [1, 2, 3]
    with pytest.raises(ValueError, match="fpn_in"):
        CRISConfig.from_dict(d)
    with pytest.raises(ValueError, match="multiple of 32"):
        _tiny(image_size=80)
    with pytest.raises(ValueError, match="padding_mask"):
        _tiny(padding_mask="nope")
    with pytest.raises(ValueError, match="valid options"):
        _tiny(fpn_out=[1, 2, 3])
    model = _tiny()
    x, ids, mask = _batch(model)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(x[..., :48, :48], ids, mask)
    with pytest.raises(ValueError, match="one prompt per image"):
        model(x, ids[:1], mask[:1])


def test_padding_mask_hides_padded_words():
    model = _tiny().eval()
    x, ids, mask = _batch(model)
    other = ids.clone()
    other[mask == 0] = 0  # same prompts, other padding ids
    with torch.no_grad():
        assert torch.allclose(model(x, ids, mask), model(x, other, mask), atol=1e-5)
    ref = _tiny(padding_mask="zero_ids").eval()
    with torch.no_grad():  # the reference rule: padding with <|endoftext|> is not masked
        assert not torch.allclose(ref(x, ids, mask), ref(x, other, mask), atol=1e-5)


def _grads(model):
    model.train()
    x, ids, mask = _batch(model)
    model(x, ids, mask).mean().backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_gradients_trainable_and_frozen_encoder():
    got = _grads(_tiny())
    assert "backbone.visual.conv1.weight" in got and "backbone.token_embedding.weight" in got
    assert "backbone.text_projection" in got and any(n.startswith("proj.txt") for n in got)
    frozen = _tiny(freeze_encoder=True)
    got = _grads(frozen)
    assert got and not any(n.startswith("backbone.") for n in got)
    assert frozen.parameter_counts()[1] == sum(p.numel() for n, p in frozen.named_parameters()
                                               if not n.startswith("backbone."))


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_training_step(dtype):
    model = _tiny()
    x, ids, mask = _batch(model)
    target = (torch.rand(2, 1, 64, 64) > 0.5).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = model.neck.aggr[0].weight.detach().clone()
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = model(x, ids, mask)
    loss = F.binary_cross_entropy_with_logits(logits.float(), target)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, model.neck.aggr[0].weight)


def test_save_load_roundtrip(tmp_path):
    model = _tiny(image_size=96, padding_mask="zero_ids").eval()
    x, ids, mask = _batch(model)
    with torch.no_grad():
        want = model(x, ids, mask)
    model.save_pretrained(tmp_path / "m")
    again = vlsm.load_pretrained(tmp_path / "m").eval()
    assert again.config == model.config
    with torch.no_grad():
        assert torch.equal(again(x, ids, mask), want)


# -- weight files ------------------------------------------------------------------------------------------
def test_cris_checkpoint_dataparallel_wrapper(tmp_path):
    src = _tiny()
    state = {"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}
    torch.save(state, tmp_path / "cris.pt")
    model = vlsm.create_model("cris", pretrained=str(tmp_path), preset="tiny")
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


class Box(nn.Module):
    """Holds tensors under given names, to write a TorchScript archive like OpenAI's RN50.pt."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _torchscript_archive(state: dict, path):
    root = Box()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        mod = root
        for name in parents:
            if name not in mod._modules:
                mod.add_module(name, Box())
            mod = mod._modules[name]
        mod.register_buffer(leaf, value.detach().clone().half())  # OpenAI ships fp16 weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(root).save(str(path))


@pytest.mark.parametrize("fmt", ["torchscript", "state_dict"])
def test_clip_rn50_file_loads_encoders(tmp_path, fmt):
    src = _tiny()
    state = {k: v for k, v in src.backbone.state_dict().items() if "attnpool.connect" not in k}
    state.update(input_resolution=torch.tensor(64), context_length=torch.tensor(16), vocab_size=torch.tensor(49408))
    if fmt == "torchscript":
        _torchscript_archive(state, tmp_path / "RN50.pt")
    else:
        torch.save(state, tmp_path / "RN50.pt")
    torch.manual_seed(5)
    if fmt == "torchscript":  # an archive carries code: refused unless the user trusts it
        with pytest.raises(UntrustedCheckpointError) as refused:
            vlsm.create_model("cris", pretrained=str(tmp_path), preset="tiny")
        assert "RN50.pt" in str(refused.value) and "--trust-checkpoint" in str(refused.value)
    model = vlsm.create_model("cris", pretrained=str(tmp_path), preset="tiny", trust_checkpoint=fmt == "torchscript")
    got = model.backbone.state_dict()
    stored = (lambda v: v.half().float()) if fmt == "torchscript" else (lambda v: v.float())
    for k, v in state.items():
        if k in got:
            assert torch.equal(got[k].float(), stored(v)), k
    assert got["visual.attnpool.connect.0.weight"].dtype == torch.float32


def test_missing_cris_weights_message(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        vlsm.create_model("cris", pretrained=str(tmp_path), preset="tiny")
    msg = str(err.value)
    assert "cris.pt" in msg and "RN50.pt" in msg and "openaipublic" in msg


# -- the same model as before CRIS moved onto open_clip's ResNet classes -------------------------------------
def _keys_and_shapes(model) -> list:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def test_state_dict_keys_are_unchanged():
    """cris.pt / RN50.pt files load by these names: they must never drift (golden from the original code)."""
    import hashlib

    from golden.golden_tools import check_golden_data

    with torch.device("meta"):
        paper = vlsm.create_model("cris")
    lines = "\n".join(f"{k} {tuple(s)}" for k, s in _keys_and_shapes(paper))
    check_golden_data("cris_state_dict", {
        "tiny": _keys_and_shapes(_tiny()),
        "paper_count": len(paper.state_dict()),
        "paper_sha256": hashlib.sha256(lines.encode()).hexdigest(),
    })


@pytest.mark.parametrize("size", [64, 96])  # 96: the attention pool resamples its position codes
def test_seeded_forward_is_unchanged(size):
    from golden.golden_tools import check_golden, seeded_input, seeded_state_dict

    model = _tiny(image_size=size)
    model.load_state_dict(seeded_state_dict(model, seed=0))
    model.eval()
    tok = model.get_tokenizer()(PROMPTS)
    with torch.no_grad():
        out = model(seeded_input((2, 3, size, size)), tok["input_ids"], tok["attention_mask"])
    check_golden(f"cris_tiny_{size}", out)
