"""The two branches of the paper ensembles: a VLSM, its data adapter and a UNet-D fed by the adapter map.

* :class:`BranchA` (BiomedCLIPSeg-A): the first extracted ViT activation through a first-layer adapter;
  an upsampling head turns the map into a full-size map that UNet-D fuses with its logits.
* :class:`BranchB` (CLIPSeg-B): a transformer adapter over the extracted layers; UNet-D fuses the VLSM
  logits with its own, and the branch's 1x1 conv fuses [VLSM logits, UNet-D logits].

Ensemble-C runs one of each (:mod:`vlsm.models.ensembles.paper`). A branch reads what its variant switches from
the :class:`~vlsm.models.ensembles.variants.Variant` record; Ensemble-C's wiring of two branches is given by
Ensemble-C (from the same record).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from vlsm.models.adapters import CLIP_ADAPTER_CLASSES, FirstLayerAdapter, UpsampleHead
from vlsm.models.ensembles.base import AdapterSizes, bottleneck_size, fit_map
from vlsm.models.ensembles.variants import Variant
from vlsm.models.unet_d import UNetD, unet_d_config
from vlsm.models.vlsm_base import restore_decoder_init


@dataclass
class BranchOutputs:
    """What a branch computes; the ensembles fuse these."""

    vlsm_logits: torch.Tensor   # (B, 1, H, W) at the input size
    unet_logits: torch.Tensor   # (B, 1, H, W)
    map: torch.Tensor           # the adapter map at UNet-D's bottleneck size (B, R, h, w)
    logits: Optional[torch.Tensor] = None  # the branch's own fusion, when it computes one


class Branch(nn.Module):
    """A VLSM, its adapter (and head), and a UNet-D that takes the adapter map at its bottleneck.

    UNet-D's bottleneck takes ``[own map, encoder, *extra maps]``, or ``[own map, encoder, own map]``
    with ``duplicate_map`` (the reference Ensemble-C). It fuses one full-size map with its logits.
    """

    def __init__(self, vlsm, adapter: nn.Module, head: Optional[nn.Module], reduce_dim: int,
                 unet_overrides: dict, variant: Variant, *, extra_inject: Sequence[int], duplicate_map: bool,
                 own_fusion: bool):
        super().__init__()
        self.vlsm = vlsm
        self.strict = variant.strict_bottleneck
        self.duplicate_map = duplicate_map
        self.adapter = adapter
        if head is not None:
            self.head = head
        inject = (reduce_dim, reduce_dim) if duplicate_map else (reduce_dim, *extra_inject)
        self.unet = UNetD(unet_d_config(**{**unet_overrides, "inject_channels": inject, "fuse_channels": 1}))
        self.fusion = nn.Conv2d(2, 1, 1) if own_fusion else None

    #: whether the branch reads the VLSM's last ViT block (besides the extracted layers)
    with_last_hidden_state = False

    def run_unet(self, pixel_values, amap, extra: Sequence[torch.Tensor], fuse, what: str):
        """(bottleneck map, UNet-D logits) for adapter map ``amap``."""
        bott = fit_map(amap, bottleneck_size(self.unet, pixel_values), self.strict, what)
        inject = [bott, bott] if self.duplicate_map else [bott, *extra]
        return bott, self.unet(pixel_values, inject=inject, fuse=fuse)


class BranchA(Branch):
    """BiomedCLIPSeg-A: VLSM + first-layer adapter + upsampling head + UNet-D (+ 1x1 fusion).

    ``default_config_decoder`` (the reference Ensemble-C, see :class:`Variant`): the VLSM's decoder is replaced
    by one of transformers' default layout, whose output (twice the input size) is resized back with
    ``align_corners=True``.
    """

    def __init__(self, vlsm, sizes: AdapterSizes, unet_overrides: dict, variant: Variant, *,
                 extra_inject: Sequence[int] = (), own_fusion: bool = True, duplicate_map: bool = False,
                 default_config_decoder: bool = False):
        if default_config_decoder:
            vlsm.decoder = default_config_clipseg_decoder(vlsm)
        c, r = vlsm.config, sizes.reduce_dim
        adapter = FirstLayerAdapter(c.hidden_size, c.projection_dim, r, c.num_tokens, c.grid_size)
        head = UpsampleHead(r, c.patch_size)
        super().__init__(vlsm, adapter, head, r, unet_overrides, variant, extra_inject=extra_inject,
                         duplicate_map=duplicate_map, own_fusion=own_fusion)
        self.align_corners = default_config_decoder

    def parts(self, pixel_values, input_ids, attention_mask, extra: Sequence[torch.Tensor] = (),
              features: Optional[tuple] = None) -> BranchOutputs:
        """``features``: the VLSM's image features of these images, computed earlier (else computed here)."""
        out = self.vlsm.forward_features(pixel_values, input_ids, attention_mask, features=features,
                                         align_corners=self.align_corners)
        amap = self.adapter(out.activations, out.conditional_embeddings)
        fuse = self.head(amap)
        size = tuple(pixel_values.shape[-2:])
        if tuple(fuse.shape[-2:]) != size:
            fuse = fit_map(fuse, size, self.strict, "BiomedCLIPSeg-A head")
        bott, unet_logits = self.run_unet(pixel_values, amap, extra, fuse, "BiomedCLIPSeg-A")
        return BranchOutputs(vlsm_logits=out.logits, unet_logits=unet_logits, map=bott)


