"""VLSM-Ensemble models (Dietlmeier et al., MIDL 2025) and the general :class:`Stack`.

Registered names (each with ``variant="fixed"`` (default) and ``variant="reference"``):

* ``biomedclipseg-a`` - BiomedCLIPSeg + UNet-D. The first extracted ViT activation goes through a
  data adapter (reduce, FiLM with the text embedding, tokens -> g x g map); the map is injected at
  UNet-D's bottleneck, an upsampling head turns it into a full-size map that UNet-D fuses with its
  logits, and a 1x1 conv fuses [VLSM logits, UNet-D logits].
* ``clipseg-b`` - CLIPSeg + UNet-D with a transformer adapter over the extracted layers; UNet-D
  fuses the CLIPSeg logits with its own, then a 1x1 conv over [CLIPSeg logits, UNet-D logits].
* ``ensemble-c`` - a BiomedCLIPSeg-A branch and a CLIPSeg-B branch, fused by a 1x1 conv.
* ``stack`` - any registered VLSM + UNet-D or an image-only CNN (:class:`Stack`).

``variant="reference"`` reproduces the reference code's computation (defects included, listed in
:data:`REFERENCE_DEFECTS`) so that its numbers and checkpoints reproduce; ``variant="fixed"`` is the
architecture the paper describes. Every size (token count, grid, channels, image size) is derived
from the encoder configs and the image size.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vlsm.models.adapters import BatchZipAdapter, FirstLayerAdapter, LayerStackAdapter, UpsampleHead
from vlsm.models.base import SPEC_FILE, WEIGHTS_FILE, SegmentationModel
from vlsm.models.registry import create_model, register_model
from vlsm.models.unet_d import UNetD, unet_d_config
from vlsm.models.vlsm_base import restore_decoder_init

VARIANTS = ("fixed", "reference")

# Adapter sizes. Paper: the reference's reduce_dim 128, 4 heads; its nn.TransformerEncoderLayer uses
# PyTorch's defaults (feed-forward 2048, dropout 0.1).
ADAPTER_PRESETS = {
    "paper": dict(reduce_dim=128, adapter_heads=4, adapter_ffn_dim=2048, adapter_dropout=0.1),
    "tiny": dict(reduce_dim=16, adapter_heads=2, adapter_ffn_dim=32, adapter_dropout=0.1),
}

REFERENCE_DEFECTS = {
    "biomedclipseg-a": [
        "no defect in the output: only wasted work (the adapter's upsampling head runs twice, an interpolated "
        "copy and a 112 px resize are computed and never used, the ViT's last block, final norm and projection "
        "head run for nothing). Dropped here; outputs are unchanged.",
        "unused modules built by the reference: dense_layer, trans_conv, upsample_proj (dropped on conversion).",
        "the frozen ViT runs under torch.inference_mode, which breaks back-propagation into the layers it feeds; "
        "here it runs under no_grad (same numbers).",
    ],
    "clipseg-b": [
        "the adapter zips over last_hidden_state, which iterates over the images of the batch instead of the "
        "extracted layers 3/6/9: step i uses image i's final-layer tokens (min(B, 3) steps).",
        "nn.TransformerEncoderLayer with batch_first=False on (B, N, D) input: attention runs across the images "
        "of the batch, so an image's output depends on the other images and on the batch size.",
        "transformers runs CLIPSeg's encoders under no_grad: the 'fine-tuned' CLIP encoder never trains "
        "(here it is frozen explicitly; same training).",
        "unused modules: reduce, trans_conv, trans_conv1, upsample_proj, decoder2.gn1 (dropped on conversion).",
    ],
    "ensemble-c": [
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
    ],
}

FIXED_CHANGES = {
    "biomedclipseg-a": ["same computation as the reference (it has no output defect); dead work removed"],
    "clipseg-b": ["the adapter runs over the extracted layers of each image, with batch_first attention",
                  "the CLIPSeg encoders follow the CLIPSeg preset (freeze_encoder=False: really fine-tuned; "
                  "pass clipseg={'freeze_encoder': True} to freeze them)"],
    "ensemble-c": ["the BiomedCLIP branch's decoder matches its encoder (BiomedCLIPSeg's own, as in A)",
                   "each branch has its own tokenizer and context length (input_ids = [WordPiece | CLIP BPE])",
                   "the CLIPSeg branch's adapter map is injected into the BiomedCLIP branch's UNet-D",
                   "a separate fusion module per fusion; the CLIPSeg branch as in fixed clipseg-b"],
}


def _fit_map(x: torch.Tensor, size: Sequence[int], strict: bool, what: str) -> torch.Tensor:
    """Bring an adapter map to UNet-D's bottleneck size (resize in fixed models, error in reference ones)."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    if strict:
        raise ValueError(f"{what}: adapter map {tuple(x.shape[-2:])} does not match UNet-D's bottleneck {size}; "
                         f"the reference architecture needs patch size == UNet-D's total stride")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _bottleneck_size(unet: UNetD, pixel_values: torch.Tensor) -> tuple:
    d = unet.config.downsampling
    return pixel_values.shape[-2] // d, pixel_values.shape[-1] // d


