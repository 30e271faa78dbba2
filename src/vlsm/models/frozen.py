"""Frozen weights that come from a named weight source: which tensors they are, and how a saved file that
leaves them out ("slim") gets them back.

A model's *sourced frozen tensors* are its parameters with ``requires_grad == False`` that lie inside a
module whose :class:`~vlsm.models.base.ModelSpec` names a weight source of its own (``pretrained``, or a
source option such as BiomedCLIPSeg-D's ``decoder_pretrained``): the whole model, or a part built with
``create_model`` inside it (an ensemble's ``{"biomedclipseg": {"pretrained": ...}}`` branch). Training
never changes them, so checkpoints and model folders may store only the rest (trainable parameters and
every buffer) together with a :class:`FrozenSource` record: the spec with its sources, a sha256 digest of
the frozen tensors and their count. :func:`restore_frozen` rebuilds the model from the sources, checks the
digest and loads the slim state dict.

A model whose frozen tensors have no source (random init, ``pretrained=None``) has nothing to leave out:
:func:`frozen_source` returns ``None`` and it is saved whole.

This module is a leaf of ``vlsm.models`` (specs are read through their methods, models are built by the
``build`` callable the caller passes), so the model classes can use it when they save themselves.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from vlsm.errors import UserError

#: ``FrozenSource.format``: bumped if the digest or the record ever change meaning
FROZEN_FORMAT = "vlsm-frozen/1"
STANDALONE_HINT = ("or use a standalone copy (`vlsm export RUN --standalone OUT`, made where the source exists), "
                   "which holds every weight")


class FrozenSourceError(UserError):
    """A slim checkpoint or model folder whose frozen weights cannot be restored."""


class FrozenSourceMissing(FrozenSourceError, FileNotFoundError):
    """The weight source the frozen tensors come from is not on this machine."""


class FrozenSourceChanged(FrozenSourceError, ValueError):
    """The weight source holds other frozen tensors than the ones the model was trained with."""


# ---------------------------------------------------------------------------------------------------
# Which tensors
# ---------------------------------------------------------------------------------------------------
def own_sources(spec) -> list[str]:
    """The weight sources a spec names itself (not those of nested parts, which their own modules carry)."""
    flat = dataclasses.replace(spec, overrides={k: v for k, v in spec.overrides.items()
                                                if not isinstance(v, Mapping)})
    bare = flat.without_weights()
    sources = [str(flat.pretrained)] if flat.pretrained is not None else []
    sources += [str(v) for k, v in flat.overrides.items() if k not in bare.overrides and v is not None]
    return sources


def _sourced_prefixes(model: nn.Module) -> dict:
    """State-dict prefix ("" for the model itself) -> the weight sources of that module's own spec."""
    found = {}
    for name, module in model.named_modules():
        spec = getattr(module, "spec", None)
        if spec is None or not hasattr(spec, "without_weights"):
            continue
        sources = own_sources(spec)
        if sources:
            found[name + "." if name else ""] = sources
    return found