class BranchB(Branch):
    """CLIPSeg-B: VLSM + transformer adapter (``variant.clip_adapter``) + UNet-D fusing the VLSM logits
    (+ 1x1 fusion)."""

    def __init__(self, vlsm, sizes: AdapterSizes, unet_overrides: dict, variant: Variant, *,
                 extra_inject: Sequence[int] = (), duplicate_map: bool = False):
        c = vlsm.config
        cls = CLIP_ADAPTER_CLASSES[variant.clip_adapter]
        adapter = cls(c.hidden_size, c.projection_dim, sizes.reduce_dim, c.num_tokens, c.grid_size,
                      len(c.extract_layers), heads=sizes.adapter_heads, ffn_dim=sizes.adapter_ffn_dim,
                      dropout=sizes.adapter_dropout)
        super().__init__(vlsm, adapter, None, sizes.reduce_dim, unet_overrides, variant, extra_inject=extra_inject,
                         duplicate_map=duplicate_map, own_fusion=True)
        # the reference adapter reads the ViT's last block; the fixed one only the extracted layers
        self.with_last_hidden_state = cls.reads_last_hidden_state

    def parts(self, pixel_values, input_ids, attention_mask, extra: Sequence[torch.Tensor] = (),
              features: Optional[tuple] = None) -> BranchOutputs:
        """``features``: the VLSM's image features of these images, computed earlier (else computed here)."""
        out = self.vlsm.forward_features(pixel_values, input_ids, attention_mask,
                                         with_last_hidden_state=self.with_last_hidden_state, features=features)
        tokens = out.last_hidden_state if self.with_last_hidden_state else out.activations
        amap = self.adapter(tokens, out.conditional_embeddings)
        bott, unet_logits = self.run_unet(pixel_values, amap, extra, out.logits, "CLIPSeg-B")
        logits = self.fusion(torch.cat([out.logits, unet_logits], dim=1))
        return BranchOutputs(vlsm_logits=out.logits, unet_logits=unet_logits, map=bott, logits=logits)


def default_config_clipseg_decoder(vlsm) -> nn.Module:
    """Ensemble-C reference: a CLIPSeg decoder from transformers' *default* decoder layout (patch size and
    plain transposed conv of ``CLIPSegConfig()``), with the widths of the encoder it decodes."""
    from transformers import CLIPSegConfig
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
