"""Pretrained weights: the one resolver (local folders, hub ids in an offline cache, clear errors; nothing
downloads), then the real weight-loading code of each model on tiny checkpoints written to temp folders
and re-loaded offline.

* CLIPSeg: transformers ``save_pretrained`` of a tiny ``CLIPSegConfig`` (and a ``pytorch_model.bin`` copy).
* BiomedCLIP: a folder in the hub repo's layout (``open_clip_config.json``, ``open_clip_pytorch_model.bin``
  or ``.safetensors``, ``vocab.txt``, BERT ``config.json``) whose weights come from open_clip's own
  ``CustomTextCLIP``, built from a local BERT config. Outputs must match open_clip's.
* Paper sizes: parameter counts of the random-init architectures.
(CRIS's weight files are tested in test_cris.py, the baselines' encoder weights in test_baselines.py.)
"""
from __future__ import annotations

import json
import time

import pytest
import torch

import vlsm
from vlsm.models.speedups import exact_speedups
from vlsm.models.vlsm_base import load_config_json
from vlsm.models.weights import FileSpec, WeightsNotFoundError, parse_source, resolve_weights


@pytest.fixture(autouse=True)
def hf_cache(monkeypatch, tmp_path):
    """A per-test Hugging Face cache (empty unless a test fills it); offline comes from conftest."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


# -- the resolver ---------------------------------------------------------------------------------------
SPECS = (FileSpec.of("config.json", what="config"),
         FileSpec.of("model.safetensors", "pytorch_model.bin", what="weights"),
         FileSpec.of("vocab.txt", required=False))


def _fake_cache(cache, repo, files, revision="0123456789abcdef0123456789abcdef01234567"):
    """The on-disk layout huggingface_hub uses for a cached snapshot."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / revision
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)
    for name in files:
        (snap / name).write_text("x")
    return snap


def test_parse_source(tmp_path):
    assert parse_source("hf-hub:CIDAS/clipseg-rd64-refined") == ("hub", "CIDAS/clipseg-rd64-refined")
    assert parse_source("CIDAS/clipseg-rd64-refined") == ("hub", "CIDAS/clipseg-rd64-refined")
    assert parse_source(str(tmp_path)) == ("local", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        parse_source(str(tmp_path / "nope" / "deeper"))
    with pytest.raises(ValueError):
        parse_source("hf-hub:justaname")
    with pytest.raises(ValueError):
        parse_source("  ")


def test_local_folder_alternatives(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_text("x")
    got = resolve_weights(str(tmp_path), SPECS, model="m")
    assert got.folder == tmp_path
    assert got.path("model.safetensors", "pytorch_model.bin") == tmp_path / "pytorch_model.bin"
    assert got.get("vocab.txt") is None


def test_local_folder_missing_names_files_and_fix(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights(str(tmp_path), SPECS, model="clipseg", hint="Download it.")
    msg = str(err.value)
    assert "model.safetensors or pytorch_model.bin" in msg and str(tmp_path) in msg
    assert "clipseg" in msg and "Download it." in msg and "config.json" in msg  # lists what the folder holds


def test_hub_id_from_offline_cache(tmp_path):
    snap = _fake_cache(tmp_path / "hf-cache", "org/name", ["config.json", "model.safetensors"])
    for source in ("org/name", "hf-hub:org/name"):
        got = resolve_weights(source, SPECS)
        assert got.folder == snap
        assert got.path("config.json") == snap / "config.json"


def test_hub_id_missing_offline_fails_fast_with_instructions(tmp_path):
    _fake_cache(tmp_path / "hf-cache", "org/name", ["config.json"])
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights("org/name", SPECS, model="clipseg")
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "model.safetensors or pytorch_model.bin" in msg
    assert "HF_HUB_OFFLINE" in msg and "hf download org/name" in msg
    assert "vocab.txt" not in msg.split("Missing:")[1].split("\n")[0]  # optional files are not "missing"


def test_unknown_hub_id_offline(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="config.json"):
        resolve_weights("nobody/nothing", SPECS)


# -- models' weight folders -------------------------------------------------------------------
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "polyp", "in", "the", "colon", "small", "round"]


# -- CLIPSeg -----------------------------------------------------------------------------------------
@pytest.fixture()
def clipseg_dir(tmp_path):
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    torch.manual_seed(1)
    hf = CLIPSegForImageSegmentation(CLIPSegConfig(**load_config_json("clipseg_tiny.json"))).eval()
    hf.save_pretrained(tmp_path / "clipseg")
    return tmp_path / "clipseg", hf


def _clip_inputs(model, n=2):
    torch.manual_seed(2)
    s = model.config.image_size
    t = model.get_tokenizer()(["a polyp", "a small round polyp"][:n])
    return torch.randn(n, 3, s, s), t["input_ids"], t["attention_mask"]


def test_clipseg_from_transformers_folder(clipseg_dir):
    folder, hf = clipseg_dir
    model = vlsm.create_model("clipseg", pretrained=str(folder), preset="tiny").eval()
    x, ids, mask = _clip_inputs(model)
    with torch.no_grad():
        want = hf(input_ids=ids, pixel_values=x, attention_mask=mask).logits
        with exact_speedups(False):
            full = model(x, ids, mask)
        got = model(x, ids, mask)
    assert torch.allclose(full[:, 0], want, atol=1e-5)
    # prompts cut to the batch's length: the same up to summation order (this fixture's decoder has
    # transformers' N(0, 1) init, logits of scale ~400)
    torch.testing.assert_close(got[:, 0], want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))
    assert model.spec.pretrained == str(folder)


def test_clipseg_from_pytorch_bin(clipseg_dir, tmp_path):
    folder, hf = clipseg_dir
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "config.json").write_text((folder / "config.json").read_text())
    torch.save(hf.state_dict(), bin_dir / "pytorch_model.bin")
    model = vlsm.create_model("clipseg", pretrained=str(bin_dir), preset="tiny")
    for k, v in hf.state_dict().items():
        assert torch.equal(model.clipseg.state_dict()[k], v), k


