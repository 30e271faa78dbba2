"""Checkpoints that are never half-written: Lightning's checkpoint writer, made atomic on local disks.

Lightning's own writer goes through fsspec, which stages the file in ``$TMPDIR`` and then moves it;
across filesystems that move is a copy, so a kill or a full disk can leave a truncated ``last.ckpt``.
Here every checkpoint is written to a temporary file beside its destination, flushed to disk
(fsync) and renamed over it: the rename is atomic, so ``last.ckpt`` is always the previous complete file or
the new complete one, and no third copy is needed (older versions kept ``last.prev.ckpt``; a resume still
falls back to it, see :mod:`vlsm.runs`).
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.plugins import TorchCheckpointIO

from vlsm.utils import atomic_file, signals_deferred


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
    """``torch.save(obj, path)`` through a temporary file in ``path``'s folder, fsynced, then renamed over
    ``path``. On any error nothing changes; a signal that arrives meanwhile is delivered once the file is
    in place (:func:`vlsm.utils.signals_deferred`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a SIGTERM or Ctrl-C lands after the write, not inside torch's writer
    with signals_deferred(), atomic_file(path, fsync=True) as fh:
        try:
            torch.save(obj, fh)
        except RuntimeError as err:  # torch's zip writer reports a failed write without its errno
            if shutil.disk_usage(path.parent).free < (1 << 20):
                raise OSError(errno.ENOSPC, "No space left on device", str(path)) from err
            raise
    _fsync_dir(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with :func:`save_atomically` as its writer (``Trainer(plugins=...)``)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        save_atomically(checkpoint, Path(path))


__all__ = ["AtomicCheckpointIO", "save_atomically"]
