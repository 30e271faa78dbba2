"""State dicts of the reference VLSM-Ensemble code, mapped onto our models.

The reference repository (Dietlmeier et al.) names its layers ``conv11``, ``upconv41``,
``decoder2.convup4`` ...; our modules use structured names. Each model registers its converter
with :func:`vlsm.models.registry.register_model` (``convert_reference=``), next to the model
(UNet-D's in ``unet_d.py``, the ensembles' in ``ensembles/conversion.py``); this module holds what
they share and :func:`convert_reference_checkpoint`, which looks them up. A converter renames every
parameter and buffer, drops those the reference builds but never uses in ``forward`` (listed in a
warning) and refuses anything it does not recognise, so that strict loading either fills every
weight or fails loudly.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import torch

from vlsm.models.checkpoint import CheckpointError, load_state_dict_strict, read_weights, unwrap_state_dict
from vlsm.models.registry import get_entry, list_models

log = logging.getLogger(__name__)


class CheckpointConversionError(CheckpointError):
    """The state dict does not look like a reference checkpoint of the requested model."""


@dataclass(frozen=True)
class PrefixRule:
    """Keys starting with ``source`` become ``target`` + the rest (``target=None``: dropped as unused).

    ``rename`` maps the rest of a key to our name (None: unused by the reference forward, dropped);
    without it the rest is kept as it is.
    """

    source: str
    target: Optional[str]
    rename: Optional[Callable[[str], Optional[str]]] = None


# buffers older transformers versions saved; they are fixed aranges, recomputed at build time
STALE_BUFFERS = ("embeddings.position_ids",)


def convert_by_prefix(name: str, rules: Sequence[PrefixRule], state: Mapping[str, torch.Tensor]) -> dict:
    """Apply the longest matching rule to every key; unknown keys are an error, dropped ones a warning."""
    rules = sorted(rules, key=lambda r: len(r.source), reverse=True)
    out, dropped, unknown = {}, [], []
    for key, value in state.items():
        rule = next((r for r in rules if key.startswith(r.source)), None)
        if rule is None:
            unknown.append(key)
            continue
        rest = key[len(rule.source):]
        new = None if rule.target is None or key.endswith(STALE_BUFFERS) else (
            rule.rename(rest) if rule.rename is not None else rest)
        if new is None:
            dropped.append(key)
        else:
            out[rule.target + new] = value
    if unknown:
        raise CheckpointConversionError(
            f"{name}: {len(unknown)} parameters are not part of the reference {name} "
            f"({', '.join(unknown[:6])}{', ...' if len(unknown) > 6 else ''}); is this a checkpoint of another model?")
    report_dropped(name, dropped)
    return out


def report_dropped(name: str, dropped: Sequence[str]) -> None:
    """Log and warn about reference tensors left out because the reference never uses them."""
    if dropped:
        modules = sorted({k.rpartition(".")[0] for k in dropped})
        msg = (f"{name}: dropped {len(dropped)} reference tensors of modules the reference builds but never "
               f"uses in forward: {', '.join(modules)}")
        log.warning(msg)
        warnings.warn(msg, stacklevel=3)


def supported_models() -> list[str]:
    """Names of the models with a reference-checkpoint converter."""
    return [name for name in list_models() if get_entry(name).convert_reference is not None]


def convert_reference_checkpoint(name: str, state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Map a reference ``state_dict`` onto ``create_model(name, variant="reference")`` (strict).

    Unused reference tensors are dropped and listed in a warning; unknown keys raise
    :class:`CheckpointConversionError`. The state dict may be nested under ``"state_dict"``/``"model"``
    and carry a ``"model."``/``"net."`` prefix.
    """
    supported = supported_models()
    if name not in supported:
        raise ValueError(f"no reference converter for model {name!r}; supported: {', '.join(supported)}")
    return get_entry(name).convert_reference(unwrap_state_dict(state_dict))


def load_weights(model: torch.nn.Module, name: str, source: str | Path) -> None:
    """Load ``source`` into ``model`` strictly: a saved model folder or a weight file, in our naming or (for
    models with a converter) the reference code's."""
    state = read_weights(source)
    if set(state) != set(model.state_dict()) and get_entry(name).convert_reference is not None:
        state = convert_reference_checkpoint(name, state)
    load_state_dict_strict(model, state, source=str(source), model_name=name)


__all__ = ["CheckpointConversionError", "PrefixRule", "convert_by_prefix", "convert_reference_checkpoint",
           "load_weights", "report_dropped", "supported_models"]
