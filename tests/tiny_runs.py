"""What several test modules share: the argv of a tiny, quick UNet-D training run, the same settings for
``vlsm.api.train``, and the guard of the session's shared runs (tests/conftest.py)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

# tiny UNet-D at 32 px on CPU-friendly settings; add --data, --out and --epochs
TRAIN = ["train", "--model", "unet-d", "--preset", "tiny", "--img-size", "32", "--batch-size", "4",
         "--num-workers", "0", "--no-progress", "--seed", "1"]

#: TRAIN's settings as vlsm.api.train overrides
SETTINGS = {"model.name": "unet-d", "model.preset": "tiny", "model.overrides.image_size": 32, "train.batch_size": 4,
            "train.num_workers": 0, "train.progress_bar": False, "train.seed": 1}


def train_tiny(data, out, overrides: dict) -> Path:
    """A run trained in-process through ``vlsm.api.train`` with :data:`SETTINGS` (what ``TRAIN`` runs), then
    ``overrides`` (dotted keys); returns its folder."""
    from vlsm import api

    settings = {**SETTINGS, "data.paths": [str(data)], "out": str(out), **overrides}
    return api.train(overrides=list(settings.items())).path


def files_of(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@contextlib.contextmanager
def unchanged(folder: Path) -> Iterator[Path]:
    """Lend ``folder`` (shared by the session) to one test: the test fails if it changed a file of it. A test
    that must change it copies it first (``shutil.copytree``)."""
    before = files_of(folder)
    yield folder
    assert files_of(folder) == before, f"a test changed {folder}, which other tests share: copy it first"
