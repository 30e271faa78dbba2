"""State-dict files: read them, unwrap them, load them strictly. The one place that knows their formats.

A weight file may be ``.safetensors``, ``.pt``/``.pth``/``.ckpt``/``.bin`` (read with
``weights_only=True``: a model file is data, never code), nested under a wrapper key (Lightning's ``state_dict``, ``model``, ...) and
carry a prefix on every key (DataParallel's ``module.``, a LightningModule's ``model.``/``net.``,
``torch.compile``'s ``_orig_mod.``). Loading is strict: a file either fills every parameter and buffer
of the model with the right shape or fails with one message naming the file, the model and the
first problem.

Pickled files are read by :func:`load_torch_file` only: weights only always, and as full pickles (or
TorchScript archives) only inside
:func:`checkpoints_trusted`, which ``--trust-checkpoint`` / ``trust_checkpoint=True`` open. A file that
needs arbitrary Python objects is otherwise refused in one line (:class:`UntrustedCheckpointError`).
"""
from __future__ import annotations

import contextvars
import logging
import pickle
import re
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch

from vlsm.models.base import WEIGHTS_FILE

FILE_TYPES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
# keys under which training code nests the state dict, tried in this order
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
# prefixes wrappers put on every key (DataParallel, LightningModule attributes, torch.compile)
PREFIXES = ("module.", "model.", "net.", "_orig_mod.")


log = logging.getLogger(__name__)

# set by create_model(..., allow_partial_weights=True) around the builder: a runtime choice, not architecture
_ALLOW_PARTIAL = contextvars.ContextVar("vlsm_allow_partial_weights", default=False)
PARTIAL_HINT = "pass allow_partial_weights=True (vlsm: --allow-partial-weights) to load it anyway"


# set by --trust-checkpoint / trust_checkpoint=True: pickled files may then hold arbitrary Python objects
_TRUSTED = contextvars.ContextVar("vlsm_trust_checkpoint", default=False)
TRUST_HINT = ("if you trust its source, pass --trust-checkpoint (trust_checkpoint=True in Python), or ask for "
              "a model folder (safetensors + JSON)")


class CheckpointError(ValueError):
    """A weight file cannot be read, or its tensors do not fit the model."""


class UntrustedCheckpointError(CheckpointError):
    """A pickled file that needs arbitrary Python objects (code) to load, and nobody said it is trusted."""


@contextmanager
def checkpoints_trusted(enabled: bool = True) -> Iterator[None]:
    """Inside the block (when ``enabled``), :func:`load_torch_file` loads files that need arbitrary Python
    objects. Loading such a file can run any code it carries: only for files from a trusted source."""
    token = _TRUSTED.set(True) if enabled else None  # (False leaves an enclosing block's trust as it is)
    try:
        yield
    finally:
        if token is not None:
            _TRUSTED.reset(token)


def checkpoints_are_trusted() -> bool:
    """Whether the caller said its checkpoints are trusted (:func:`checkpoints_trusted`)."""
    return _TRUSTED.get()


