"""The paper's ensembles (Dietlmeier et al., MIDL 2025): BiomedCLIPSeg-A, CLIPSeg-B and Ensemble-C.

Each is registered with ``variant="fixed"`` (default, the architecture the paper describes) and
``variant="reference"`` (the reference code's computation), and with the converter of the reference code's
checkpoints (:mod:`.conversion`). A model holds its variant's :class:`~.variants.Variant` record as
``self.variant`` and reads the behaviours from it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from vlsm.models.ensembles.base import (
    AdapterSizes,
    EnsembleConfig,
    VLSMEnsemble,
    build_vlsm,
    check_ensemble_options,
    ensemble_config,
)
from vlsm.models.ensembles.branches import BranchA, BranchB
from vlsm.models.ensembles.conversion import convert_biomedclipseg_a, convert_clipseg_b, convert_ensemble_c
from vlsm.models.ensembles.variants import VARIANTS, Variant, get_variant
from vlsm.models.reference import load_weights
from vlsm.models.registry import register_model
from vlsm.models.vlsm_base import load_config_json, preset_entry


class ConcatTokenizer:
    """Two tokenizers side by side: ``input_ids`` = [first's L1 ids | second's L2 ids] (Ensemble-C fixed)."""

    def __init__(self, first, second):
        self.first, self.second = first, second
        self.context_length = first.context_length + second.context_length

    @property
    def split(self) -> tuple:
        return self.first.context_length, self.second.context_length

    def __call__(self, texts) -> dict:
        a, b = self.first(texts), self.second(texts)
        return {k: torch.cat([a[k], b[k]], dim=1) for k in ("input_ids", "attention_mask")}

    def __repr__(self) -> str:
        return f"ConcatTokenizer({self.first!r}, {self.second!r})"


class SingleBranchEnsemble(VLSMEnsemble):
    """A and B: one branch around one VLSM, whose preprocessing and tokenizer the ensemble takes."""

    VLSM_NAME: str

    def __init__(self, ensemble: EnsembleConfig, vlsm):
        super().__init__()
        self.ensemble = ensemble
        self.variant = get_variant(ensemble.variant)
        self.branch = self.make_branch(vlsm, ensemble.sizes, {**ensemble.unet, "image_size": ensemble.image_size})
        self.preprocess = vlsm.preprocess

    def make_branch(self, vlsm, sizes: AdapterSizes, unet: dict) -> nn.Module:
        raise NotImplementedError

    def vlsms(self) -> dict:
        return {self.VLSM_NAME: self.branch.vlsm}

    def image_feature_sources(self) -> list:
        return [(self.branch.vlsm, self.branch.with_last_hidden_state)]

    def get_tokenizer(self):
        return self.branch.vlsm.get_tokenizer()


class BiomedCLIPSegA(SingleBranchEnsemble):
    """BiomedCLIPSeg-A: BiomedCLIPSeg + UNet-D with a data adapter; a 1x1 conv fuses [VLSM, UNet-D] logits."""

    VLSM_NAME = "biomedclipseg"

    def make_branch(self, vlsm, sizes, unet):
        return BranchA(vlsm, sizes, unet, self.variant)

    def forward_with_features(self, pixel_values, features, input_ids=None, attention_mask=None):
        (own,) = self.features_per_vlsm(features)
        p = self.branch.parts(pixel_values, input_ids, attention_mask, features=own)
        return self.branch.fusion(torch.cat([p.vlsm_logits, p.unet_logits], dim=1))


class CLIPSegB(SingleBranchEnsemble):
    """CLIPSeg-B: CLIPSeg + UNet-D with a transformer adapter; UNet-D fuses the CLIPSeg logits with its own."""

    VLSM_NAME = "clipseg"

    def make_branch(self, vlsm, sizes, unet):
        return BranchB(vlsm, sizes, unet, self.variant)

    def forward_with_features(self, pixel_values, features, input_ids=None, attention_mask=None):
        (own,) = self.features_per_vlsm(features)
        return self.branch.parts(pixel_values, input_ids, attention_mask, features=own).logits


class EnsembleC(VLSMEnsemble):
    """Ensemble-C: a BiomedCLIPSeg-A branch and a CLIPSeg-B branch, fused by a 1x1 conv (wired as
    ``self.variant`` says: shared tokenizer, duplicated maps, shared fusion, default-config decoder)."""

    def __init__(self, ensemble: EnsembleConfig, biomed, clip):
        super().__init__()
        self.ensemble = ensemble
        v = self.variant = get_variant(ensemble.variant)
        sizes, r = ensemble.sizes, ensemble.sizes.reduce_dim
        unet = {**ensemble.unet, "image_size": ensemble.image_size}
        # duplicate_map: each UNet-D takes [own map, encoder, own map]; else the BiomedCLIP branch's UNet-D
        # takes [own map, encoder, CLIPSeg map] and the CLIPSeg branch's [own map, encoder]
        self.biomed = BranchA(biomed, sizes, unet, v, extra_inject=(r,), own_fusion=not v.shared_fusion,
                              duplicate_map=v.duplicate_map, default_config_decoder=v.default_config_decoder)
        self.clip = BranchB(clip, sizes, unet, v, duplicate_map=v.duplicate_map)
        self.fusion = nn.Conv2d(2, 1, 1)
        self.preprocess = dataclasses.replace(biomed.preprocess)
        if not v.shared_tokenizer:
            self.preprocess.context_length = biomed.config.context_length + clip.config.context_length
            self.preprocess.tokenizer = f"{biomed.config.tokenizer}+{clip.config.tokenizer}"

    def vlsms(self) -> dict:
        return {"biomedclipseg": self.biomed.vlsm, "clipseg": self.clip.vlsm}

    def image_feature_sources(self) -> list:
        return [(self.biomed.vlsm, self.biomed.with_last_hidden_state),
                (self.clip.vlsm, self.clip.with_last_hidden_state)]

    def get_tokenizer(self):
        first = self.biomed.vlsm.get_tokenizer()
        if self.variant.shared_tokenizer:
            return first
        return ConcatTokenizer(first, self.clip.vlsm.get_tokenizer())

    def _split_text(self, input_ids, attention_mask):
        if self.variant.shared_tokenizer:
            return (input_ids, attention_mask), (input_ids, attention_mask)
        l1 = self.biomed.vlsm.config.context_length
        l2 = self.clip.vlsm.config.context_length
        if input_ids is None or input_ids.shape[-1] != l1 + l2:
            got = None if input_ids is None else tuple(input_ids.shape)
            raise ValueError(f"ensemble-c (fixed) takes input_ids of {l1} BiomedCLIP WordPiece + {l2} CLIP BPE "
                             f"tokens per prompt (shape (B, {l1 + l2})), got {got}: tokenize with "
                             f"model.get_tokenizer()")
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        return (input_ids[:, :l1], mask[:, :l1]), (input_ids[:, l1:], mask[:, l1:])

    def forward_with_features(self, pixel_values, features, input_ids=None, attention_mask=None):
        (ids_b, mask_b), (ids_c, mask_c) = self._split_text(input_ids, attention_mask)
        feats_b, feats_c = self.features_per_vlsm(features)
        if self.variant.duplicate_map:  # the branches are independent: the reference's order, BiomedCLIP first
            pb = self.biomed.parts(pixel_values, ids_b, mask_b, features=feats_b)
            pc = self.clip.parts(pixel_values, ids_c, mask_c, features=feats_c)
        else:  # the BiomedCLIP branch's UNet-D takes the CLIPSeg branch's map
            pc = self.clip.parts(pixel_values, ids_c, mask_c, features=feats_c)
            pb = self.biomed.parts(pixel_values, ids_b, mask_b, extra=[pc.map], features=feats_b)
        fusion_b = self.fusion if self.variant.shared_fusion else self.biomed.fusion
        b_out = fusion_b(torch.cat([pb.vlsm_logits, pb.unet_logits], dim=1))
        return self.fusion(torch.cat([b_out, pc.logits], dim=1))


# -- builders ---------------------------------------------------------------------------------------
def _with_weights(model: VLSMEnsemble, name: str, pretrained: Optional[str]) -> VLSMEnsemble:
    if pretrained is not None:
        if not Path(pretrained).exists():
            raise FileNotFoundError(
                f"{name}: pretrained={pretrained!r} not found. Pass a folder written by save_pretrained or a "
                f"state-dict file (ours or the reference code's). Backbone weights go under the VLSM's name, "
                f"e.g. clipseg={{'pretrained': 'CIDAS/clipseg-rd64-refined'}}.")
        load_weights(model, name, pretrained)
    return model


def eager_attention(clip) -> None:
    """The reference loads CLIPSeg with ``output_attentions=True``, so transformers runs eager attention;
    do the same (identical encoder numbers instead of SDPA's last-bit differences)."""
    setter = getattr(clip.clipseg, "set_attn_implementation", None)
    if setter is not None:
        setter("eager")
    # the decoder layers hold their own copy of the vision config; the reference's says eager too
    for layer in clip.clipseg.decoder.layers:
        layer.self_attn.config._attn_implementation = "eager"


def _clip_defaults(v: Variant) -> dict:
    """The CLIPSeg options a variant sets unless the user's ``clipseg={...}`` says otherwise."""
    return {"freeze_encoder": True} if v.clip_encoder_frozen else {}


def _build_clip(v: Variant, preset: str, saved, image_size, defaults: dict, user):
    clip = build_vlsm("clipseg", preset, saved, image_size, {**_clip_defaults(v), **defaults}, user)
    if v.clip_eager_attention:
        eager_attention(clip)
    return clip


@register_model("biomedclipseg-a", description="BiomedCLIPSeg-A: BiomedCLIPSeg + UNet-D with a data adapter "
                "(VLSM-Ensemble)", variants=VARIANTS, default_variant="fixed", uses_text=True,
                paper_name="BiomedCLIPSeg-A", convert_reference=convert_biomedclipseg_a)
def build_biomedclipseg_a(*, preset="paper", variant="fixed", pretrained=None, saved=None, **overrides):
    check_ensemble_options("biomedclipseg-a", overrides, ("biomedclipseg",))
    vlsm = build_vlsm("biomedclipseg", preset, saved, overrides.get("image_size"), {},
                      overrides.get("biomedclipseg"))
    cfg = ensemble_config("biomedclipseg-a", variant, preset, vlsm.config.image_size, overrides, saved)
    return _with_weights(BiomedCLIPSegA(cfg, vlsm), "biomedclipseg-a", pretrained)


@register_model("clipseg-b", description="CLIPSeg-B: CLIPSeg + UNet-D with a transformer data adapter "
                "(VLSM-Ensemble)", variants=VARIANTS, default_variant="fixed", uses_text=True,
                paper_name="CLIPSeg-B", convert_reference=convert_clipseg_b)
def build_clipseg_b(*, preset="paper", variant="fixed", pretrained=None, saved=None, **overrides):
    check_ensemble_options("clipseg-b", overrides, ("clipseg",))
    clip = _build_clip(get_variant(variant), preset, saved, overrides.get("image_size"), {},
                       overrides.get("clipseg"))
    cfg = ensemble_config("clipseg-b", variant, preset, clip.config.image_size, overrides, saved)
    return _with_weights(CLIPSegB(cfg, clip), "clipseg-b", pretrained)


def _shared_context_length(preset: str, user_b: dict, user_c: dict) -> int:
    """The length of the one WordPiece id tensor that feeds BERT and CLIP's text model: it must fit both."""
    clip_entry = preset_entry("clipseg", user_c.get("preset", preset))
    clip_positions = load_config_json(clip_entry["clipseg_config"])["text_config"]["max_position_embeddings"]
    bio_entry = preset_entry("biomedclipseg", user_b.get("preset", preset))
    return min(int(bio_entry["context_length"]), int(clip_positions))


@register_model("ensemble-c", description="Ensemble-C: BiomedCLIPSeg-A and CLIPSeg-B branches fused by a 1x1 conv "
                "(VLSM-Ensemble)", variants=VARIANTS, default_variant="fixed", uses_text=True,
                paper_name="Ensemble-C", convert_reference=convert_ensemble_c)
def build_ensemble_c(*, preset="paper", variant="fixed", pretrained=None, saved=None, **overrides):
    check_ensemble_options("ensemble-c", overrides, ("biomedclipseg", "clipseg"))
    v = get_variant(variant)
    user_b = dict(overrides.get("biomedclipseg") or {})
    user_c = dict(overrides.get("clipseg") or {})
    defaults_b, defaults_c = {}, {}
    if v.shared_tokenizer:
        defaults_b["context_length"] = defaults_c["context_length"] = _shared_context_length(preset, user_b, user_c)
    biomed = build_vlsm("biomedclipseg", preset, saved, overrides.get("image_size"), defaults_b, user_b)
    clip = _build_clip(v, preset, saved, biomed.config.image_size, defaults_c, user_c)
    cfg = ensemble_config("ensemble-c", variant, preset, biomed.config.image_size, overrides, saved)
    return _with_weights(EnsembleC(cfg, biomed, clip), "ensemble-c", pretrained)
