"""Reference VLSM-Ensemble checkpoints of A, B and C, mapped onto ``variant="reference"``.

Each rule maps a reference key prefix onto ours (the longest matching prefix wins); a reference
``UNet_D`` (``decoder2.``) is renamed layer by layer by UNet-D's own rules; modules the reference
builds but never calls are dropped with a warning. The converters are registered with their models
(:mod:`vlsm.models.ensembles.paper`).
"""
from __future__ import annotations

from typing import Mapping

import torch

from vlsm.models.reference import PrefixRule, convert_by_prefix
from vlsm.models.unet_d import reference_rule


def _rule(source: str, target) -> PrefixRule:
    return PrefixRule(source, target)


A_RULES = (
    _rule("biomedclip.", "branch.vlsm.biomedclip."),
    _rule("decoder.", "branch.vlsm.decoder."),
    reference_rule("decoder2.", "branch.unet.", fuse=True),
    _rule("film_mul.", "branch.adapter.film.mul."),
    _rule("film_add.", "branch.adapter.film.add."),
    _rule("reduce.", "branch.adapter.reduce."),
    _rule("reduce2.", "branch.adapter.to_grid.proj."),
    _rule("trans_conv1.", "branch.head."),
    _rule("convlast.", "branch.fusion."),
    _rule("dense_layer.", None), _rule("trans_conv.", None), _rule("upsample_proj.", None),
)
B_RULES = (
    _rule("clipseg.", "branch.vlsm.clipseg."),
    _rule("film_mul.", "branch.adapter.film.mul."),
    _rule("film_add.", "branch.adapter.film.add."),
    _rule("reduces.", "branch.adapter.reduces."),
    _rule("blocks.", "branch.adapter.blocks."),
    _rule("reduce2.", "branch.adapter.to_grid.proj."),
    reference_rule("decoder2.", "branch.unet.", fuse=True),
    _rule("convlast.", "branch.fusion."),
    _rule("reduce.", None), _rule("trans_conv.", None), _rule("trans_conv1.", None),
    _rule("upsample_proj.", None),
)


def _moved(rule: PrefixRule, source_prefix: str, branch: str) -> PrefixRule:
    """The rule of a single-branch model for the same branch inside Ensemble-C."""
    target = None if rule.target is None else rule.target.replace("branch.", branch, 1)
    return PrefixRule(source_prefix + rule.source, target, rule.rename)


# Ensemble-C: the A branch at the top level of the reference model (its convlast is C's final fusion),
# the B branch under clip_seg.
C_RULES = (
    *(_moved(r, "", "biomed.") for r in A_RULES if r.source != "convlast."),
    _rule("convlast.", "fusion."), _rule("textembed.", None), _rule("reduce_input_ids.", None),
    *(_moved(r, "clip_seg.", "clip.") for r in B_RULES),
)


def convert_biomedclipseg_a(state: Mapping[str, torch.Tensor]) -> dict:
    return convert_by_prefix("biomedclipseg-a", A_RULES, state)


def convert_clipseg_b(state: Mapping[str, torch.Tensor]) -> dict:
    return convert_by_prefix("clipseg-b", B_RULES, state)


def convert_ensemble_c(state: Mapping[str, torch.Tensor]) -> dict:
    return convert_by_prefix("ensemble-c", C_RULES, state)
