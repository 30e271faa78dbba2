"""The two variants of the paper ensembles as data: one :class:`Variant` record each, of the behaviours it
switches; the branches and models read the record (never the variant's name).

``variant="reference"`` reproduces the reference code's computation, defects included, so that its
numbers and checkpoints reproduce; ``variant="fixed"`` is the architecture the paper describes.
:data:`REFERENCE_DEFECTS` and :data:`FIXED_CHANGES` say the same in words, model by model (docs/ensembles.md's "Two
variants" table too); each record carries its text as ``notes``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

#: what the CLIPSeg branch's adapter computes (vlsm.models.adapters)
CLIP_ADAPTERS = ("layer-stack", "batch-zip")


@dataclass(frozen=True)
class Variant:
    """The behaviours a variant of BiomedCLIPSeg-A, CLIPSeg-B and Ensemble-C switches.

    Every ensemble:
        strict_bottleneck: an adapter map (or A's head output) whose size differs from UNet-D's bottleneck (or
            the input) is an error, as in the reference (its sizes only fit at patch size == UNet-D's stride),
            instead of a bilinear resize.

    The CLIPSeg branch (B, and inside C):
        clip_adapter: ``"layer-stack"`` (one step per extracted ViT layer, per image, ``batch_first`` attention)
            or ``"batch-zip"`` (the reference's: zips over the last hidden state, i.e. over the images of the
            batch, attention across them); the adapter says which ViT outputs it reads.
        clip_encoder_frozen: CLIPSeg's encoders are frozen unless the user's options say otherwise
            (transformers' ``no_grad`` kept the reference's "fine-tuned" CLIP from training).
        clip_eager_attention: CLIPSeg runs transformers' eager attention (the reference asked for attention
            maps, which selects it) instead of SDPA: identical encoder numbers.

    Ensemble-C:
        shared_tokenizer: one WordPiece id tensor, at the shorter of the two context lengths, feeds both text
            encoders (fixed: ``input_ids`` = [WordPiece | CLIP BPE], each encoder its own).
        duplicate_map: each branch's UNet-D takes its own adapter map twice ([map, encoder, map]); else the
            BiomedCLIP branch's UNet-D takes [own map, encoder, CLIPSeg map].
        shared_fusion: one 1x1 conv serves the BiomedCLIP branch's fusion and the final fusion.
        default_config_decoder: the BiomedCLIP branch's decoder is built from transformers' default
            ``CLIPSegConfig`` layout (patch 32, plain transposed conv), its output (twice the input size)
            resized back with ``align_corners=True``; else BiomedCLIPSeg's own decoder.
    """

    name: str
    strict_bottleneck: bool
    clip_adapter: str
    clip_encoder_frozen: bool
    clip_eager_attention: bool
    shared_tokenizer: bool
    duplicate_map: bool
    shared_fusion: bool
    default_config_decoder: bool
    #: model name -> what this variant means for it, in words (defects kept, or changes made)
    notes: Mapping[str, tuple] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.clip_adapter not in CLIP_ADAPTERS:
            raise ValueError(f"variant {self.name}: clip_adapter must be one of {CLIP_ADAPTERS}, "
                             f"got {self.clip_adapter!r}")


REFERENCE_DEFECTS = {
    "biomedclipseg-a": (
        "no defect in the output: only wasted work (the adapter's upsampling head runs twice, an interpolated "
        "copy and a 112 px resize are computed and never used, the ViT's last block, final norm and projection "
        "head run for nothing). Dropped here; outputs are unchanged.",
        "unused modules built by the reference: dense_layer, trans_conv, upsample_proj (dropped on conversion).",
        "the frozen ViT runs under torch.inference_mode, which breaks back-propagation into the layers it feeds; "
        "here it runs under no_grad (same numbers).",
    ),
    "clipseg-b": (
        "the adapter zips over last_hidden_state, which iterates over the images of the batch instead of the "
        "extracted layers 3/6/9: step i uses image i's final-layer tokens (min(B, 3) steps).",
        "nn.TransformerEncoderLayer with batch_first=False on (B, N, D) input: attention runs across the images "
        "of the batch, so an image's output depends on the other images and on the batch size.",
        "transformers runs CLIPSeg's encoders under no_grad: the 'fine-tuned' CLIP encoder never trains "
        "(here it is frozen explicitly; same training).",
        "unused modules: reduce, trans_conv, trans_conv1, upsample_proj, decoder2.gn1 (dropped on conversion).",
    ),
    "ensemble-c": (
        "the BiomedCLIP decoder is built from a default CLIPSegConfig (patch 32, plain transposed conv): its "
        "output has twice the input size and is resized back (bilinear, align_corners=True).",
        "the same input_ids (BERT WordPiece) go to BERT and to CLIP's text encoder: it fails at BiomedCLIP's "
        "context 256 and feeds WordPiece ids to CLIP at 77; the reference variant therefore uses one WordPiece "
        "tokenizer with CLIP's context length.",
        "the CLIPSeg branch's adapter map never reaches the BiomedCLIP branch's UNet-D: each UNet-D gets its "
        "own branch's map twice ([map, encoder, map]).",
        "one convlast module serves two different fusions (BiomedCLIP branch and the final fusion).",
        "the CLIPSeg branch has CLIPSeg-B's batch-dependent adapter (see clipseg-b).",
        "a print in forward (dropped).",
        "unused modules: dense_layer, textembed, reduce_input_ids, trans_conv, upsample_proj, decoder2.gn1, "
        "decoder2.eca3, clip_seg.reduce, clip_seg.trans_conv, clip_seg.trans_conv1, clip_seg.upsample_proj, "
        "clip_seg.decoder2.gn1, clip_seg.decoder2.eca3 (dropped on conversion).",
    ),
}

FIXED_CHANGES = {
    "biomedclipseg-a": ("same computation as the reference (it has no output defect); dead work removed",),
    "clipseg-b": ("the adapter runs over the extracted layers of each image, with batch_first attention",
                  "the CLIPSeg encoders follow the CLIPSeg preset (freeze_encoder=False: really fine-tuned; "
                  "pass clipseg={'freeze_encoder': True} to freeze them)"),
    "ensemble-c": ("the BiomedCLIP branch's decoder matches its encoder (BiomedCLIPSeg's own, as in A)",
                   "each branch has its own tokenizer and context length (input_ids = [WordPiece | CLIP BPE])",
                   "the CLIPSeg branch's adapter map is injected into the BiomedCLIP branch's UNet-D",
                   "a separate fusion module per fusion; the CLIPSeg branch as in fixed clipseg-b"),
}

FIXED = Variant(name="fixed", strict_bottleneck=False, clip_adapter="layer-stack", clip_encoder_frozen=False,
                clip_eager_attention=False, shared_tokenizer=False, duplicate_map=False, shared_fusion=False,
                default_config_decoder=False, notes=MappingProxyType(FIXED_CHANGES))
REFERENCE = Variant(name="reference", strict_bottleneck=True, clip_adapter="batch-zip", clip_encoder_frozen=True,
                    clip_eager_attention=True, shared_tokenizer=True, duplicate_map=True, shared_fusion=True,
                    default_config_decoder=True, notes=MappingProxyType(REFERENCE_DEFECTS))

#: the variants by name; ``fixed`` first (the default)
VARIANT_RECORDS = {v.name: v for v in (FIXED, REFERENCE)}
VARIANTS = tuple(VARIANT_RECORDS)


def get_variant(name: str) -> Variant:
    if name not in VARIANT_RECORDS:
        raise ValueError(f"no ensemble variant {name!r}; valid variants: {', '.join(VARIANTS)}")
    return VARIANT_RECORDS[name]


__all__ = ["CLIP_ADAPTERS", "FIXED", "FIXED_CHANGES", "REFERENCE", "REFERENCE_DEFECTS", "VARIANTS",
           "VARIANT_RECORDS", "Variant", "get_variant"]
