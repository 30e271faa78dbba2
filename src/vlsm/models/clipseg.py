"""CLIPSeg (Lüddecke & Ecker, CVPR 2022) on transformers' ``CLIPSegForImageSegmentation``.

``self.clipseg`` is the transformers model, so reference checkpoints (``clipseg.clip.*``,
``clipseg.decoder.*``) map one to one. transformers runs CLIPSeg's encoders under ``no_grad``; here the
vision and text models are called directly, with gradients whenever the encoder is trainable, so
``freeze_encoder=False`` (the medvlsm default) really fine-tunes CLIP.

Weights: ``pretrained="CIDAS/clipseg-rd64-refined"`` (hub id, HF cache or local folder with
``config.json`` + ``model.safetensors``/``pytorch_model.bin``).
"""
from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Optional

import torch

from vlsm.models.registry import check_options, register_model
from vlsm.models.vlsm_base import (
    VLSMBase,
    VLSMConfig,
    load_config_json,
    preset_entry,
    restore_decoder_init,
)
from vlsm.models.weights import FileSpec, resolve_weights

CLIPSEG_FILES = (
    FileSpec.of("config.json", what="transformers CLIPSegConfig"),
    FileSpec.of("model.safetensors", "pytorch_model.bin", what="weights"),
)
CLIPSEG_OPTIONS = ("image_size", "freeze_encoder", "freeze_decoder", "extract_layers", "activation_offset",
                   "context_length", "frozen_dropout")


def clipseg_config_from_hf(hf: dict, entry: dict, preset: str, overrides: dict) -> VLSMConfig:
    """A :class:`VLSMConfig` from a CLIPSegConfig dict, a preset entry and user overrides."""
    hf = copy.deepcopy(hf)
    if "extract_layers" in overrides:
        hf["extract_layers"] = [int(i) for i in overrides["extract_layers"]]
    vision, text = hf["vision_config"], hf["text_config"]
    context_length = int(overrides.get("context_length", entry["context_length"]))
    if context_length > text["max_position_embeddings"]:
        raise ValueError(f"clipseg: context_length {context_length} exceeds the text model's "
                         f"{text['max_position_embeddings']} positions")
    return VLSMConfig(
        model="clipseg", preset=preset,
        image_size=int(overrides.get("image_size", entry["image_size"])),
        patch_size=int(vision["patch_size"]),
        hidden_size=int(vision["hidden_size"]),
        num_hidden_layers=int(vision["num_hidden_layers"]),
        projection_dim=int(hf["projection_dim"]),
        extract_layers=tuple(hf["extract_layers"]),
        activation_offset=int(overrides.get("activation_offset", entry["activation_offset"])),
        reduce_dim=int(hf["reduce_dim"]),
        decoder_num_attention_heads=int(hf["decoder_num_attention_heads"]),
        decoder_intermediate_size=int(hf["decoder_intermediate_size"]),
        conditional_layer=int(hf["conditional_layer"]),
        use_complex_transposed_convolution=bool(hf["use_complex_transposed_convolution"]),
        mean=tuple(entry["mean"]), std=tuple(entry["std"]),
        tokenizer=entry["tokenizer"], context_length=context_length,
        freeze_encoder=bool(overrides.get("freeze_encoder", entry["freeze_encoder"])),
        freeze_decoder=bool(overrides.get("freeze_decoder", entry["freeze_decoder"])),
        clipseg_config=hf,
        frozen_dropout=overrides.get("frozen_dropout", entry["frozen_dropout"]),
    )


def _clean_hf_dict(d: dict) -> dict:
    """The architecture fields of a CLIPSegConfig dict (drops bookkeeping such as transformers_version)."""
    drop = {"transformers_version", "architectures", "torch_dtype", "dtype", "_name_or_path", "_commit_hash"}
    out = {k: v for k, v in d.items() if k not in drop and not k.startswith("_")}
    for sub in ("text_config", "vision_config"):
        if isinstance(out.get(sub), dict):
            out[sub] = {k: v for k, v in out[sub].items() if k not in drop and not k.startswith("_")}
    return out


