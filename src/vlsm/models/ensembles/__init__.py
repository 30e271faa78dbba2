"""VLSM-Ensemble models (Dietlmeier et al., MIDL 2025) and the general :class:`Stack`.

Registered names (the paper's three with ``variant="fixed"`` (default) and ``variant="reference"``):

* ``biomedclipseg-a`` - BiomedCLIPSeg + UNet-D. The first extracted ViT activation goes through a
  data adapter (reduce, FiLM with the text embedding, tokens -> g x g map); the map is injected at
  UNet-D's bottleneck, an upsampling head turns it into a full-size map that UNet-D fuses with its
  logits, and a 1x1 conv fuses [VLSM logits, UNet-D logits].
* ``clipseg-b`` - CLIPSeg + UNet-D with a transformer adapter over the extracted layers; UNet-D
  fuses the CLIPSeg logits with its own, then a 1x1 conv over [CLIPSeg logits, UNet-D logits].
* ``ensemble-c`` - a BiomedCLIPSeg-A branch and a CLIPSeg-B branch, fused by a 1x1 conv.
* ``stack`` - any registered VLSM + UNet-D or an image-only CNN (:class:`Stack`).

Every size (token count, grid, channels, image size) is derived from the encoder configs and the
image size. Where things live:

* :mod:`.base` - adapter sizes, the ensemble config and architecture, builder steps shared by all;
* :mod:`.branches` - the A and B branches (VLSM + adapter + UNet-D);
* :mod:`.paper` - A, B and C and their builders;
* :mod:`.stack` - :class:`Stack`;
* :mod:`.conversion` - the reference code's checkpoints of A, B and C;
* :mod:`.variants` - ``reference`` and ``fixed`` as two :class:`Variant` records of the behaviours they switch
  (the branches read them), with their defects and changes in words (:data:`REFERENCE_DEFECTS`,
  :data:`FIXED_CHANGES`).
"""
from vlsm.models.ensembles.base import ADAPTER_PRESETS, AdapterSizes, EnsembleConfig, VLSMEnsemble
from vlsm.models.ensembles.branches import BranchA, BranchB, BranchOutputs
from vlsm.models.ensembles.paper import BiomedCLIPSegA, CLIPSegB, ConcatTokenizer, EnsembleC
from vlsm.models.ensembles.stack import Stack
from vlsm.models.ensembles.variants import (
    FIXED,
    FIXED_CHANGES,
    REFERENCE,
    REFERENCE_DEFECTS,
    VARIANTS,
    Variant,
    get_variant,
)

__all__ = ["ADAPTER_PRESETS", "AdapterSizes", "BiomedCLIPSegA", "BranchA", "BranchB", "BranchOutputs", "CLIPSegB",
           "ConcatTokenizer", "EnsembleC", "EnsembleConfig", "FIXED", "FIXED_CHANGES", "REFERENCE",
           "REFERENCE_DEFECTS", "Stack", "VARIANTS", "VLSMEnsemble", "Variant", "get_variant"]
