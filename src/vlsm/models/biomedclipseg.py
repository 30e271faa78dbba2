"""BiomedCLIPSeg (Poudel et al., MIDL 2024): BiomedCLIP's encoders + a CLIPSeg decoder.

* ``self.biomedclip``: the BiomedCLIP model with open_clip's layout (``visual.trunk`` = timm ViT-B/16,
  ``visual.head.proj``, ``text.transformer`` = PubMedBERT, ``text.pooler``, ``text.proj`` = MLP to 512,
  ``logit_scale``), so ``open_clip_pytorch_model.bin`` loads strictly and reference checkpoints map
  one to one (``biomedclip.*``).
* ``self.decoder``: transformers' ``CLIPSegDecoder`` built from the rd64-refined config, sized to the
  encoder (hidden 768, patch 16, projection 512). ``biomedclipseg`` initialises it at random;
  ``biomedclipseg-d`` copies the pretrained rd64-refined decoder (``decoder_pretrained=``).

Image activations follow the reference code (medvlsm ``biomedclipseg.py``): patch_embed, _pos_embed,
norm_pre, blocks; the activation for extract layer ``i`` is the output of block
``i + activation_offset`` (default 1: blocks 4, 7, 10 for layers 3, 6, 9). The text embedding is
``proj(pooler(transformer(input_ids, attention_mask)))``.

Building never touches the hub: open_clip's text tower normally asks ``AutoConfig.from_pretrained`` for
the BERT config; here it is built from a local ``BertConfig`` (the weights folder's ``config.json`` when
it is a BERT config, else the BiomedBERT config shipped in ``models/configs/biomedbert_base.json``) and
handed to open_clip's ``HFTextEncoder(config=...)``.
"""
from __future__ import annotations

import copy
import json
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from vlsm.models.checkpoint import load_state_dict_strict
from vlsm.models.registry import check_options, register_model
from vlsm.models.vlsm_base import (
    VLSMBase,
    VLSMConfig,
    load_config_json,
    preset_entry,
    restore_decoder_init,
)
from vlsm.models.weights import FileSpec, ResolvedWeights, resolve_weights