def test_clipseg_from_offline_hf_cache(clipseg_dir, tmp_path, monkeypatch):
    folder, hf = clipseg_dir
    cache = tmp_path / "cache"
    rev = "a" * 40
    snap = cache / "models--CIDAS--clipseg-tiny" / "snapshots" / rev
    snap.mkdir(parents=True)
    (cache / "models--CIDAS--clipseg-tiny" / "refs").mkdir()
    (cache / "models--CIDAS--clipseg-tiny" / "refs" / "main").write_text(rev)
    for f in folder.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    model = vlsm.create_model("clipseg", pretrained="hf-hub:CIDAS/clipseg-tiny", preset="tiny")
    assert torch.equal(model.clipseg.decoder.film_mul.weight, hf.decoder.film_mul.weight)


def test_clipseg_missing_weights_message(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError) as err:
        vlsm.create_model("clipseg", pretrained=str(tmp_path), preset="tiny")
    assert "model.safetensors or pytorch_model.bin" in str(err.value)
    with pytest.raises(WeightsNotFoundError) as err:
        vlsm.create_model("clipseg", pretrained="CIDAS/clipseg-rd64-refined")
    msg = str(err.value)
    assert "config.json" in msg and "hf download CIDAS/clipseg-rd64-refined" in msg


def test_clipseg_pretrained_save_load_roundtrip(clipseg_dir, tmp_path):
    folder, _ = clipseg_dir
    model = vlsm.create_model("clipseg", pretrained=str(folder), preset="tiny").eval()
    x, ids, mask = _clip_inputs(model, n=1)
    model.save_pretrained(tmp_path / "saved")
    again = vlsm.load_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert torch.equal(again(x, ids, mask), model(x, ids, mask))


# -- BiomedCLIP ----------------------------------------------------------------------------------------
TINY_VISION = {"timm_model_name": "test_vit", "timm_model_pretrained": False, "timm_pool": "",
               "timm_proj": "linear", "image_size": 160}


def _open_clip_reference(tmp_path):
    """open_clip's CustomTextCLIP with a BiomedCLIP-style text tower, built from a local BERT config."""
    from open_clip.model import CustomTextCLIP

    bert = load_config_json("biomedbert_tiny.json")
    bert_dir = tmp_path / "bert"
    bert_dir.mkdir()
    (bert_dir / "config.json").write_text(json.dumps(bert))
    text_cfg = {"hf_model_name": str(bert_dir), "hf_tokenizer_name": str(bert_dir), "hf_proj_type": "mlp",
                "hf_pooler_type": "cls_last_hidden_state_pooler", "hf_model_pretrained": False,
                "context_length": 16}
    torch.manual_seed(3)
    model = CustomTextCLIP(embed_dim=16, vision_cfg=dict(TINY_VISION), text_cfg=dict(text_cfg)).eval()
    return model, bert


