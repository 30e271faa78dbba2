"""Training checkpoints: reading a ``.ckpt`` written by ``vlsm train`` (weights only unless trusted), the
entries vlsm adds to it and where the model's weights sit in it."""
from __future__ import annotations

from pathlib import Path
from typing import Union

#: the entry of a slim training checkpoint that names its frozen weights' source (vlsm.models.frozen)
FROZEN_CHECKPOINT_KEY = "vlsm_frozen"
#: the prefix of the model's weights in a training checkpoint (SegmentationTask keeps it as ``.model``)
MODEL_PREFIX = "model."

PathLike = Union[str, Path]


def read_training_checkpoint(path: PathLike, *, mmap: bool = False) -> dict:
    """A Lightning checkpoint written by ``vlsm train`` (a dict with ``state_dict``); anything else, or a
    truncated or damaged file, is a ``ValueError`` naming the file. ``mmap`` leaves the tensors on disk
    (a cheap readability check)."""
    import pickle
    import zipfile

    from vlsm.models.checkpoint import UntrustedCheckpointError, load_torch_file

    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{path} is not a vlsm/Lightning checkpoint: the file is empty (an interrupted write?); "
                         "pass another checkpoint, or train again")
    try:
        ckpt = load_torch_file(path, mmap=mmap)  # weights only, unless the user trusts the file
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path} does not exist") from None
    except UntrustedCheckpointError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, TypeError,
            AttributeError, ImportError, IndexError, KeyError, UnicodeDecodeError, OSError) as err:
        raise ValueError(f"{path} is not a vlsm/Lightning checkpoint: cannot read it ({type(err).__name__}: "
                         f"{_first_line(err)}); it is truncated, damaged or another kind of file; "
                         "pass another checkpoint, or train again") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        kind = type(ckpt).__name__ if not isinstance(ckpt, dict) else f"a dict without 'state_dict' (keys: " \
               f"{', '.join(map(str, list(ckpt)[:5]))})"
        raise ValueError(f"{path} is not a vlsm/Lightning checkpoint: it holds {kind}. For plain weights use a "
                         f"model folder (save_pretrained), or `vlsm convert-checkpoint` for reference-code files")
    return ckpt


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def model_state(task_state: dict) -> dict:
    """The model's weights in a training checkpoint's ``state_dict`` (:data:`MODEL_PREFIX` removed)."""
    return {k[len(MODEL_PREFIX):]: v for k, v in task_state.items() if k.startswith(MODEL_PREFIX)}


def task_state(model_state: dict) -> dict:
    """A training checkpoint's ``state_dict`` holding ``model_state`` (the inverse of :func:`model_state`)."""
    return {f"{MODEL_PREFIX}{k}": v for k, v in model_state.items()}


__all__ = ["FROZEN_CHECKPOINT_KEY", "MODEL_PREFIX", "model_state", "read_training_checkpoint", "task_state"]