def frozen_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the model's sourced frozen tensors (sorted; tied aliases included)."""
    prefixes = tuple(_sourced_prefixes(model))
    if not prefixes:
        return []
    return sorted(name for name, p in model.named_parameters(remove_duplicate=False)
                  if not p.requires_grad and name.startswith(prefixes))


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """``sha256:<hex>`` over the names (sorted), dtypes, shapes and bytes of ``tensors``."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------------------------------------------
# The record
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrozenSource:
    """Where a slim file's frozen tensors come from (JSON-serialisable with :meth:`to_dict`).

    Attributes:
        spec: the model's ``ModelSpec.to_dict()`` *with* its weight sources.
        digest: :func:`tensors_digest` of the frozen tensors.
        keys: how many state-dict keys are frozen.
        sources: the weight sources they come from (hub ids or folders), for messages and model cards.
    """

    spec: dict
    digest: str
    keys: int
    sources: tuple
    format: str = FROZEN_FORMAT

    def to_dict(self) -> dict:
        return {"format": self.format, "spec": self.spec, "digest": self.digest, "keys": self.keys,
                "sources": list(self.sources)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "the file") -> "FrozenSource":
        if not isinstance(d, Mapping) or d.get("format") != FROZEN_FORMAT:
            found = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise ValueError(f"{where}: its frozen-weights record is not of format {FROZEN_FORMAT} (found "
                             f"{found!r}); it was written by another vlsm version: load it with that version and "
                             f"make a standalone copy (`vlsm export RUN --standalone OUT`)")
        try:
            return cls(spec=dict(d["spec"]), digest=str(d["digest"]), keys=int(d["keys"]),
                       sources=tuple(str(s) for s in d.get("sources", ())))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where}: damaged frozen-weights record ({type(err).__name__}: {err}); "
                             f"restore the file from a copy") from None

    def describe_sources(self) -> str:
        return ", ".join(self.sources) or "its weight sources"


def frozen_source(model: nn.Module) -> Optional[FrozenSource]:
    """The record of ``model``'s sourced frozen tensors, or ``None`` when it has none (then it is saved whole).
    Reads every frozen tensor once (the digest)."""
    keys = frozen_keys(model)
    if not keys:
        return None
    state = model.state_dict()
    sources = [s for found in _sourced_prefixes(model).values() for s in found]
    return FrozenSource(spec=model.spec.to_dict(), digest=tensors_digest({k: state[k] for k in keys}),
                        keys=len(keys), sources=tuple(dict.fromkeys(sources)))


def slim_state_dict(state: Mapping[str, torch.Tensor], keys, prefix: str = "") -> dict:
    """``state`` without the frozen ``keys`` (each looked up as ``prefix + key``, e.g. Lightning's ``model.``)."""
    drop = {prefix + k for k in keys}
    return {k: v for k, v in state.items() if k not in drop}


# ---------------------------------------------------------------------------------------------------
# Getting them back
# ---------------------------------------------------------------------------------------------------
def check_frozen(model: nn.Module, record: FrozenSource, *, source: str) -> list[str]:
    """The frozen keys of ``model`` after checking that they are the ones ``record`` describes
    (:class:`FrozenSourceChanged` otherwise)."""
    keys = frozen_keys(model)
    if len(keys) != record.keys:
        raise FrozenSourceChanged(
            f"{source} was saved without its {record.keys} frozen tensors, but the model built from "
            f"{record.describe_sources()} has {len(keys)}: the model code or its freezing options changed since "
            f"training; load it with the vlsm version that trained it, {STANDALONE_HINT}")
    state = model.state_dict()
    if tensors_digest({k: state[k] for k in keys}) != record.digest:
        raise FrozenSourceChanged(
            f"{source} was trained with other frozen weights than {record.describe_sources()} holds now (content "
            f"digest differs): the weights changed since training; put back the version it was trained with, "
            f"{STANDALONE_HINT}")
    return keys


def fill_frozen(model: nn.Module, record: FrozenSource, slim: Mapping[str, torch.Tensor], *, source: str,
                prefix: str = "") -> dict:
    """``slim`` completed with ``model``'s frozen tensors (checked against ``record``), keys as ``prefix + key``;
    fails on a slim state dict that is not exactly the rest of the model."""
    keys = check_frozen(model, record, source=source)
    state = model.state_dict()
    expected = {prefix + k for k in state} - {prefix + k for k in keys}
    given = {k for k in slim if k.startswith(prefix)}
    if given != expected:
        missing, extra = sorted(expected - given), sorted(given - expected)
        detail = "; ".join(part for part in (
            f"missing {len(missing)} tensors, e.g. {', '.join(missing[:3])}" if missing else "",
            f"{len(extra)} unexpected, e.g. {', '.join(extra[:3])}" if extra else "") if part)
        raise FrozenSourceChanged(f"{source} does not fit the model built from {record.describe_sources()} "
                                  f"({detail}); it was saved from another model or vlsm version")
    full = dict(slim)
    full.update({prefix + k: state[k] for k in keys})
    return full


def _how_to_get(sources) -> str:
    """The fix for missing sources: ``hf download`` for hub ids, the folder for local ones."""
    from vlsm.models.weights import parse_source

    steps = []
    for source in sources:
        try:
            kind, where = parse_source(source)
        except (ValueError, FileNotFoundError):
            kind, where = "local", source
        steps.append(f"`hf download {where}` into the Hugging Face cache" if kind == "hub"
                     else f"put the weight files back into {where}")
    return "Fix: " + "; ".join(steps or ["get the weight sources onto this machine"])


def restore_frozen(record: FrozenSource, slim: Mapping[str, torch.Tensor], *,
                   build: Callable[[dict], nn.Module], source: str) -> nn.Module:
    """The model of a slim file: built by ``build(record.spec)`` from its weight sources (a missing source is
    :class:`FrozenSourceMissing`), its frozen tensors checked against the digest, then ``slim`` loaded strictly."""
    try:
        model = build(record.spec)
    except FileNotFoundError as err:
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise FrozenSourceMissing(
            f"{source} is slim: its {record.keys} frozen tensors come from {record.describe_sources()}, which is not "
            f"available here ({first.rstrip('.')}). {_how_to_get(record.sources)}, {STANDALONE_HINT}") from None
    full = fill_frozen(model, record, slim, source=source)
    model.load_state_dict(full, strict=True)
    return model


__all__ = ["FROZEN_FORMAT", "FrozenSource", "FrozenSourceChanged", "FrozenSourceError", "FrozenSourceMissing",
           "check_frozen", "fill_frozen", "frozen_keys", "frozen_source", "own_sources", "restore_frozen",
           "slim_state_dict", "tensors_digest"]