BIOMEDCLIP_FILES = (
    FileSpec.of("open_clip_config.json", what="open_clip model config"),
    FileSpec.of("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                what="BiomedCLIP weights"),
    FileSpec.of("vocab.txt", "tokenizer.json", required=False, what="BiomedBERT WordPiece vocabulary"),
    FileSpec.of("config.json", required=False, what="BERT config of the text tower"),
)
CLIPSEG_DECODER_FILES = (
    FileSpec.of("config.json", what="transformers CLIPSegConfig"),
    FileSpec.of("model.safetensors", "pytorch_model.bin", what="CLIPSeg weights"),
)
BIOMEDCLIPSEG_OPTIONS = ("image_size", "freeze_encoder", "freeze_decoder", "extract_layers", "activation_offset",
                         "context_length", "frozen_dropout")
# BERT configs shipped with the package, by the hub names open_clip configs use for the text tower
KNOWN_TEXT_CONFIGS = {
    "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract": "biomedbert_base.json",
    "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract": "biomedbert_base.json",
    "vlsm-tiny-bert": "biomedbert_tiny.json",
}
VOCAB_HINT = ("The BiomedBERT WordPiece vocabulary (vocab.txt or tokenizer.json) comes with the BiomedCLIP "
              "weights: download microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 and pass its folder "
              "as pretrained=..., or pass model_dir=<a saved model folder holding vocab.txt>.")


class TimmVisionTower(nn.Module):
    """open_clip's ``TimmModel`` layout (``trunk`` + ``head.proj``) for a ViT built with explicit kwargs.

    ``vision_cfg`` keys as in open_clip (timm_model_name, timm_pool, timm_proj, timm_proj_bias, image_size)
    plus ``timm_model_kwargs`` (extra timm constructor arguments, used by the tiny preset).
    """

    def __init__(self, vision_cfg: dict, embed_dim: int):
        super().__init__()
        import timm

        proj = vision_cfg.get("timm_proj", "linear")
        if proj not in ("linear", "none", "", None):
            raise ValueError(f"timm_proj {proj!r} is not supported (BiomedCLIP uses 'linear')")
        kwargs = dict(vision_cfg.get("timm_model_kwargs") or {})
        pool = vision_cfg.get("timm_pool", "")
        if pool:
            kwargs["global_pool"] = pool
        image_size = vision_cfg.get("image_size", 224)
        self.trunk = timm.create_model(vision_cfg["timm_model_name"], pretrained=False, num_classes=0,
                                       img_size=image_size, **kwargs)
        head = OrderedDict()
        if proj == "linear":
            head["drop"] = nn.Dropout(vision_cfg.get("timm_drop", 0.0))
            head["proj"] = nn.Linear(self.trunk.num_features, embed_dim,
                                     bias=bool(vision_cfg.get("timm_proj_bias", False)))
        self.head = nn.Sequential(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class BiomedCLIPModel(nn.Module):
    """BiomedCLIP with open_clip's ``CustomTextCLIP`` parameter names (``visual``, ``text``, ``logit_scale``)."""

    def __init__(self, open_clip_cfg: dict, text_config: dict):
        super().__init__()
        from open_clip.hf_model import HFTextEncoder
        from transformers import BertConfig

        model_cfg = open_clip_cfg["model_cfg"]
        embed_dim = int(model_cfg["embed_dim"])
        text_cfg = model_cfg["text_cfg"]
        self.visual = TimmVisionTower(model_cfg["vision_cfg"], embed_dim)
        bert_config = BertConfig(**{k: v for k, v in text_config.items() if k != "model_type"})
        pooler = text_cfg.get("hf_pooler_type", "cls_last_hidden_state_pooler")
        self.text = HFTextEncoder(text_cfg.get("hf_model_name", "bert"), output_dim=embed_dim,
                                  config=bert_config, pooler_type=pooler,
                                  proj_type=text_cfg.get("hf_proj_type", "mlp"), pretrained=False)
        if pooler != "cls_pooler":
            # open_clip builds BERT without its pooling layer for these poolers (and BiomedCLIP's
            # checkpoint has none); with a config object it would add one, so drop it.
            self.text.transformer.pooler = None
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
        self.logit_bias = None
        self.context_length = int(text_cfg.get("context_length", self.text.context_length))

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = (input_ids != self.text.config.pad_token_id).long()
        out = self.text.transformer(input_ids=input_ids, attention_mask=attention_mask)
        return self.text.proj(self.text.pooler(out, attention_mask))


def load_open_clip_state_dict(model: BiomedCLIPModel, path: Path) -> None:
    """Load an open_clip checkpoint file strictly, with open_clip's usual key fixes."""
    from open_clip.factory import load_state_dict
    from timm.layers import resample_abs_pos_embed

    state = load_state_dict(str(path))
    # BERT position_ids were a persistent buffer before transformers 4.31
    state.pop("text.transformer.embeddings.position_ids", None)
    if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    key = "visual.trunk.pos_embed"
    trunk = model.visual.trunk
    if key in state and state[key].shape != trunk.pos_embed.shape:
        prefix = 0 if getattr(trunk, "no_embed_class", False) else trunk.num_prefix_tokens
        old_grid = int(round((state[key].shape[1] - prefix) ** 0.5))
        state[key] = resample_abs_pos_embed(state[key], new_size=list(trunk.patch_embed.grid_size),
                                            old_size=[old_grid, old_grid], num_prefix_tokens=prefix)
    load_state_dict_strict(model, state, source=str(path), model_name="BiomedCLIP (as its open_clip_config.json "
                           "describes it)")


def _decoder_config(clipseg_cfg: dict, hidden: int, patch: int, image: int, projection: int,
                    extract_layers) -> dict:
    cfg = copy.deepcopy(clipseg_cfg)
    cfg["vision_config"].update(hidden_size=hidden, patch_size=patch, image_size=image)
    cfg["projection_dim"] = projection
    cfg["extract_layers"] = [int(i) for i in extract_layers]
    return cfg


def biomedclipseg_config(open_clip_cfg: dict, text_config: dict, clipseg_cfg: dict, entry: dict, preset: str,
                         overrides: dict, name: str) -> VLSMConfig:
    open_clip_cfg = copy.deepcopy(open_clip_cfg)
    model_cfg = open_clip_cfg["model_cfg"]
    vision = model_cfg["vision_cfg"]
    image_size = int(overrides.get("image_size", entry["image_size"]))
    vision["image_size"] = image_size
    hidden, patch, depth = _vit_dims(vision)
    extract = overrides.get("extract_layers", clipseg_cfg["extract_layers"])
    context_length = int(overrides.get("context_length", entry["context_length"]))
    if context_length > text_config["max_position_embeddings"]:
        raise ValueError(f"{name}: context_length {context_length} exceeds the text model's "
                         f"{text_config['max_position_embeddings']} positions")
    model_cfg["text_cfg"]["context_length"] = context_length
    dec = _decoder_config(clipseg_cfg, hidden, patch, image_size, int(model_cfg["embed_dim"]), extract)
    return VLSMConfig(
        model=name, preset=preset, image_size=image_size, patch_size=patch, hidden_size=hidden,
        num_hidden_layers=depth, projection_dim=int(model_cfg["embed_dim"]),
        extract_layers=tuple(dec["extract_layers"]),
        activation_offset=int(overrides.get("activation_offset", entry["activation_offset"])),
        reduce_dim=int(dec["reduce_dim"]), decoder_num_attention_heads=int(dec["decoder_num_attention_heads"]),
        decoder_intermediate_size=int(dec["decoder_intermediate_size"]),
        conditional_layer=int(dec["conditional_layer"]),
        use_complex_transposed_convolution=bool(dec["use_complex_transposed_convolution"]),
        mean=tuple(entry["mean"]), std=tuple(entry["std"]), tokenizer=entry["tokenizer"],
        context_length=context_length,
        freeze_encoder=bool(overrides.get("freeze_encoder", entry["freeze_encoder"])),
        freeze_decoder=bool(overrides.get("freeze_decoder", entry["freeze_decoder"])),
        clipseg_config=dec, open_clip_config=open_clip_cfg, text_config=dict(text_config),
        frozen_dropout=overrides.get("frozen_dropout", entry["frozen_dropout"]),
    )


def _vit_dims(vision_cfg: dict) -> tuple[int, int, int]:
    """(width, patch, depth) of the timm ViT an open_clip vision config describes, without building it."""
    import timm

    name = vision_cfg["timm_model_name"]
    kwargs = dict(vision_cfg.get("timm_model_kwargs") or {})
    if {"embed_dim", "patch_size", "depth"} <= set(kwargs):
        return int(kwargs["embed_dim"]), int(kwargs["patch_size"]), int(kwargs["depth"])
    # build on the meta device: only shapes, no memory, no time
    with torch.device("meta"):
        trunk = timm.create_model(name, pretrained=False, num_classes=0, img_size=vision_cfg.get("image_size", 224),
                                  **kwargs)
    patch = trunk.patch_embed.patch_size
    return int(trunk.embed_dim), int(patch[0] if isinstance(patch, (tuple, list)) else patch), len(trunk.blocks)


class BiomedCLIPSeg(VLSMBase):
    """BiomedCLIP encoders (frozen by default) + CLIPSeg decoder."""

    def __init__(self, config: VLSMConfig):
        super().__init__(config)
        from transformers.models.clipseg.modeling_clipseg import CLIPSegDecoder

        self.biomedclip = BiomedCLIPModel(config.open_clip_config, config.text_config)
        decoder_config = config.clipseg_hf_config()
        # as inside CLIPSegForImageSegmentation, the decoder layers use PyTorch's fused attention
        decoder_config._attn_implementation = "sdpa"
        self.decoder = restore_decoder_init(CLIPSegDecoder(decoder_config))
        trunk = self.biomedclip.visual.trunk
        if trunk.embed_dim != config.hidden_size or len(trunk.blocks) != config.num_hidden_layers:
            raise ValueError(f"{config.model}: the ViT built from the open_clip config (width {trunk.embed_dim}, "
                             f"{len(trunk.blocks)} blocks) does not match the model config")
        self.apply_freezing()

    @property
    def decoder_module(self):
        return self.decoder

    @property
    def encoder_modules(self) -> list:
        return [self.biomedclip]

    def encode_image(self, pixel_values: torch.Tensor, with_last_hidden_state: bool = False):
        """Outputs of ViT blocks ``config.activation_blocks`` (as the reference) and, when asked, of the last
        block (B, N, D). The blocks after the last one needed are not run."""
        self._check_pixels(pixel_values)
        trunk = self.biomedclip.visual.trunk
        last = self.last_needed_block(with_last_hidden_state)
        wanted = set(self.config.activation_blocks)
        with self._encoder_context():
            x = trunk.patch_embed(pixel_values)
            x = trunk._pos_embed(x)
            x = trunk.norm_pre(x)
            outputs = {}
            for index, block in enumerate(trunk.blocks[:last + 1]):
                x = block(x)
                if index in wanted:
                    outputs[index] = x
        final = x if last == self.config.num_hidden_layers - 1 else None
        return [outputs[b] for b in self.config.activation_blocks], final

    @property
    def image_modules(self) -> list:
        return [self.biomedclip.visual.trunk]

    @property
    def text_modules(self) -> list:
        return [self.biomedclip.text]

    def run_text_encoder(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """BiomedCLIP text embedding (B, projection_dim): proj(pooler(BERT(input_ids, attention_mask)))."""
        return self.biomedclip.encode_text(input_ids, attention_mask)

    def text_lengths(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """BERT attends to the tokens the mask shows (no mask: the non-padding ids), at absolute positions
        counted from the start, and open_clip's poolers read the class token or masked means: positions
        after every row's last shown token change nothing."""
        from vlsm.text.batching import needed_lengths

        if attention_mask is None:
            attention_mask = (input_ids != self.biomedclip.text.config.pad_token_id).long()
        return needed_lengths(attention_mask)

    def load_decoder_weights(self, source: str) -> None:
        """Copy the decoder of a transformers CLIPSeg checkpoint (``biomedclipseg-d``)."""
        from vlsm.models.clipseg import clipseg_from_pretrained

        resolved = resolve_weights(source, CLIPSEG_DECODER_FILES, model=f"{self.config.model} decoder",
                                   hint="biomedclipseg-d takes its decoder from CLIPSeg: pass "
                                        "decoder_pretrained=<CLIPSeg hub id or folder>.")
        clipseg = clipseg_from_pretrained(resolved.folder, "CLIPSeg (the decoder's source)")
        state = clipseg.decoder.state_dict()
        mine = self.decoder.state_dict()
        bad = [k for k in mine if k not in state or state[k].shape != mine[k].shape]
        if bad:
            raise ValueError(f"the CLIPSeg decoder in {resolved.folder} does not fit this model's decoder "
                             f"(mismatched: {bad[:6]}); it needs reduce_dim {self.config.reduce_dim}, "
                             f"hidden {self.config.hidden_size}, projection {self.config.projection_dim}")
        self.decoder.load_state_dict(state, strict=True)
        self.apply_freezing()


def _text_config_for(model_cfg: dict, resolved: Optional[ResolvedWeights]) -> dict:
    """The BERT config of the text tower, from local files only."""
    if resolved is not None:
        path = resolved.get("config.json")
        if path is not None:
            data = json.loads(path.read_text())
            if data.get("model_type") == "bert":
                return {k: v for k, v in data.items() if not k.startswith("_") and k not in
                        ("architectures", "transformers_version", "torch_dtype", "dtype")}
    name = model_cfg["text_cfg"].get("hf_model_name")
    if name in KNOWN_TEXT_CONFIGS:
        return load_config_json(KNOWN_TEXT_CONFIGS[name])
    raise ValueError(f"the text tower {name!r} has no local BERT config: put its config.json (model_type 'bert') "
                     f"next to open_clip_config.json")


def _tokenizer_for(config: VLSMConfig, tokenizer_dir: Optional[Path], resolved: Optional[ResolvedWeights]):
    """(tokenizer or None, error message): from the saved model's tokenizer files, else the weights folder."""
    from vlsm.text.tokenizers import TOKENIZER_FILE, WordPieceTokenizer, find_wordpiece_vocab, load_tokenizer

    for folder in (tokenizer_dir, resolved.folder if resolved is not None else None):
        if folder is None:
            continue
        if (Path(folder) / TOKENIZER_FILE).is_file() or find_wordpiece_vocab(folder) is not None:
            return load_tokenizer(folder, kind="wordpiece", context_length=config.context_length), None
    if resolved is not None:
        vocab = resolved.get("vocab.txt", "tokenizer.json")
        if vocab is not None:
            return WordPieceTokenizer.from_file(vocab, context_length=config.context_length), None
    if config.preset == "tiny":
        return WordPieceTokenizer.character_level(context_length=config.context_length), None
    looked = [str(p) for p in (tokenizer_dir, resolved.folder if resolved else None) if p]
    where = f" (looked in {', '.join(looked)})" if looked else ""
    return None, (f"{config.model}: no BiomedBERT vocabulary available{where}. " + VOCAB_HINT)


def _architecture_sources(name: str, preset: str, pretrained: Optional[str], saved) -> tuple:
    """``(open_clip config, BERT config, CLIPSeg decoder config, settings, resolved weights or None)``: from the
    saved architecture, else the weight source's files (or the preset's architecture files) and the preset's
    settings; the saved architecture's settings over the preset's."""
    entry = preset_entry("biomedclipseg", preset)
    if saved is not None and saved.architecture is not None:
        arch = saved.architecture
        return arch["open_clip_config"], arch["text_config"], arch["clipseg_config"], {**entry, **arch}, None
    resolved = None
    if pretrained is not None:
        resolved = resolve_weights(pretrained, BIOMEDCLIP_FILES, model=name)
        open_clip_cfg = json.loads(resolved.path("open_clip_config.json").read_text())
        if "model_cfg" not in open_clip_cfg:
            raise ValueError(f"{resolved.path('open_clip_config.json')} has no 'model_cfg' section; is it an "
                             f"open_clip model config?")
    else:
        open_clip_cfg = load_config_json(entry["open_clip_config"])
    text_config = _text_config_for(open_clip_cfg["model_cfg"], resolved)
    return open_clip_cfg, text_config, load_config_json(entry["clipseg_config"]), entry, resolved


def _build(name: str, *, preset: str, pretrained: Optional[str], saved, decoder_pretrained: Optional[str],
           overrides: dict) -> BiomedCLIPSeg:
    check_options(name, overrides, BIOMEDCLIPSEG_OPTIONS)
    open_clip_cfg, text_config, clipseg_cfg, settings, resolved = _architecture_sources(name, preset, pretrained,
                                                                                       saved)
    if saved is not None and saved.architecture is not None:
        decoder_pretrained = None  # a saved model: its decoder's weights come with it
    config = biomedclipseg_config(open_clip_cfg, text_config, clipseg_cfg, settings, preset, overrides, name)
    model = BiomedCLIPSeg(config)
    if resolved is not None:
        load_open_clip_state_dict(model.biomedclip, resolved.path(*BIOMEDCLIP_FILES[1].names))
    if decoder_pretrained is not None:
        model.load_decoder_weights(decoder_pretrained)
    model.set_tokenizer(*_tokenizer_for(config, saved.tokenizer_dir if saved is not None else None, resolved))
    return model


@register_model("biomedclipseg", description="BiomedCLIPSeg: frozen BiomedCLIP (ViT-B/16 + PubMedBERT) encoders + "
                "randomly initialised CLIPSeg decoder (224 px, WordPiece prompts of 256 tokens)",
                uses_text=True, paper_name="BiomedCLIPSeg")
def build_biomedclipseg(*, preset: str = "paper", variant=None, pretrained: Optional[str] = None, saved=None,
                        **overrides) -> BiomedCLIPSeg:
    if "decoder_pretrained" in overrides:
        raise ValueError("biomedclipseg initialises its decoder at random; use 'biomedclipseg-d' for a decoder "
                         "initialised from pretrained CLIPSeg (decoder_pretrained=...)")
    return _build("biomedclipseg", preset=preset, pretrained=pretrained, saved=saved, decoder_pretrained=None,
                  overrides=overrides)


@register_model("biomedclipseg-d", description="BiomedCLIPSeg-D: BiomedCLIPSeg whose decoder starts from the "
                "pretrained CLIPSeg rd64-refined decoder (decoder_pretrained=, default CIDAS/clipseg-rd64-refined)",
                uses_text=True, paper_name="BiomedCLIPSeg-D")
def build_biomedclipseg_d(*, preset: str = "paper", variant=None, pretrained: Optional[str] = None, saved=None,
                          **overrides) -> BiomedCLIPSeg:
    overrides = dict(overrides)
    decoder_pretrained = overrides.pop("decoder_pretrained", None)
    if pretrained is not None and decoder_pretrained is None:
        decoder_pretrained = preset_entry("biomedclipseg", preset).get("decoder_weights")
        if decoder_pretrained is None:
            raise ValueError(f"biomedclipseg-d preset {preset!r} has no default CLIPSeg decoder weights: pass "
                             f"decoder_pretrained=<CLIPSeg hub id or folder>")
    return _build("biomedclipseg-d", preset=preset, pretrained=pretrained, saved=saved,
                  decoder_pretrained=decoder_pretrained, overrides=overrides)
