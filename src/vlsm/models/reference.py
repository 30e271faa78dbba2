"""Map state dicts of the reference VLSM-Ensemble code onto our models.

The reference repository (Dietlmeier et al.) names its layers ``conv11``, ``upconv41``,
``decoder2.convup4`` ...; our modules use structured names. :func:`convert_reference_checkpoint`
renames every parameter and buffer, drops those the reference builds but never uses in
``forward`` (each is listed in a warning), and refuses anything it does not recognise, so that
``model.load_state_dict(converted, strict=True)`` either loads every weight or fails loudly.

Supported names: ``unet-d``, ``biomedclipseg-a``, ``clipseg-b``, ``ensemble-c`` (the last three
map onto ``create_model(name, variant="reference")``).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Optional

import torch

log = logging.getLogger(__name__)

# -- UNet-D -------------------------------------------------------------------------------------
# reference module name -> ours (BatchNorm buffers follow their module)
_UNET_D_RENAMES = {
    "conv11": "encoder.0.conv1", "conv12": "encoder.0.conv2", "bn1": "encoder.0.bn",
    "conv22": "encoder.1.conv1", "conv222": "encoder.1.conv2", "bn2": "encoder.1.bn",
    "conv33": "encoder.2.conv1", "conv333": "encoder.2.conv2", "bn3": "encoder.2.bn",
    "conv44": "encoder.3.conv1", "conv444": "encoder.3.conv2", "bn4": "encoder.3.bn",
    "upconv41": "bottleneck", "eca4.conv": "eca.conv",
    "upconv4": "decoder.0.up", "convup4": "decoder.0.conv", "upbn4": "decoder.0.bn",
    "upconv3": "decoder.1.up", "convup3": "decoder.1.conv", "upbn3": "decoder.1.bn",
    "upconv2": "decoder.2.up", "convup2": "decoder.2.conv", "upbn2": "decoder.2.bn",
    "upconv1": "decoder.3.up", "convup1": "decoder.3.conv", "upbn1": "decoder.3.bn",
    "outconv": "head",
}
# built by the reference UNet-D variants but never called in their forward
_UNET_D_UNUSED = ("gn1", "eca3")


class ConversionError(ValueError):
    """The state dict does not look like a reference checkpoint of the requested model."""


def _split_module(key: str) -> tuple[str, str]:
    module, _, leaf = key.rpartition(".")
    return module, leaf


def _rename_unet_d(key: str, *, fuse: bool) -> Optional[str]:
    """Our name for a reference UNet-D key, or None when the key is unused by the reference forward."""
    module, leaf = _split_module(key)
    if module == "outconv2":
        return f"fuse.{leaf}" if fuse else None
    if module.split(".")[0] in _UNET_D_UNUSED:
        return None
    if module in _UNET_D_RENAMES:
        return f"{_UNET_D_RENAMES[module]}.{leaf}"
    raise ConversionError(f"unknown UNet-D parameter {key!r} in the reference state dict")


def _convert_unet_d(state: Mapping[str, torch.Tensor], prefix: str, target: str, *, fuse: bool,
                    out: dict, dropped: list) -> None:
    """Rename every key under ``prefix`` (a reference UNet-D) to ``target`` + our name."""
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        new = _rename_unet_d(key[len(prefix):], fuse=fuse)
        if new is None:
            dropped.append(key)
        else:
            out[target + new] = value


def _report_dropped(name: str, dropped: list) -> None:
    if dropped:
        modules = sorted({k.rpartition(".")[0] for k in dropped})
        msg = (f"{name}: dropped {len(dropped)} reference tensors of modules the reference builds but never "
               f"uses in forward: {', '.join(modules)}")
        log.warning(msg)
        warnings.warn(msg, stacklevel=3)


def convert_unet_d(state: Mapping[str, torch.Tensor]) -> dict:
    """Standalone reference ``UNet_D``: its ``outconv2`` is never called, so it is dropped."""
    out, dropped = {}, []
    _convert_unet_d(state, "", "", fuse=False, out=out, dropped=dropped)
    _report_dropped("unet-d", dropped)
    return out


_CONVERTERS = {"unet-d": convert_unet_d}


def _register_ensemble_converters() -> None:
    # the ensembles' converters live next to their models
    import importlib

    try:
        ensembles = importlib.import_module("vlsm.models.ensembles")
    except ModuleNotFoundError as err:  # pragma: no cover - part of the package
        if err.name != "vlsm.models.ensembles":
            raise
        return
    _CONVERTERS.update(getattr(ensembles, "REFERENCE_CONVERTERS", {}))


def supported_models() -> list[str]:
    _register_ensemble_converters()
    return sorted(_CONVERTERS)


def convert_reference_checkpoint(name: str, state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Map a reference ``state_dict`` onto ``create_model(name, variant="reference")`` (strict).

    Unused reference tensors are dropped and listed in a warning; unknown keys raise
    :class:`ConversionError`. The state dict may be nested under ``"state_dict"``/``"model"`` and
    carry a ``"model."``/``"net."`` prefix.
    """
    _register_ensemble_converters()
    if name not in _CONVERTERS:
        raise ValueError(f"no reference converter for model {name!r}; supported: {', '.join(sorted(_CONVERTERS))}")
    return _CONVERTERS[name](unwrap_state_dict(state_dict))