def load_torch_file(path: str | Path, *, mmap: bool = False):
    """The object in a file written by ``torch.save`` (or a TorchScript archive's state dict), on the CPU.

    The one reader of pickled files in vlsm: ``weights_only=True`` (tensors, containers, numbers, text),
    so loading never runs code. A file that needs other objects is refused with
    :class:`UntrustedCheckpointError` unless :func:`checkpoints_trusted` is on."""
    path = Path(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise
        if not _TRUSTED.get():
            needs = _unsupported_global(err)
            if needs is None:
                raise  # no object named: a damaged file or another kind of file (the caller says which)
            raise UntrustedCheckpointError(
                f"{path} holds Python objects beyond tensors (it needs {needs}): loading it could run code, so "
                f"vlsm refused it; {TRUST_HINT}") from None
    except RuntimeError as err:
        if not _is_torchscript(path, err):
            raise
        if not _TRUSTED.get():
            raise UntrustedCheckpointError(
                f"{path} is a TorchScript archive (e.g. OpenAI's RN50.pt): loading it runs the code it carries, so "
                f"vlsm refused it; {TRUST_HINT}") from None
        # a TorchScript archive, trusted: its tensors only
        return torch.jit.load(str(path), map_location="cpu").state_dict()  # noqa: S614 - trusted path
    return torch.load(str(path), map_location="cpu", weights_only=False, mmap=mmap)  # the one trusted path


def _unsupported_global(err: BaseException) -> str | None:
    """The Python object a weights-only load refused (``GLOBAL posix.system``), or None."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    return found.group(1) if found else None


def _is_torchscript(path: Path, err: BaseException) -> bool:
    if "torchscript" in str(err).lower():
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


@contextmanager
def partial_weights_allowed(enabled: bool = True) -> Iterator[None]:
    """Inside the block, weight files that lack some of a model's tensors load with a warning (the missing
    ones keep their initialisation) instead of failing. Shape mismatches and foreign tensors still fail."""
    token = _ALLOW_PARTIAL.set(bool(enabled))
    try:
        yield
    finally:
        _ALLOW_PARTIAL.reset(token)


def missing_tensors_message(source: str, model_name: str, missing: list) -> str:
    """The one wording for a weight source that lacks tensors of a model."""
    return (f"{source} is missing {len(missing)} tensor{'s' if len(missing) != 1 else ''} of model {model_name}, "
            f"e.g. {_first(missing, 3)}; {PARTIAL_HINT}")


def allow_missing(source: str, model_name: str, missing: list) -> None:
    """Fail on ``missing`` tensors unless partial weights are allowed; then log and warn once."""
    if not missing:
        return
    message = missing_tensors_message(source, model_name, missing)
    if not _ALLOW_PARTIAL.get():
        raise CheckpointError(message)
    note = (f"{source} is missing {len(missing)} tensors of model {model_name} (e.g. {_first(missing, 3)}); "
            f"they keep their initialisation (allow_partial_weights=True)")
    log.warning(note)
    warnings.warn(note, stacklevel=3)


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
            obj = load_torch_file(path)
        except UntrustedCheckpointError:
            raise
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


def _aliases(model: torch.nn.Module) -> dict:
    """State-dict key -> the other keys of the same tensor (tied weights, saved once by safetensors)."""
    groups: dict = {}
    for key, tensor in model.state_dict().items():
        if tensor.numel():
            groups.setdefault((tensor.data_ptr(), tensor.dtype, tuple(tensor.shape)), []).append(key)
    return {k: [o for o in keys if o != k] for keys in groups.values() if len(keys) > 1 for k in keys}


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str,
                     model_name: str) -> dict:
    """``state`` completed for tied tensors, after checking that it holds ``model``'s keys with the same shapes.

    Raises :class:`CheckpointError` naming the source, the model and the first problem. Keys that are only
    missing fail with :func:`missing_tensors_message` unless partial weights are allowed
    (:func:`partial_weights_allowed`), which logs a warning instead.
    """
    ours = model.state_dict()
    state = dict(state)
    for key, others in _aliases(model).items():
        if key not in state:
            present = next((o for o in others if o in state), None)
            if present is not None:
                state[key] = state[present]
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    mismatched = [k for k in ours if k in state and tuple(ours[k].shape) != tuple(state[k].shape)]
    if not (mismatched or unexpected):
        allow_missing(source, model_name, missing)
        return state
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
    """``model.load_state_dict(state)`` after :func:`check_state_dict`'s clear error (strict unless partial
    weights are allowed and only some tensors are missing)."""
    state = check_state_dict(model, state, source=source, model_name=model_name)
    model.load_state_dict(state, strict=len(state) == len(model.state_dict()))


def _first(items: Iterable[str], n: int = 6) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n})" if len(items) > n else "")


__all__ = ["CheckpointError", "FILE_TYPES", "UntrustedCheckpointError", "allow_missing", "check_state_dict",
           "checkpoints_are_trusted", "checkpoints_trusted", "load_state_dict_strict", "load_torch_file",
           "missing_tensors_message", "partial_weights_allowed", "read_state_dict_file", "read_weights",
           "unwrap_state_dict"]
