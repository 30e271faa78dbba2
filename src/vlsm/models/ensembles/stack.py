"""Stack: any registered VLSM with UNet-D or an image-only CNN, fused by a 1x1 conv, a mean or a learned weight."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from vlsm.models.adapters import LayerStackAdapter
from vlsm.models.ensembles.base import (
    ADAPTER_OPTIONS,
    ADAPTER_PRESETS,
    AdapterSizes,
    EnsembleConfig,
    VLSMEnsemble,
    bottleneck_size,
    fit_map,
)
from vlsm.models.reference import load_weights
from vlsm.models.registry import check_options, create_model, register_model
from vlsm.models.unet_d import UNetD

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
            vlsm = build_from_spec(vlsm, preset, kind="vlsm")
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
            cnn = build_from_spec(cnn_spec, preset, kind="cnn")
        if getattr(cnn, "uses_text", False):
            raise ValueError("Stack(cnn=...) takes an image-only CNN (unet-d, unet, unetpp, deeplabv3plus)")
        sizes = AdapterSizes.of(preset if preset in ADAPTER_PRESETS else "paper", dict(
            reduce_dim=reduce_dim, adapter_heads=adapter_heads, adapter_ffn_dim=adapter_ffn_dim,
            adapter_dropout=adapter_dropout))
        self.inject = inject
        self.fusion_kind = fusion
        self.adapter = None
        if inject == "bottleneck":
            if not isinstance(cnn, UNetD):
                raise ValueError(f"Stack inject='bottleneck' needs UNet-D as the CNN (got {type(cnn).__name__}); "
                                 f"use inject='none' for other CNNs")
            c = vlsm.config
            self.adapter = LayerStackAdapter(c.hidden_size, c.projection_dim, sizes.reduce_dim, c.num_tokens,
                                             c.grid_size, len(c.extract_layers), heads=sizes.adapter_heads,
                                             ffn_dim=sizes.adapter_ffn_dim, dropout=sizes.adapter_dropout)
            cnn = with_injection(cnn, sizes.reduce_dim)
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

    def image_feature_sources(self) -> list:
        return [(self.vlsm, False)]

    def forward_with_features(self, pixel_values, features, input_ids=None, attention_mask=None):
        (own,) = self.split_image_features(features)
        out = self.vlsm.forward_features(pixel_values, input_ids, attention_mask, features=own)
        if self.adapter is not None:
            amap = self.adapter(out.activations, out.conditional_embeddings)
            amap = fit_map(amap, bottleneck_size(self.cnn, pixel_values), False, "Stack")
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


def build_from_spec(spec, preset: str, kind: str):
    """A Stack part from ``"name"`` or ``{"name", "preset", "pretrained", "variant", "model_dir", ...}``."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if "name" not in spec:
        raise ValueError(f"a Stack {kind} spec needs a 'name' (e.g. {{'name': 'clipseg', 'preset': 'tiny'}})")
    name = spec.pop("name")
    model_dir = spec.pop("model_dir", None) or spec.pop("tokenizer_dir", None)  # the latter: its former name
    return create_model(name, spec.pop("pretrained", None), preset=spec.pop("preset", preset),
                        variant=spec.pop("variant", None), model_dir=model_dir, **spec)


def with_injection(unet: UNetD, channels: int) -> UNetD:
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


STACK_OPTIONS = ("vlsm", "cnn", "fusion", "inject", *ADAPTER_OPTIONS)


@register_model("stack", description="Stack: any VLSM + UNet-D or an image-only CNN, fused by conv1x1/mean/weighted "
                "(vlsm={name,...}, cnn={name,...}, fusion=, inject=)", uses_text=True, paper_name="Stack")
def build_stack(*, preset="paper", variant=None, pretrained=None, model_dir=None, **overrides):
    check_options("stack", overrides, STACK_OPTIONS)
    vspec = overrides.get("vlsm", {"name": "clipseg"})
    vspec = {"name": vspec} if isinstance(vspec, str) else dict(vspec)
    if model_dir and (Path(model_dir) / "vlsm").is_dir():
        # reloading a saved Stack: the VLSM's config and tokenizer are in its subfolder, the weights in ours
        vspec["model_dir"] = str(Path(model_dir) / "vlsm")
        vspec.pop("pretrained", None)
    cspec = overrides.get("cnn")
    if isinstance(cspec, Mapping) and cspec.get("pretrained") and model_dir:
        cspec = {k: v for k, v in cspec.items() if k != "pretrained"}
    model = Stack(vspec, cspec, fusion=overrides.get("fusion", "conv1x1"),
                  inject=overrides.get("inject", "bottleneck"), preset=preset,
                  **{k: overrides[k] for k in ADAPTER_OPTIONS if k in overrides})
    if pretrained is not None:
        load_weights(model, "stack", pretrained)
    return model