# -- branches ---------------------------------------------------------------------------------------
class BranchA(nn.Module):
    """BiomedCLIPSeg-A: VLSM + first-layer adapter + upsampling head + UNet-D (+ 1x1 fusion)."""

    def __init__(self, vlsm, sizes: dict, unet_overrides: dict, *, extra_inject: Sequence[int] = (),
                 own_fusion: bool = True, strict: bool = False, decoder: Optional[nn.Module] = None,
                 duplicate_map: bool = False):
        super().__init__()
        self.vlsm = vlsm
        self.duplicate_map = duplicate_map
        if decoder is not None:  # Ensemble-C reference: a decoder built from another config
            vlsm.decoder = decoder
        c = vlsm.config
        r = sizes["reduce_dim"]
        self.strict = strict
        self.adapter = FirstLayerAdapter(c.hidden_size, c.projection_dim, r, c.num_tokens, c.grid_size)
        self.head = UpsampleHead(r, c.patch_size)
        inject = (r, r) if duplicate_map else (r, *extra_inject)
        self.unet = UNetD(unet_d_config(**{**unet_overrides, "inject_channels": inject, "fuse_channels": 1}))
        self.fusion = nn.Conv2d(2, 1, 1) if own_fusion else None

    def parts(self, pixel_values, input_ids, attention_mask, extra: Sequence[torch.Tensor] = (),
              decoder_align_corners: Optional[bool] = None) -> dict:
        acts, _ = self.vlsm.encode_image(pixel_values)
        cond = self.vlsm.encode_text(input_ids, attention_mask)
        logits = self.vlsm.decoder_module(acts, cond).logits
        logits = logits.reshape(cond.shape[0], 1, *logits.shape[-2:])
        size = tuple(pixel_values.shape[-2:])
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear",
                                   align_corners=bool(decoder_align_corners))
        amap = self.adapter(acts, cond)
        fuse = self.head(amap)
        if tuple(fuse.shape[-2:]) != size:
            fuse = _fit_map(fuse, size, self.strict, "BiomedCLIPSeg-A head")
        bott = _fit_map(amap, _bottleneck_size(self.unet, pixel_values), self.strict, "BiomedCLIPSeg-A")
        inject = [bott, bott] if self.duplicate_map else [bott, *extra]
        unet_logits = self.unet(pixel_values, inject=inject, fuse=fuse)
        return {"vlsm_logits": logits, "unet_logits": unet_logits, "map": bott}


class BranchB(nn.Module):
    """CLIPSeg-B: VLSM + transformer adapter + UNet-D fusing the VLSM logits (+ 1x1 fusion)."""

    def __init__(self, vlsm, sizes: dict, unet_overrides: dict, *, reference: bool,
                 extra_inject: Sequence[int] = (), duplicate_map: bool = False):
        super().__init__()
        self.vlsm = vlsm
        c = vlsm.config
        r = sizes["reduce_dim"]
        self.reference = reference
        self.duplicate_map = duplicate_map
        cls = BatchZipAdapter if reference else LayerStackAdapter
        self.adapter = cls(c.hidden_size, c.projection_dim, r, c.num_tokens, c.grid_size, len(c.extract_layers),
                           heads=sizes["adapter_heads"], ffn_dim=sizes["adapter_ffn_dim"],
                           dropout=sizes["adapter_dropout"])
        inject = (r, r) if duplicate_map else (r, *extra_inject)
        self.unet = UNetD(unet_d_config(**{**unet_overrides, "inject_channels": inject, "fuse_channels": 1}))
        self.fusion = nn.Conv2d(2, 1, 1)

    def parts(self, pixel_values, input_ids, attention_mask, extra: Sequence[torch.Tensor] = ()) -> dict:
        out = self.vlsm.forward_features(pixel_values, input_ids, attention_mask)
        if self.reference:
            amap = self.adapter(out.last_hidden_state, out.conditional_embeddings)
        else:
            amap = self.adapter(out.activations, out.conditional_embeddings)
        bott = _fit_map(amap, _bottleneck_size(self.unet, pixel_values), self.reference, "CLIPSeg-B")
        inject = [bott, bott] if self.duplicate_map else [bott, *extra]
        unet_logits = self.unet(pixel_values, inject=inject, fuse=out.logits)
        logits = self.fusion(torch.cat([out.logits, unet_logits], dim=1))
        return {"vlsm_logits": out.logits, "unet_logits": unet_logits, "map": bott, "logits": logits}


# -- tokenizers -------------------------------------------------------------------------------------
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


