"""State-dict files: read them, unwrap them, load them strictly. The one place that knows their formats.

A weight file may be ``.safetensors``, ``.pt``/``.pth``/``.ckpt``/``.bin`` (read with
``weights_only=True``), nested under a wrapper key (Lightning's ``state_dict``, ``model``, ...) and
carry a prefix on every key (DataParallel's ``module.``, a LightningModule's ``model.``/``net.``,
``torch.compile``'s ``_orig_mod.``). Loading is strict: a file either fills every parameter and buffer
of the model with the right shape or fails with one message naming the file, the model and the
first problem.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import torch

from vlsm.models.base import WEIGHTS_FILE

FILE_TYPES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
# keys under which training code nests the state dict, tried in this order
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
# prefixes wrappers put on every key (DataParallel, LightningModule attributes, torch.compile)
PREFIXES = ("module.", "model.", "net.", "_orig_mod.")


class CheckpointError(ValueError):
    """A weight file cannot be read, or its tensors do not fit the model."""


def unwrap_state_dict(obj) -> dict:
    """The tensor mapping inside a checkpoint object, with prefixes shared by every key stripped."""
    for _ in range(4):  # wrappers seen in practice nest at most a few levels
        if not isinstance(obj, Mapping) or _is_tensor_mapping(obj):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not _is_tensor_mapping(obj):
        raise CheckpointError("no state dict found: expected a mapping of parameter names to tensors, possibly "
                              f"nested under one of {WRAPPER_KEYS}")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def _is_tensor_mapping(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def read_state_dict_file(path: str | Path) -> dict:
    """A flat state dict from a .safetensors/.pt/.pth/.ckpt/.bin file (wrappers and prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (expected a {'/'.join(FILE_TYPES)} file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj = load_file(str(path))
    elif path.suffix in FILE_TYPES:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling problem is a bad file, reported as such
            raise CheckpointError(
                f"cannot read {path} as a PyTorch state dict ({type(err).__name__}: {err}). Save it with "
                f"torch.save(model.state_dict(), path) or as .safetensors") from err
    else:
        raise CheckpointError(f"{path}: unsupported checkpoint type {path.suffix!r}; use "
                              f"{', '.join(FILE_TYPES[:-1])} or {FILE_TYPES[-1]}")
    try:
        return unwrap_state_dict(obj)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err


def read_weights(source: str | Path) -> dict:
    """The state dict of a weight source: a model folder written by ``save_pretrained`` or a weight file."""
    source = Path(source)
    if source.is_dir():
        weights = source / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{source} has no {WEIGHTS_FILE}: point at a folder written by save_pretrained "
                                    f"or at a weight file ({', '.join(FILE_TYPES)})")
        source = weights
    return read_state_dict_file(source)


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str,
                     model_name: str) -> None:
    """Raise :class:`CheckpointError` unless ``state`` holds exactly ``model``'s keys with the same shapes."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    mismatched = [k for k in ours if k in state and tuple(ours[k].shape) != tuple(state[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if mismatched:
        k = mismatched[0]
        problems.append(f"first mismatch {k} {tuple(state[k].shape)} vs {tuple(ours[k].shape)} "
                        f"({len(mismatched)} shape mismatch{'es' if len(mismatched) > 1 else ''})")
    if missing:
        problems.append(f"missing {len(missing)} keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {_first(unexpected)}")
    raise CheckpointError(f"weights in {source} do not fit model {model_name}: {'; '.join(problems)}. Were they "
                          f"trained with another model, preset or image size (--preset / --img-size)?")


def load_state_dict_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str,
                           model_name: str) -> None:
    """``model.load_state_dict(state, strict=True)`` after :func:`check_state_dict`'s clear error."""
    check_state_dict(model, state, source=source, model_name=model_name)
    model.load_state_dict(state, strict=True)


def _first(items: Iterable[str], n: int = 6) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n})" if len(items) > n else "")


__all__ = ["CheckpointError", "FILE_TYPES", "check_state_dict", "load_state_dict_strict", "read_state_dict_file",
           "read_weights", "unwrap_state_dict"]