# -- reading checkpoint files ---------------------------------------------------------------------
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_PREFIXES = ("module.", "model.", "net.", "_orig_mod.")


def unwrap_state_dict(obj) -> dict:
    """Find the tensor mapping inside a checkpoint object and strip wrapper prefixes."""
    seen = 0
    while isinstance(obj, Mapping) and not _is_tensor_mapping(obj) and seen < 4:
        for k in _WRAPPER_KEYS:
            if k in obj and isinstance(obj[k], Mapping):
                obj = obj[k]
                break
        else:
            break
        seen += 1
    if not isinstance(obj, Mapping) or not _is_tensor_mapping(obj):
        raise ConversionError("no state dict found: expected a mapping of parameter names to tensors, possibly "
                              f"nested under one of {_WRAPPER_KEYS}")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if state and all(k.startswith(p) for k in state):
                state = {k[len(p):]: v for k, v in state.items()}
                changed = True
    return state


def _is_tensor_mapping(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values()) and all(
        isinstance(k, str) for k in obj)


def read_state_dict_file(path: str | Path) -> dict:
    """Read a .safetensors/.pt/.pth/.ckpt/.bin file into a flat state dict (wrappers removed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (expected a .pt/.pth/.ckpt/.bin/.safetensors file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj = load_file(str(path))
    elif path.suffix in (".pt", ".pth", ".ckpt", ".bin"):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - report any unpickling problem as a user error
            raise ConversionError(
                f"cannot read {path} as a PyTorch state dict ({type(err).__name__}: {err}). Save it with "
                f"torch.save(model.state_dict(), path) or as .safetensors") from err
    else:
        raise ConversionError(f"{path}: unsupported checkpoint type {path.suffix!r}; use .pt, .pth, .ckpt, .bin "
                              f"or .safetensors")
    try:
        return unwrap_state_dict(obj)
    except ConversionError as err:
        raise ConversionError(f"{path}: {err}") from err


def load_any_state_dict(name: str, source: str | Path, model: torch.nn.Module) -> dict:
    """Weights for ``model`` from a saved model folder, or a state-dict file in our or the reference's naming."""
    source = Path(source)
    if source.is_dir():
        weights = source / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{source} has no model.safetensors: point at a folder written by save_pretrained")
        state = read_state_dict_file(weights)
    else:
        state = read_state_dict_file(source)
    ours = set(model.state_dict())
    if set(state) == ours:
        return state
    return convert_reference_checkpoint(name, state)


def check_keys(model: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str = "converted state dict") -> None:
    """Raise a clear error when ``state`` does not cover exactly ``model``'s keys with matching shapes."""
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    extra = sorted(set(state) - set(ours))
    bad = sorted(k for k in set(ours) & set(state) if tuple(ours[k].shape) != tuple(state[k].shape))
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {_short(missing)}")
        if extra:
            parts.append(f"unexpected {len(extra)}: {_short(extra)}")
        if bad:
            parts.append("shape mismatch: " + _short(
                [f"{k} {tuple(state[k].shape)} vs {tuple(ours[k].shape)}" for k in bad]))
        raise ConversionError(f"{what} does not match the model ({'; '.join(parts)}). Was the checkpoint "
                              f"trained with another model or preset (--preset / image size)?")


def _short(items: Iterable[str], n: int = 6) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n})" if len(items) > n else "")


def infer_unet_d_overrides(state: Mapping[str, torch.Tensor]) -> dict:
    """UNet-D widths read off a reference state dict (so a tiny or custom checkpoint converts too)."""
    enc, i = [], 0
    names = [("conv11", "conv12"), ("conv22", "conv222"), ("conv33", "conv333"), ("conv44", "conv444")]
    for first, _ in names:
        w = state.get(f"{first}.weight")
        if w is None:
            break
        enc.append(int(w.shape[0]))
        i += 1
    dec = [int(state[f"convup{k}.weight"].shape[0]) for k in (4, 3, 2, 1) if f"convup{k}.weight" in state]
    if len(enc) != 4 or len(dec) != 4 or "upconv41.weight" not in state:
        raise ConversionError("not a reference UNet-D state dict (conv11..conv444, upconv41, convup1..4 expected)")
    over = dict(encoder_channels=tuple(enc), decoder_channels=tuple(dec),
                bottleneck_channels=int(state["upconv41.weight"].shape[0]),
                in_channels=int(state["conv11.weight"].shape[1]),
                num_classes=int(state["outconv.weight"].shape[0]))
    extra = int(state["upconv41.weight"].shape[1]) - enc[-1]
    if extra:
        over["inject_channels"] = (extra,)
    return over


__all__ = ["ConversionError", "check_keys", "convert_reference_checkpoint", "infer_unet_d_overrides",
           "load_any_state_dict", "read_state_dict_file", "supported_models", "unwrap_state_dict"]
