"""The two branches of the paper ensembles: a VLSM, its data adapter and a UNet-D fed by the adapter map.

* :class:`BranchA` (BiomedCLIPSeg-A): the first extracted ViT activation through a first-layer adapter;
  an upsampling head turns the map into a full-size map that UNet-D fuses with its logits.
* :class:`BranchB` (CLIPSeg-B): a transformer adapter over the extracted layers; UNet-D fuses the VLSM
  logits with its own, and the branch's 1x1 conv fuses [VLSM logits, UNet-D logits].

Ensemble-C runs one of each (:mod:`vlsm.models.ensembles.paper`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vlsm.models.adapters import BatchZipAdapter, FirstLayerAdapter, LayerStackAdapter, UpsampleHead
from vlsm.models.ensembles.base import AdapterSizes, bottleneck_size, fit_map
from vlsm.models.unet_d import UNetD, unet_d_config


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
                 unet_overrides: dict, *, extra_inject: Sequence[int], duplicate_map: bool, own_fusion: bool):
        super().__init__()
        self.vlsm = vlsm
        self.duplicate_map = duplicate_map
        self.adapter = adapter
        if head is not None:
            self.head = head
        inject = (reduce_dim, reduce_dim) if duplicate_map else (reduce_dim, *extra_inject)
        self.unet = UNetD(unet_d_config(**{**unet_overrides, "inject_channels": inject, "fuse_channels": 1}))
        self.fusion = nn.Conv2d(2, 1, 1) if own_fusion else None

    #: whether the branch reads the VLSM's last ViT block (besides the extracted layers)
    with_last_hidden_state = False

    def run_unet(self, pixel_values, amap, extra: Sequence[torch.Tensor], fuse, strict: bool, what: str):
        """(bottleneck map, UNet-D logits) for adapter map ``amap``."""
        bott = fit_map(amap, bottleneck_size(self.unet, pixel_values), strict, what)
        inject = [bott, bott] if self.duplicate_map else [bott, *extra]
        return bott, self.unet(pixel_values, inject=inject, fuse=fuse)


class BranchA(Branch):
    """BiomedCLIPSeg-A: VLSM + first-layer adapter + upsampling head + UNet-D (+ 1x1 fusion)."""

    def __init__(self, vlsm, sizes: AdapterSizes, unet_overrides: dict, *, extra_inject: Sequence[int] = (),
                 own_fusion: bool = True, strict: bool = False, decoder: Optional[nn.Module] = None,
                 duplicate_map: bool = False):
        if decoder is not None:  # Ensemble-C reference: a decoder built from another config
            vlsm.decoder = decoder
        c, r = vlsm.config, sizes.reduce_dim
        adapter = FirstLayerAdapter(c.hidden_size, c.projection_dim, r, c.num_tokens, c.grid_size)
        head = UpsampleHead(r, c.patch_size)
        super().__init__(vlsm, adapter, head, r, unet_overrides, extra_inject=extra_inject,
                         duplicate_map=duplicate_map, own_fusion=own_fusion)
        self.strict = strict

    def parts(self, pixel_values, input_ids, attention_mask, extra: Sequence[torch.Tensor] = (),
              decoder_align_corners: Optional[bool] = None, features: Optional[tuple] = None) -> BranchOutputs:
        """``features``: the VLSM's image features of these images, computed earlier (else computed here)."""
        if features is None:
            features = self.vlsm.image_features(pixel_values)
        acts, _ = self.vlsm.split_image_features(features)
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
            fuse = fit_map(fuse, size, self.strict, "BiomedCLIPSeg-A head")
        bott, unet_logits = self.run_unet(pixel_values, amap, extra, fuse, self.strict, "BiomedCLIPSeg-A")
        return BranchOutputs(vlsm_logits=logits, unet_logits=unet_logits, map=bott)


class BranchB(Branch):
    """CLIPSeg-B: VLSM + transformer adapter + UNet-D fusing the VLSM logits (+ 1x1 fusion)."""

    def __init__(self, vlsm, sizes: AdapterSizes, unet_overrides: dict, *, reference: bool,
                 extra_inject: Sequence[int] = (), duplicate_map: bool = False):
        c = vlsm.config
        cls = BatchZipAdapter if reference else LayerStackAdapter
        adapter = cls(c.hidden_size, c.projection_dim, sizes.reduce_dim, c.num_tokens, c.grid_size,
                      len(c.extract_layers), heads=sizes.adapter_heads, ffn_dim=sizes.adapter_ffn_dim,
                      dropout=sizes.adapter_dropout)
        super().__init__(vlsm, adapter, None, sizes.reduce_dim, unet_overrides, extra_inject=extra_inject,
                         duplicate_map=duplicate_map, own_fusion=True)
        self.reference = reference
        # the reference adapter reads the ViT's last block; the fixed one only the extracted layers
        self.with_last_hidden_state = reference

    def parts(self, pixel_values, input_ids, attention_mask, extra: Sequence[torch.Tensor] = (),
              features: Optional[tuple] = None) -> BranchOutputs:
        """``features``: the VLSM's image features of these images, computed earlier (else computed here)."""
        out = self.vlsm.forward_features(pixel_values, input_ids, attention_mask,
                                         with_last_hidden_state=self.reference, features=features)
        if self.reference:
            amap = self.adapter(out.last_hidden_state, out.conditional_embeddings)
        else:
            amap = self.adapter(out.activations, out.conditional_embeddings)
        bott, unet_logits = self.run_unet(pixel_values, amap, extra, out.logits, self.reference, "CLIPSeg-B")
        logits = self.fusion(torch.cat([out.logits, unet_logits], dim=1))
        return BranchOutputs(vlsm_logits=out.logits, unet_logits=unet_logits, map=bott, logits=logits)
