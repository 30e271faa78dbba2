"""Stack: any registered VLSM with UNet-D or an image-only CNN, fused by a 1x1 conv, a mean or a learned weight."""
from __future__ import annotations

import dataclasses
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
from vlsm.models.folder import part_record
from vlsm.models.reference import load_weights
from vlsm.models.registry import build, check_options, create_model, register_model
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
    * ``saved``: a saved Stack's :class:`~vlsm.models.folder.SavedModel` (``load_pretrained`` passes it): the
      parts given as specs are rebuilt from their saved architectures, the adapter sizes from the saved ones.
    """

    uses_text = True

    def __init__(self, vlsm, cnn=None, fusion: str = "conv1x1", inject: str = "bottleneck", *,
                 preset: str = "paper", reduce_dim: Optional[int] = None, adapter_heads: Optional[int] = None,
                 adapter_ffn_dim: Optional[int] = None, adapter_dropout: Optional[float] = None, saved=None):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"Stack fusion {fusion!r} is not one of {', '.join(FUSIONS)}")
        if inject not in INJECTIONS:
            raise ValueError(f"Stack inject {inject!r} is not one of {', '.join(INJECTIONS)}")
        part = saved.part if saved is not None else (lambda name: None)
        if isinstance(vlsm, (str, Mapping)):
            vlsm = build_from_spec(vlsm, preset, kind="vlsm", saved=part("vlsm"))
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
            cnn = build_from_spec(cnn_spec, preset, kind="cnn", saved=part("cnn"))
        if getattr(cnn, "uses_text", False):
            raise ValueError("Stack(cnn=...) takes an image-only CNN (unet-d, unet, unetpp, deeplabv3plus)")
        given = dict(reduce_dim=reduce_dim, adapter_heads=adapter_heads, adapter_ffn_dim=adapter_ffn_dim,
                     adapter_dropout=adapter_dropout)
        if saved is not None and saved.architecture is not None:
            sizes = AdapterSizes(**saved.architecture["sizes"]).with_options(given)
        else:
            sizes = AdapterSizes.of(preset if preset in ADAPTER_PRESETS else "paper", given)
        self.inject = inject
        self.fusion_kind = fusion
        self.adapter = None
        self._cnn_record = part_record(cnn) if getattr(cnn, "spec", None) is not None else None
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

    def architecture(self) -> dict:
        """Fusion, injection, adapter sizes and the two parts' architectures (the CNN's before its bottleneck
        took the adapter map: rebuilding repeats that step)."""
        if self._cnn_record is None:
            raise ValueError("Stack: its CNN was not built with vlsm.create_model, so a model folder cannot name "
                             "it; pass cnn= a spec dict or a model from create_model")
        return {**self.ensemble.to_dict(), "fusion": self.fusion_kind, "inject": self.inject,
                "parts": {"vlsm": part_record(self.vlsm), "cnn": self._cnn_record}}

    def get_tokenizer(self):
        return self.vlsm.get_tokenizer()

    def image_feature_sources(self) -> list:
        return [(self.vlsm, False)]

    def forward_with_features(self, pixel_values, features, input_ids=None, attention_mask=None):
        (own,) = self.features_per_vlsm(features)
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


def build_from_spec(spec, preset: str, kind: str, saved=None):
    """A Stack part from ``"name"`` or ``{"name", "preset", "pretrained", "variant", "model_dir", ...}``; ``saved``:
    its saved architecture and tokenizer files (a saved Stack's part), which replace a weight source."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if "name" not in spec:
        raise ValueError(f"a Stack {kind} spec needs a 'name' (e.g. {{'name': 'clipseg', 'preset': 'tiny'}})")
    name = spec.pop("name")
    model_dir = spec.pop("model_dir", None) or spec.pop("tokenizer_dir", None)  # the latter: its former name
    pretrained = spec.pop("pretrained", None)
    preset, variant = spec.pop("preset", preset), spec.pop("variant", None)
    if saved is not None:
        return build(name, None, preset=preset, variant=variant, saved=saved, **spec)
    return create_model(name, pretrained, preset=preset, variant=variant, model_dir=model_dir, **spec)


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
def build_stack(*, preset="paper", variant=None, pretrained=None, saved=None, **overrides):
    check_options("stack", overrides, STACK_OPTIONS)
    model = Stack(overrides.get("vlsm", {"name": "clipseg"}), overrides.get("cnn"),
                  fusion=overrides.get("fusion", "conv1x1"), inject=overrides.get("inject", "bottleneck"),
                  preset=preset, saved=saved, **{k: overrides[k] for k in ADAPTER_OPTIONS if k in overrides})
    if pretrained is not None:
        load_weights(model, "stack", pretrained)
    return model