def _biomedclip_dir(tmp_path, fmt="bin", legacy_position_ids=False):
    ref, bert = _open_clip_reference(tmp_path)
    folder = tmp_path / f"biomedclip-{fmt}"
    folder.mkdir()
    cfg = {"model_cfg": {"embed_dim": 16, "vision_cfg": TINY_VISION,
                         "text_cfg": {"hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                                      "hf_tokenizer_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                                      "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                                      "context_length": 16}},
           "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                              "std": [0.26862954, 0.26130258, 0.27577711]}}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    (folder / "config.json").write_text(json.dumps(bert))  # the text tower's BERT config, local
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    state = ref.state_dict()
    if legacy_position_ids:  # checkpoints written with transformers < 4.31 carry this buffer
        state["text.transformer.embeddings.position_ids"] = torch.arange(bert["max_position_embeddings"])[None]
    if fmt == "bin":
        torch.save(state, folder / "open_clip_pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, folder / "open_clip_model.safetensors")
    return folder, ref


@pytest.mark.parametrize("fmt,legacy", [("bin", True), ("safetensors", False)])
def test_biomedclip_matches_open_clip(tmp_path, fmt, legacy):
    folder, ref = _biomedclip_dir(tmp_path, fmt, legacy)
    model = vlsm.create_model("biomedclipseg", pretrained=str(folder), preset="tiny", image_size=160).eval()
    assert set(model.biomedclip.state_dict()) == set(ref.state_dict())
    tok = model.get_tokenizer()
    assert tok.vocab == VOCAB and tok.context_length == 16
    t = tok(["a small polyp in the colon", "round polyp"])
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.allclose(model.biomedclip.encode_image(x), ref.encode_image(x), atol=1e-5)
        assert torch.allclose(model.encode_text(t["input_ids"], t["attention_mask"]),
                              ref.encode_text(t["input_ids"]), atol=1e-5)
        logits = model(x, t["input_ids"], t["attention_mask"])
    assert logits.shape == (2, 1, 160, 160)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 6  # from the folder's ViT


def test_biomedclip_pos_embed_resampled_for_other_image_size(tmp_path):
    folder, ref = _biomedclip_dir(tmp_path)
    model = vlsm.create_model("biomedclipseg", pretrained=str(folder), preset="tiny", image_size=64)
    assert model.biomedclip.visual.trunk.pos_embed.shape[1] == (64 // 16) ** 2 + 1
    x = torch.randn(1, 3, 64, 64)
    t = model.get_tokenizer()(["a polyp"])
    assert model(x, t["input_ids"], t["attention_mask"]).shape == (1, 1, 64, 64)


def test_biomedclipseg_d_takes_clipseg_decoder(tmp_path, clipseg_dir):
    clip_folder, hf = clipseg_dir
    folder, _ = _biomedclip_dir(tmp_path)
    # the tiny CLIPSeg decoder reads 32-wide tokens: give the BiomedCLIP ViT that width
    cfg = json.loads((folder / "open_clip_config.json").read_text())
    model = vlsm.create_model("biomedclipseg-d", preset="tiny", decoder_pretrained=str(clip_folder))
    for k, v in hf.decoder.state_dict().items():
        assert torch.equal(model.decoder.state_dict()[k], v), k
    assert cfg["model_cfg"]["embed_dim"] == 16
    # a decoder that does not fit the encoder is refused with the sizes it needs
    with pytest.raises(ValueError, match="does not fit"):
        vlsm.create_model("biomedclipseg-d", pretrained=str(folder), preset="tiny", image_size=160,
                          decoder_pretrained=str(clip_folder))


def test_biomedclipseg_d_needs_decoder_source_offline(tmp_path):
    folder, _ = _biomedclip_dir(tmp_path)
    with pytest.raises(WeightsNotFoundError, match="decoder_pretrained"):
        vlsm.create_model("biomedclipseg-d", pretrained=str(folder), preset="tiny", image_size=160,
                          decoder_pretrained="CIDAS/clipseg-rd64-refined")


def test_biomedclip_missing_files_message(tmp_path):
    (tmp_path / "open_clip_config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError) as err:
        vlsm.create_model("biomedclipseg", pretrained=str(tmp_path), preset="tiny")
    msg = str(err.value)
    assert "open_clip_pytorch_model.bin" in msg and "open_clip_model.safetensors" in msg
    with pytest.raises(WeightsNotFoundError, match="hf download microsoft/BiomedCLIP"):
        vlsm.create_model("biomedclipseg", pretrained="hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224")


def test_biomedclip_pretrained_save_load_roundtrip(tmp_path):
    folder, _ = _biomedclip_dir(tmp_path)
    model = vlsm.create_model("biomedclipseg", pretrained=str(folder), preset="tiny", image_size=160).eval()
    model.save_pretrained(tmp_path / "saved")
    again = vlsm.load_pretrained(tmp_path / "saved").eval()
    assert again.get_tokenizer().vocab == VOCAB
    t = again.get_tokenizer()(["a polyp"])
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        assert torch.equal(again(x, t["input_ids"], t["attention_mask"]), model(x, t["input_ids"], t["attention_mask"]))


# -- paper sizes ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paper_models():
    """Paper-size CLIPSeg and BiomedCLIPSeg on the meta device: their shapes, counts and settings, no numbers
    (about 350 M parameters that are never allocated)."""
    with torch.device("meta"):
        return {name: vlsm.create_model(name) for name in ("clipseg", "biomedclipseg")}


def test_paper_parameter_counts(paper_models):
    clipseg, biomed = paper_models["clipseg"], paper_models["biomedclipseg"]
    total, trainable = clipseg.parameter_counts()
    assert total == 150_747_746 and trainable == total  # rd64-refined: ~150.7 M, all trainable (medvlsm)
    decoder = sum(p.numel() for p in biomed.decoder.parameters())
    encoder = sum(p.numel() for p in biomed.biomedclip.parameters())
    assert decoder == sum(p.numel() for p in clipseg.clipseg.decoder.parameters()) == 1_127_009
    assert encoder == 195_902_721  # BiomedCLIP ~196 M
    assert biomed.parameter_counts() == (encoder + decoder, decoder)


def test_paper_preprocessing(paper_models):
    c, b = paper_models["clipseg"].preprocess, paper_models["biomedclipseg"].preprocess
    assert (c.image_size, c.tokenizer, c.context_length) == (352, "clip-bpe", 77)
    assert c.mean == (0.485, 0.456, 0.406) and c.std == (0.229, 0.224, 0.225)
    assert (b.image_size, b.tokenizer, b.context_length) == (224, "wordpiece", 256)
    assert b.mean == (0.48145466, 0.4578275, 0.40821073)
    cfg = paper_models["biomedclipseg"].config
    assert (cfg.patch_size, cfg.hidden_size, cfg.projection_dim, cfg.extract_layers) == (16, 768, 512, (3, 6, 9))
    assert cfg.activation_blocks == (4, 7, 10)
    assert paper_models["clipseg"].config.activation_blocks == (3, 6, 9)


def test_paper_biomedclip_has_no_offline_tokenizer(paper_models):
    from vlsm.text.tokenizers import TokenizerNotAvailableError

    with pytest.raises(TokenizerNotAvailableError, match="vocab.txt"):
        paper_models["biomedclipseg"].get_tokenizer()
    assert paper_models["clipseg"].get_tokenizer()(["a polyp"])["input_ids"].shape == (1, 77)


def test_paper_biomedclip_layout_matches_open_clip(tmp_path, paper_models):
    """Same parameter names and shapes as open_clip's BiomedCLIP, so the hub checkpoint loads strictly."""
    from open_clip.model import CustomTextCLIP

    oc_cfg = load_config_json("biomedclip_open_clip.json")["model_cfg"]
    bert_dir = tmp_path / "bert"
    bert_dir.mkdir()
    (bert_dir / "config.json").write_text(json.dumps(load_config_json("biomedbert_base.json")))
    text_cfg = dict(oc_cfg["text_cfg"], hf_model_name=str(bert_dir), hf_model_pretrained=False)
    with torch.device("meta"):
        ref = CustomTextCLIP(embed_dim=oc_cfg["embed_dim"], vision_cfg=oc_cfg["vision_cfg"], text_cfg=text_cfg)
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in paper_models["biomedclipseg"].biomedclip.state_dict().items()}
    assert got == want