class CLIPSeg(VLSMBase):
    """CLIPSeg: CLIP ViT-B/16 image + text encoders and the FiLM-conditioned transformer decoder."""

    def __init__(self, config: VLSMConfig, clipseg_module=None):
        super().__init__(config)
        from transformers import CLIPSegForImageSegmentation

        if clipseg_module is None:
            clipseg_module = CLIPSegForImageSegmentation(config.clipseg_hf_config())
            restore_decoder_init(clipseg_module.decoder)
        self.clipseg = clipseg_module
        self.apply_freezing()

    @property
    def decoder_module(self):
        return self.clipseg.decoder

    @property
    def encoder_modules(self) -> list:
        return [self.clipseg.clip]

    def encode_image(self, pixel_values: torch.Tensor, with_last_hidden_state: bool = False):
        """ViT activations at ``config.activation_blocks`` and, when asked, the last block's output (B, N, D).

        The blocks after the last one needed are not run (transformers' vision model, step by step)."""
        self._check_pixels(pixel_values)
        vision = self.clipseg.clip.vision_model
        last = self.last_needed_block(with_last_hidden_state)
        wanted = set(self.config.activation_blocks)
        with self._encoder_context():
            hidden = vision.pre_layrnorm(vision.embeddings(pixel_values, interpolate_pos_encoding=True))
            outputs = {}
            for index, layer in enumerate(vision.encoder.layers[:last + 1]):
                hidden = layer(hidden, None)
                if index in wanted:
                    outputs[index] = hidden
        final = hidden if last == self.config.num_hidden_layers - 1 else None
        return [outputs[b] for b in self.config.activation_blocks], final

    @property
    def image_modules(self) -> list:
        return [self.clipseg.clip.vision_model]

    @property
    def text_modules(self) -> list:
        return [self.clipseg.clip.text_model, self.clipseg.clip.text_projection]

    def run_text_encoder(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Projected CLIP text embedding (B, projection_dim), the decoder's conditional embedding."""
        return self.clipseg.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output

    def text_lengths(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Causal attention: a token sees only earlier ones, so the pooled (end) token needs the positions
        up to itself; the mask's shown tokens are kept too. Exact for any padding id."""
        from vlsm.text.batching import needed_lengths

        pooled = pooling_positions(input_ids, self.clipseg.clip.text_model.eos_token_id)
        if attention_mask is None:
            return pooled + 1
        return needed_lengths(attention_mask, keep=pooled)


def pooling_positions(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """The token transformers' CLIP text model pools, per row: the largest id when the config's
    ``eos_token_id`` is the legacy 2, else the first ``eos_token_id``."""
    ids = input_ids.to(torch.int)
    if eos_token_id == 2:
        return ids.argmax(dim=-1)
    return (ids == eos_token_id).int().argmax(dim=-1)


def clipseg_from_pretrained(folder: str | Path, what: str, config=None):
    """transformers' ``CLIPSegForImageSegmentation.from_pretrained`` on a local folder, strict: tensors the
    weight file lacks are an error (unless partial weights are allowed) instead of a random init with a
    log line, and a tensor of another shape names the file, the key and both shapes."""
    from transformers import CLIPSegForImageSegmentation

    from vlsm.models.checkpoint import CheckpointError, allow_missing

    folder = Path(folder)
    weights = next((folder / n for n in CLIPSEG_FILES[1].names if (folder / n).is_file()), folder)
    kwargs = {} if config is None else {"config": config}
    with _quiet_transformers():
        module, info = CLIPSegForImageSegmentation.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    mismatched = sorted(info.get("mismatched_keys") or [])
    if mismatched:
        key, theirs, ours = (tuple(x) if not isinstance(x, str) else x for x in mismatched[0])
        raise CheckpointError(f"weights in {weights} do not fit model {what}: first mismatch {key} {theirs} vs "
                              f"{ours} ({len(mismatched)} shape mismatch{'es' if len(mismatched) > 1 else ''}). Were they "
                              f"trained with another model, preset or image size (--preset / --img-size)?")
    allow_missing(str(weights), what, sorted(info.get("missing_keys") or []))
    return module


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' own load report and progress bar off while it loads a folder: the checks after the load
    report missing and mismatched tensors in one line (a warning under --allow-partial-weights), so the user
    sees that line alone. (Its handler also writes to the stderr of the moment transformers was imported.)"""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_clipseg_module(folder: str | Path, config: VLSMConfig):
    """The CLIPSeg module of a resolved local folder (no hub access), loaded strictly."""
    module = clipseg_from_pretrained(folder, "clipseg", config=config.clipseg_hf_config())
    # from_pretrained may leave tensors in the memory-mapped weight file; fresh, aligned copies make the
    # numerics identical to a model built and then loaded with load_state_dict (as load_pretrained does)
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            tensor.data = tensor.data.clone()
    return module.float() if module.dtype != torch.float32 else module


def _tokenizer_for(config: VLSMConfig, tokenizer_dir: Optional[Path]):
    from vlsm.text.tokenizers import TOKENIZER_FILE, ClipBPETokenizer, load_tokenizer

    if tokenizer_dir is not None and (tokenizer_dir / TOKENIZER_FILE).is_file():
        tok = load_tokenizer(tokenizer_dir)
        if tok.context_length != config.context_length:
            tok = load_tokenizer(tokenizer_dir, context_length=config.context_length)
        return tok
    # CLIP's BPE vocabulary ships with open_clip: always available offline
    return ClipBPETokenizer(context_length=config.context_length)


def _architecture_sources(preset: str, pretrained: Optional[str], saved) -> tuple:
    """``(CLIPSegConfig dict, settings, resolved weights or None)``: from the saved architecture, the weight
    source's ``config.json`` or the preset's architecture file; the settings (image size, context length,
    freezing, ...) from the saved architecture over the preset's."""
    entry = preset_entry("clipseg", preset)
    if saved is not None and saved.architecture is not None:
        return saved.architecture["clipseg_config"], {**entry, **saved.architecture}, None
    if pretrained is None:
        return load_config_json(entry["clipseg_config"]), entry, None
    resolved = resolve_weights(pretrained, CLIPSEG_FILES, model="clipseg")
    hf = _clean_hf_dict(json.loads(resolved.path("config.json").read_text()))
    if hf.get("model_type") != "clipseg":
        raise ValueError(f"{resolved.path('config.json')} is not a CLIPSeg config "
                         f"(model_type {hf.get('model_type')!r}); point pretrained= at a CLIPSeg checkpoint")
    return hf, entry, resolved


@register_model("clipseg", description="CLIPSeg rd64-refined: CLIP ViT-B/16 encoders + FiLM transformer decoder "
                "(352 px, CLIP BPE prompts of 77 tokens)", uses_text=True, paper_name="CLIPSeg")
def build_clipseg(*, preset: str = "paper", variant=None, pretrained: Optional[str] = None, saved=None,
                  **overrides) -> CLIPSeg:
    check_options("clipseg", overrides, CLIPSEG_OPTIONS)
    hf, settings, resolved = _architecture_sources(preset, pretrained, saved)
    config = clipseg_config_from_hf(hf, settings, preset, overrides)
    module = load_clipseg_module(resolved.folder, config) if resolved is not None else None
    model = CLIPSeg(config, clipseg_module=module)
    model.set_tokenizer(_tokenizer_for(config, saved.tokenizer_dir if saved is not None else None))
    return model