# -- the ensemble models ----------------------------------------------------------------------------
@dataclass
class EnsembleConfig:
    model: str
    variant: str
    preset: str
    image_size: int
    sizes: dict
    unet: dict = field(default_factory=dict)
    vlsm: dict = field(default_factory=dict)  # VLSM name -> builder overrides

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class VLSMEnsemble(SegmentationModel):
    """Common behaviour of the three paper ensembles: persistence, tokenizer, parameter groups."""

    uses_text = True
    ensemble: EnsembleConfig
    VLSM_NAMES: tuple = ()

    def vlsms(self) -> dict:
        """VLSM name -> its module inside this ensemble."""
        raise NotImplementedError

    def parameter_groups(self) -> dict:
        """(total, trainable) per component, e.g. ``{"vlsm.encoder": (..), "unet": (..)}``."""
        groups: dict = {}
        for name, p in self.named_parameters():
            key = _group_of(name)
            t, tr = groups.get(key, (0, 0))
            groups[key] = (t + p.numel(), tr + (p.numel() if p.requires_grad else 0))
        return groups

    def save_pretrained(self, directory: str | Path) -> Path:
        """Spec + weights, and each VLSM's config and tokenizer files in a subfolder named after it."""
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, vlsm in self.vlsms().items():
            sub = directory / name
            sub.mkdir(exist_ok=True)
            vlsm.config.save(sub)
            try:
                tok = vlsm.get_tokenizer()
            except FileNotFoundError:
                tok = None
            if tok is not None and hasattr(tok, "save"):
                tok.save(sub)
        payload = {"spec": self.spec.without_weights().to_dict(), "preprocess": self.preprocess.to_dict(),
                   "ensemble": self.ensemble.to_dict()}
        tmp = directory / (SPEC_FILE + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        save_model(self, str(directory / WEIGHTS_FILE))
        tmp.replace(directory / SPEC_FILE)
        return directory


def _group_of(name: str) -> str:
    parts = name.split(".")
    for i, p in enumerate(parts):
        if p == "vlsm":
            sub = parts[i + 1] if i + 1 < len(parts) else ""
            kind = "decoder" if sub == "decoder" or (len(parts) > i + 2 and parts[i + 2] == "decoder") else "encoder"
            return ".".join(parts[:i + 1] + [kind])
        if p in ("adapter", "head", "unet", "fusion", "fusion_weight", "cnn"):
            return ".".join(parts[:i + 1])
    return parts[0]


class BiomedCLIPSegA(VLSMEnsemble):
    """BiomedCLIPSeg-A (see module docstring). ``forward(pixel_values, input_ids, attention_mask)``."""

    VLSM_NAMES = ("biomedclipseg",)

    def __init__(self, ensemble: EnsembleConfig, vlsm):
        super().__init__()
        self.ensemble = ensemble
        strict = ensemble.variant == "reference"
        self.branch = BranchA(vlsm, ensemble.sizes, {**ensemble.unet, "image_size": ensemble.image_size},
                              strict=strict)
        self.preprocess = vlsm.preprocess

    def vlsms(self) -> dict:
        return {"biomedclipseg": self.branch.vlsm}

    def get_tokenizer(self):
        return self.branch.vlsm.get_tokenizer()

    def forward(self, pixel_values, input_ids=None, attention_mask=None):
        p = self.branch.parts(pixel_values, input_ids, attention_mask)
        return self.branch.fusion(torch.cat([p["vlsm_logits"], p["unet_logits"]], dim=1))


class CLIPSegB(VLSMEnsemble):
    """CLIPSeg-B (see module docstring)."""

    VLSM_NAMES = ("clipseg",)

    def __init__(self, ensemble: EnsembleConfig, vlsm):
        super().__init__()
        self.ensemble = ensemble
        self.branch = BranchB(vlsm, ensemble.sizes, {**ensemble.unet, "image_size": ensemble.image_size},
                              reference=ensemble.variant == "reference")
        self.preprocess = vlsm.preprocess

    def vlsms(self) -> dict:
        return {"clipseg": self.branch.vlsm}

    def get_tokenizer(self):
        return self.branch.vlsm.get_tokenizer()

    def forward(self, pixel_values, input_ids=None, attention_mask=None):
        return self.branch.parts(pixel_values, input_ids, attention_mask)["logits"]


def reference_c_decoder(vlsm) -> nn.Module:
    """Ensemble-C reference: a CLIPSeg decoder from transformers' *default* decoder layout (patch size and
    plain transposed conv of ``CLIPSegConfig()``), with the widths of the encoder it decodes."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation  # noqa: F401
    from transformers.models.clipseg.modeling_clipseg import CLIPSegDecoder

    default = CLIPSegConfig()
    cfg = copy.deepcopy(vlsm.config.clipseg_config)
    cfg.setdefault("vision_config", {})
    cfg["vision_config"] = dict(cfg["vision_config"], patch_size=default.vision_config.patch_size,
                                hidden_size=vlsm.config.hidden_size)
    cfg["use_complex_transposed_convolution"] = default.use_complex_transposed_convolution
    hf = CLIPSegConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    decoder = restore_decoder_init(CLIPSegDecoder(hf))
    # built inside CLIPSegForImageSegmentation, the reference's decoder gets transformers' default
    # attention (SDPA); a standalone decoder leaves it unset
    for layer in decoder.layers:
        if getattr(layer.self_attn.config, "_attn_implementation", None) is None:
            layer.self_attn.config._attn_implementation = "sdpa"
    return decoder


class EnsembleC(VLSMEnsemble):
    """Ensemble-C: a BiomedCLIPSeg-A branch and a CLIPSeg-B branch, fused by a 1x1 conv."""

    VLSM_NAMES = ("biomedclipseg", "clipseg")

    def __init__(self, ensemble: EnsembleConfig, biomed, clip):
        super().__init__()
        self.ensemble = ensemble
        ref = ensemble.variant == "reference"
        self.reference = ref
        sizes, r = ensemble.sizes, ensemble.sizes["reduce_dim"]
        unet = {**ensemble.unet, "image_size": ensemble.image_size}
        # reference: each UNet-D takes [own map, encoder, own map]; fixed: the BiomedCLIP branch's UNet-D
        # takes [own map, encoder, CLIPSeg map] and the CLIPSeg branch's [own map, encoder]
        self.biomed = BranchA(biomed, sizes, unet, extra_inject=(r,), own_fusion=not ref, strict=ref,
                              decoder=reference_c_decoder(biomed) if ref else None, duplicate_map=ref)
        self.clip = BranchB(clip, sizes, unet, reference=ref, duplicate_map=ref)
        self.fusion = nn.Conv2d(2, 1, 1)
        self.preprocess = dataclasses.replace(biomed.preprocess)
        if not ref:
            self.preprocess.context_length = biomed.config.context_length + clip.config.context_length
            self.preprocess.tokenizer = f"{biomed.config.tokenizer}+{clip.config.tokenizer}"

    def vlsms(self) -> dict:
        return {"biomedclipseg": self.biomed.vlsm, "clipseg": self.clip.vlsm}

    def get_tokenizer(self):
        first = self.biomed.vlsm.get_tokenizer()
        if self.reference:
            return first
        return ConcatTokenizer(first, self.clip.vlsm.get_tokenizer())

    def _split_text(self, input_ids, attention_mask):
        if self.reference:
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

    def forward(self, pixel_values, input_ids=None, attention_mask=None):
        (ids_b, mask_b), (ids_c, mask_c) = self._split_text(input_ids, attention_mask)
        if self.reference:
            pb = self.biomed.parts(pixel_values, ids_b, mask_b, decoder_align_corners=True)
            b_out = self.fusion(torch.cat([pb["vlsm_logits"], pb["unet_logits"]], dim=1))
            pc = self.clip.parts(pixel_values, ids_c, mask_c)
            return self.fusion(torch.cat([b_out, pc["logits"]], dim=1))
        pc = self.clip.parts(pixel_values, ids_c, mask_c)
        pb = self.biomed.parts(pixel_values, ids_b, mask_b, extra=[pc["map"]])
        b_out = self.biomed.fusion(torch.cat([pb["vlsm_logits"], pb["unet_logits"]], dim=1))
        return self.fusion(torch.cat([b_out, pc["logits"]], dim=1))


# -- the general stack ------------------------------------------------------------------------------
FUSIONS = ("conv1x1", "mean", "weighted")
INJECTIONS = ("bottleneck", "none")


class Stack(VLSMEnsemble):
    """Any VLSM stacked with UNet-D or an image-only CNN.

    ``Stack(vlsm=..., cnn=..., fusion="conv1x1"|"mean"|"weighted", inject="bottleneck"|"none")``

    * ``vlsm``: a VLSM model (``create_model("clipseg")``, ...) or a spec ``{"name", "preset", "pretrained", ...}``.
    * ``cnn``: ``UNetD`` or any image-only :class:`SegmentationModel` (``unet``, ``unetpp``,
      ``deeplabv3plus``), or a spec dict; default UNet-D at the VLSM's image size.
    * ``inject="bottleneck"`` (UNet-D only): a per-image transformer adapter over the VLSM's extracted
      layers (as in fixed CLIPSeg-B) makes a map that UNet-D takes at its bottleneck. A given UNet-D
      without an injection input is extended: its bottleneck conv gets zero weights for the new
      channels, so a pretrained UNet-D starts out computing exactly what it computed alone.
    * ``fusion``: ``conv1x1`` (learned 1x1 conv over [VLSM logits, CNN logits]), ``mean`` (average of
      the logits, no parameters) or ``weighted`` (``s * vlsm + (1 - s) * cnn`` with ``s = sigmoid(w)``,
      ``w`` learned, starting at 0.5).
    """

    uses_text = True

    def __init__(self, vlsm, cnn=None, fusion: str = "conv1x1", inject: str = "bottleneck", *,
                 preset: str = "paper", reduce_dim: Optional[int] = None, adapter_heads: Optional[int] = None,
                 adapter_ffn_dim: Optional[int] = None, adapter_dropout: Optional[float] = None):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"Stack fusion {fusion!r} is not one of {', '.join(FUSIONS)}")
        if inject not in INJECTIONS:
            raise ValueError(f"Stack inject {inject!r} is not one of {', '.join(INJECTIONS)}")
        if isinstance(vlsm, (str, Mapping)):
            vlsm = _build_from_spec(vlsm, preset, kind="vlsm")
        if not hasattr(vlsm, "forward_features") or not getattr(vlsm, "uses_text", False):
            raise ValueError("Stack(vlsm=...) needs a vision-language segmentation model (e.g. "
                             "create_model('clipseg')) with forward_features()")
        self.vlsm = vlsm
        self.preprocess = dataclasses.replace(vlsm.preprocess)
        image_size = vlsm.preprocess.image_size
        if cnn is None:
            cnn = {"name": "unet-d"}
        if isinstance(cnn, (str, Mapping)):
            cnn_spec = {"name": cnn} if isinstance(cnn, str) else dict(cnn)
            cnn_spec.setdefault("image_size", image_size)
            cnn = _build_from_spec(cnn_spec, preset, kind="cnn")
        if getattr(cnn, "uses_text", False):
            raise ValueError("Stack(cnn=...) takes an image-only CNN (unet-d, unet, unetpp, deeplabv3plus)")
        sizes = dict(ADAPTER_PRESETS[preset if preset in ADAPTER_PRESETS else "paper"])
        for k, v in dict(reduce_dim=reduce_dim, adapter_heads=adapter_heads, adapter_ffn_dim=adapter_ffn_dim,
                         adapter_dropout=adapter_dropout).items():
            if v is not None:
                sizes[k] = v
        self.inject = inject
        self.fusion_kind = fusion
        self.adapter = None
        if inject == "bottleneck":
            if not isinstance(cnn, UNetD):
                raise ValueError(f"Stack inject='bottleneck' needs UNet-D as the CNN (got {type(cnn).__name__}); "
                                 f"use inject='none' for other CNNs")
            c = vlsm.config
            self.adapter = LayerStackAdapter(c.hidden_size, c.projection_dim, sizes["reduce_dim"], c.num_tokens,
                                             c.grid_size, len(c.extract_layers), heads=sizes["adapter_heads"],
                                             ffn_dim=sizes["adapter_ffn_dim"], dropout=sizes["adapter_dropout"])
            cnn = _with_injection(cnn, sizes["reduce_dim"])
        self.cnn = cnn
        if fusion == "conv1x1":
            self.fusion = nn.Conv2d(2, 1, 1)
        elif fusion == "weighted":
            self.fusion_weight = nn.Parameter(torch.zeros(()))
        self.sizes = sizes
        self.ensemble = EnsembleConfig("stack", "", preset, image_size, sizes)

    def vlsms(self) -> dict:
        return {"vlsm": self.vlsm}

    def get_tokenizer(self):
        return self.vlsm.get_tokenizer()

    def forward(self, pixel_values, input_ids=None, attention_mask=None):
        out = self.vlsm.forward_features(pixel_values, input_ids, attention_mask)
        if self.adapter is not None:
            amap = self.adapter(out.activations, out.conditional_embeddings)
            amap = _fit_map(amap, _bottleneck_size(self.cnn, pixel_values), False, "Stack")
            cnn_logits = self.cnn(pixel_values, inject=[amap])
        else:
            cnn_logits = self.cnn(pixel_values)
        if tuple(cnn_logits.shape[-2:]) != tuple(out.logits.shape[-2:]):
            cnn_logits = F.interpolate(cnn_logits, size=out.logits.shape[-2:], mode="bilinear", align_corners=False)
        if self.fusion_kind == "conv1x1":
            return self.fusion(torch.cat([out.logits, cnn_logits], dim=1))
        if self.fusion_kind == "mean":
            return 0.5 * (out.logits + cnn_logits)
        s = torch.sigmoid(self.fusion_weight)
        return s * out.logits + (1 - s) * cnn_logits


def _build_from_spec(spec, preset: str, kind: str):
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if "name" not in spec:
        raise ValueError(f"a Stack {kind} spec needs a 'name' (e.g. {{'name': 'clipseg', 'preset': 'tiny'}})")
    name = spec.pop("name")
    return create_model(name, spec.pop("pretrained", None), preset=spec.pop("preset", preset),
                        variant=spec.pop("variant", None), tokenizer_dir=spec.pop("tokenizer_dir", None), **spec)


def _with_injection(unet: UNetD, channels: int) -> UNetD:
    """A UNet-D with one more injected map of ``channels``; existing weights kept, new inputs zero."""
    cfg = dataclasses.replace(unet.config, inject_channels=(channels, *unet.config.inject_channels))
    new = UNetD(cfg)
    state = unet.state_dict()
    w_old = state["bottleneck.weight"]
    w_new = torch.zeros_like(new.bottleneck.weight)
    slot_old = min(unet.config.encoder_slot, len(unet.config.inject_channels))
    # old layout: inject_old[:slot] + [enc] + inject_old[slot:]; new: [new map] + the same with slot + 1
    enc = unet.config.encoder_channels[-1]
    old_chunks = list(unet.config.inject_channels[:slot_old]) + [enc] + list(unet.config.inject_channels[slot_old:])
    new_order = [channels] + old_chunks
    if min(cfg.encoder_slot, len(cfg.inject_channels)) != slot_old + 1:
        raise ValueError("cannot extend this UNet-D's bottleneck: set encoder_slot so the encoder map follows "
                         "the injected map")
    w_new[:, new_order[0]:] = w_old
    state["bottleneck.weight"] = w_new
    new.load_state_dict(state, strict=True)
    if getattr(unet, "spec", None) is not None:
        new.spec = unet.spec
    return new


# -- builders ---------------------------------------------------------------------------------------
ENSEMBLE_OPTIONS = ("image_size", "reduce_dim", "adapter_heads", "adapter_ffn_dim", "adapter_dropout", "unet")


def _vlsm_tokenizer_dir(tokenizer_dir: Optional[str], vname: str) -> Optional[str]:
    if tokenizer_dir and (Path(tokenizer_dir) / vname).is_dir():
        return str(Path(tokenizer_dir) / vname)
    return None


def _build_vlsm(vname: str, preset: str, tokenizer_dir: Optional[str], image_size: Optional[int],
                defaults: dict, user: Optional[Mapping]) -> Any:
    opts = {**defaults, **dict(user or {})}
    vpreset = opts.pop("preset", preset)
    pretrained = opts.pop("pretrained", None)
    sub = _vlsm_tokenizer_dir(tokenizer_dir, vname)
    if sub is not None:
        pretrained = None  # reloading a saved ensemble: its weights come from the ensemble's file
    if image_size is not None:
        opts["image_size"] = image_size
    return create_model(vname, pretrained, preset=vpreset, tokenizer_dir=sub, **opts)


def _ensemble_sizes(preset: str, overrides: dict) -> dict:
    sizes = dict(ADAPTER_PRESETS[preset])
    for k in list(sizes):
        if k in overrides:
            sizes[k] = overrides[k]
    return sizes


def _check(name: str, overrides: dict, vlsm_names: tuple) -> None:
    allowed = set(ENSEMBLE_OPTIONS) | set(vlsm_names)
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; valid options: {', '.join(sorted(allowed))} "
                         f"(VLSM options go in a dict under the VLSM's name, UNet-D options under 'unet')")


def _finish(model: VLSMEnsemble, name: str, pretrained: Optional[str]) -> VLSMEnsemble:
    if pretrained is not None:
        from vlsm.models.reference import load_any_state_dict

        if not Path(pretrained).exists():
            raise FileNotFoundError(
                f"{name}: pretrained={pretrained!r} not found. Pass a folder written by save_pretrained or a "
                f"state-dict file (ours or the reference code's). Backbone weights go under the VLSM's name, "
                f"e.g. clipseg={{'pretrained': 'CIDAS/clipseg-rd64-refined'}}.")
        model.load_state_dict(load_any_state_dict(name, pretrained, model), strict=True)
    return model


@register_model("biomedclipseg-a", description="BiomedCLIPSeg-A: BiomedCLIPSeg + UNet-D with a data adapter "
                "(VLSM-Ensemble)", variants=VARIANTS, default_variant="fixed", uses_text=True,
                paper_name="BiomedCLIPSeg-A")
def build_biomedclipseg_a(*, preset="paper", variant="fixed", pretrained=None, tokenizer_dir=None, **overrides):
    _check("biomedclipseg-a", overrides, ("biomedclipseg",))
    image_size = overrides.get("image_size")
    vlsm = _build_vlsm("biomedclipseg", preset, tokenizer_dir, image_size, {}, overrides.get("biomedclipseg"))
    cfg = EnsembleConfig("biomedclipseg-a", variant, preset, vlsm.config.image_size,
                         _ensemble_sizes(preset, overrides), _unet_overrides(preset, overrides))
    return _finish(BiomedCLIPSegA(cfg, vlsm), "biomedclipseg-a", pretrained)


@register_model("clipseg-b", description="CLIPSeg-B: CLIPSeg + UNet-D with a transformer data adapter "
                "(VLSM-Ensemble)", variants=VARIANTS, default_variant="fixed", uses_text=True,
                paper_name="CLIPSeg-B")
def build_clipseg_b(*, preset="paper", variant="fixed", pretrained=None, tokenizer_dir=None, **overrides):
    _check("clipseg-b", overrides, ("clipseg",))
    # reference: transformers' no_grad leaves CLIP untrained; freeze it explicitly (same training)
    defaults = {"freeze_encoder": True} if variant == "reference" else {}
    vlsm = _build_vlsm("clipseg", preset, tokenizer_dir, overrides.get("image_size"), defaults,
                       overrides.get("clipseg"))
    if variant == "reference":
        _reference_attention(vlsm)
    cfg = EnsembleConfig("clipseg-b", variant, preset, vlsm.config.image_size,
                         _ensemble_sizes(preset, overrides), _unet_overrides(preset, overrides))
    return _finish(CLIPSegB(cfg, vlsm), "clipseg-b", pretrained)


@register_model("ensemble-c", description="Ensemble-C: BiomedCLIPSeg-A and CLIPSeg-B branches fused by a 1x1 conv "
                "(VLSM-Ensemble)", variants=VARIANTS, default_variant="fixed", uses_text=True,
                paper_name="Ensemble-C")
def build_ensemble_c(*, preset="paper", variant="fixed", pretrained=None, tokenizer_dir=None, **overrides):
    _check("ensemble-c", overrides, ("biomedclipseg", "clipseg"))
    user_b = dict(overrides.get("biomedclipseg") or {})
    user_c = dict(overrides.get("clipseg") or {})
    defaults_b, defaults_c = {}, {}
    if variant == "reference":
        # one WordPiece id tensor feeds BERT and CLIP's text model: its length must fit both
        from vlsm.models.vlsm_base import load_config_json, preset_entry

        clip_entry = preset_entry("clipseg", user_c.get("preset", preset))
        clip_positions = load_config_json(clip_entry["clipseg_config"])["text_config"]["max_position_embeddings"]
        bio_entry = preset_entry("biomedclipseg", user_b.get("preset", preset))
        length = min(int(bio_entry["context_length"]), int(clip_positions))
        defaults_b["context_length"] = length
        defaults_c.update(context_length=length, freeze_encoder=True)
    biomed = _build_vlsm("biomedclipseg", preset, tokenizer_dir, overrides.get("image_size"), defaults_b, user_b)
    clip = _build_vlsm("clipseg", preset, tokenizer_dir, biomed.config.image_size, defaults_c, user_c)
    if variant == "reference":
        _reference_attention(clip)
    cfg = EnsembleConfig("ensemble-c", variant, preset, biomed.config.image_size,
                         _ensemble_sizes(preset, overrides), _unet_overrides(preset, overrides))
    return _finish(EnsembleC(cfg, biomed, clip), "ensemble-c", pretrained)


def _reference_attention(clip) -> None:
    """The reference loads CLIPSeg with ``output_attentions=True``, so transformers runs eager attention;
    do the same (identical encoder numbers instead of SDPA's last-bit differences)."""
    setter = getattr(clip.clipseg, "set_attn_implementation", None)
    if setter is not None:
        setter("eager")
    # the decoder layers hold their own copy of the vision config; the reference's says eager too
    for layer in clip.clipseg.decoder.layers:
        layer.self_attn.config._attn_implementation = "eager"


def _unet_overrides(preset: str, overrides: dict) -> dict:
    from vlsm.models.unet_d import PRESETS as UNET_PRESETS

    user = dict(overrides.get("unet") or {})
    unet_preset = user.pop("preset", preset)
    for k in ("inject_channels", "fuse_channels", "image_size"):
        if k in user:
            raise ValueError(f"unet={{'{k}': ...}} is set by the ensemble; leave it out")
    base = dict(UNET_PRESETS[unet_preset])
    base.pop("image_size", None)
    return {**base, **user}


@register_model("stack", description="Stack: any VLSM + UNet-D or an image-only CNN, fused by conv1x1/mean/weighted "
                "(vlsm={name,...}, cnn={name,...}, fusion=, inject=)", uses_text=True, paper_name="Stack")
def build_stack(*, preset="paper", variant=None, pretrained=None, tokenizer_dir=None, **overrides):
    allowed = {"vlsm", "cnn", "fusion", "inject", "reduce_dim", "adapter_heads", "adapter_ffn_dim",
               "adapter_dropout"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"stack: unknown option(s) {unknown}; valid: {', '.join(sorted(allowed))}")
    vspec = overrides.get("vlsm", {"name": "clipseg"})
    vspec = {"name": vspec} if isinstance(vspec, str) else dict(vspec)
    if tokenizer_dir and (Path(tokenizer_dir) / "vlsm").is_dir():
        vspec["tokenizer_dir"] = str(Path(tokenizer_dir) / "vlsm")
        vspec.pop("pretrained", None)
    cspec = overrides.get("cnn")
    if isinstance(cspec, Mapping) and cspec.get("pretrained") and tokenizer_dir:
        cspec = {k: v for k, v in cspec.items() if k != "pretrained"}
    model = Stack(vspec, cspec, fusion=overrides.get("fusion", "conv1x1"),
                  inject=overrides.get("inject", "bottleneck"), preset=preset,
                  **{k: overrides[k] for k in ("reduce_dim", "adapter_heads", "adapter_ffn_dim", "adapter_dropout")
                     if k in overrides})
    if pretrained is not None:
        from vlsm.models.reference import read_state_dict_file

        path = Path(pretrained)
        state = read_state_dict_file(path / WEIGHTS_FILE if path.is_dir() else path)
        model.load_state_dict(state, strict=True)
    return model


# -- reference checkpoint conversion ---------------------------------------------------------------
# (reference prefix, our prefix | None to drop, kind); the longest matching prefix wins.
# kind "copy": rename the prefix; "unet": a reference UNet_D (layer names mapped one by one).
_A_RULES = [
    ("biomedclip.", "branch.vlsm.biomedclip.", "copy"),
    ("decoder.", "branch.vlsm.decoder.", "copy"),
    ("decoder2.", "branch.unet.", "unet"),
    ("film_mul.", "branch.adapter.film.mul.", "copy"),
    ("film_add.", "branch.adapter.film.add.", "copy"),
    ("reduce.", "branch.adapter.reduce.", "copy"),
    ("reduce2.", "branch.adapter.to_grid.proj.", "copy"),
    ("trans_conv1.", "branch.head.", "copy"),
    ("convlast.", "branch.fusion.", "copy"),
    ("dense_layer.", None, "drop"), ("trans_conv.", None, "drop"), ("upsample_proj.", None, "drop"),
]
_B_RULES = [
    ("clipseg.", "branch.vlsm.clipseg.", "copy"),
    ("film_mul.", "branch.adapter.film.mul.", "copy"),
    ("film_add.", "branch.adapter.film.add.", "copy"),
    ("reduces.", "branch.adapter.reduces.", "copy"),
    ("blocks.", "branch.adapter.blocks.", "copy"),
    ("reduce2.", "branch.adapter.to_grid.proj.", "copy"),
    ("decoder2.", "branch.unet.", "unet"),
    ("convlast.", "branch.fusion.", "copy"),
    ("reduce.", None, "drop"), ("trans_conv.", None, "drop"), ("trans_conv1.", None, "drop"),
    ("upsample_proj.", None, "drop"),
]


def _c_rules():
    rules = [(a, b.replace("branch.", "biomed.", 1) if b else b, k) for a, b, k in _A_RULES if a != "convlast."]
    rules += [("convlast.", "fusion.", "copy"), ("textembed.", None, "drop"), ("reduce_input_ids.", None, "drop")]
    rules += [("clip_seg." + a, b.replace("branch.", "clip.", 1) if b else b, k) for a, b, k in _B_RULES]
    return rules


# buffers older transformers versions saved; they are fixed aranges, recomputed at build time
_STALE_BUFFERS = ("embeddings.position_ids",)


def _convert_with(name: str, rules, state: Mapping[str, torch.Tensor]) -> dict:
    from vlsm.models.reference import ConversionError, _rename_unet_d, _report_dropped

    rules = sorted(rules, key=lambda r: len(r[0]), reverse=True)
    out, dropped, unknown = {}, [], []
    for key, value in state.items():
        rule = next((r for r in rules if key.startswith(r[0])), None)
        if rule is None:
            unknown.append(key)
            continue
        src, dst, kind = rule
        rest = key[len(src):]
        if kind == "drop" or key.endswith(_STALE_BUFFERS):
            dropped.append(key)
        elif kind == "unet":
            new = _rename_unet_d(rest, fuse=True)
            if new is None:
                dropped.append(key)
            else:
                out[dst + new] = value
        else:
            out[dst + rest] = value
    if unknown:
        raise ConversionError(f"{name}: {len(unknown)} parameters are not part of the reference {name} "
                              f"({', '.join(unknown[:6])}{', ...' if len(unknown) > 6 else ''}); is this a "
                              f"checkpoint of another model?")
    _report_dropped(name, dropped)
    return out


REFERENCE_CONVERTERS = {
    "biomedclipseg-a": lambda sd: _convert_with("biomedclipseg-a", _A_RULES, sd),
    "clipseg-b": lambda sd: _convert_with("clipseg-b", _B_RULES, sd),
    "ensemble-c": lambda sd: _convert_with("ensemble-c", _c_rules(), sd),
}
