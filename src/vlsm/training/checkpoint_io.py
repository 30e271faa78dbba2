"""Checkpoints that are never half-written: Lightning's checkpoint writer, made atomic on local disks.

Lightning's own writer goes through fsspec, which stages the file in ``$TMPDIR`` and then moves it;
across filesystems that move is a copy, so a kill or a full disk can leave a truncated ``last.ckpt``.
Here every checkpoint is written to a temporary file beside its destination, flushed to disk
(fsync) and renamed over it. Before ``last.ckpt`` is replaced, the previous one becomes
``last.prev.ckpt`` (the layout lives in :mod:`vlsm.runs`), so a resume always finds a complete one.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.plugins import TorchCheckpointIO

from vlsm.runs import CHECKPOINT_SUFFIX, LAST_CHECKPOINT, PREVIOUS_LAST_CHECKPOINT
from vlsm.utils import default_file_mode


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not open folders; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_atomically(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` through a temporary file in ``path``'s folder, fsynced, then renamed;
    a ``last.ckpt`` being replaced is kept as ``last.prev.ckpt``. On any error nothing changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), default_file_mode())
            try:
                torch.save(obj, fh)
            except RuntimeError as err:  # torch's zip writer reports a failed write without its errno
                if shutil.disk_usage(path.parent).free < (1 << 20):
                    raise OSError(errno.ENOSPC, "No space left on device", str(path)) from err
                raise
            fh.flush()
            os.fsync(fh.fileno())
        if path.name == LAST_CHECKPOINT + CHECKPOINT_SUFFIX and path.is_file():
            os.replace(path, path.with_name(PREVIOUS_LAST_CHECKPOINT + CHECKPOINT_SUFFIX))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with :func:`save_atomically` as its writer (``Trainer(plugins=...)``)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        save_atomically(checkpoint, Path(path))


__all__ = ["AtomicCheckpointIO", "save_atomically"]
