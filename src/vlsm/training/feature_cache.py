"""Frozen-encoder feature cache: a frozen image encoder runs once per image, not once per epoch.

When a model's image encoder is frozen and deterministic (BiomedCLIPSeg, CLIPSeg with
``freeze_encoder: true``, the VLSM branches of the ensembles; see
:meth:`vlsm.models.base.SegmentationModel.frozen_image_features`) and the training images are not
augmented, the encoder's outputs for an image are the same every epoch. :class:`FeatureCache` keeps
them, keyed by (stage, the item's position in the train or val set), and the training step runs only
the trainable parts on them (``forward_with_features``). Exact: the first epoch computes the features
inside the step exactly as the plain forward pass does (same batch, autocast and ``no_grad``); later
epochs reuse those rows (row ``i`` depends on image ``i`` alone; a batch of other images may change the
last bits of a matrix product, no more).

Where the features live: each stage's features are held in the dtype they were computed in (the
training precision) in memory when, with what the cache already holds, they fit in
:data:`MEMORY_FRACTION` of the memory available when training starts (``MemAvailable`` of
``/proc/meminfo``); otherwise in a memory-mapped file in a folder of its own under the cache folder
(``data.cache_dir``/features, else ``$VLSM_CACHE_DIR/features`` or ``~/.cache/vlsm/features``),
reserved in full before the first write (a full disk is one warning and no cache for that stage, never
a crash mid-epoch). :meth:`FeatureCache.close` deletes the files; training calls it at its end, on
error too. The cache starts empty on every start, resume included; under DDP each rank caches the items
it sees.

``train.feature_cache`` / ``vlsm train --feature-cache``: ``auto`` (default) caches when it is exact
(a frozen image encoder and ``data.augment: false``), ``on`` insists (and refuses what cannot be
cached), ``off`` never caches (:func:`resolve_feature_cache`).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch.utils.data import ConcatDataset

log = logging.getLogger("vlsm")

#: the item key that says where an item sits in the whole train or val set (the cache's key)
SAMPLE_KEY = "sample"
#: the share of the memory available at the start of training that cached features may take
MEMORY_FRACTION = 0.5


class NumberedConcatDataset(ConcatDataset):
    """A ``ConcatDataset`` whose items also carry their position in the whole set (``item["sample"]``):
    the items' own ``index`` counts within each dataset, which repeats across pooled datasets."""

    def __getitem__(self, idx):
        item = super().__getitem__(idx)
        return {**item, SAMPLE_KEY: idx + len(self) if idx < 0 else idx}


def resolve_feature_cache(mode: str, model, augment: bool) -> tuple[bool, str]:
    """(cache or not, why) for ``train.feature_cache`` = ``mode``; ``on`` where it cannot be exact is a
    ``ValueError`` that names the flag and the fix."""
    frozen = model.has_frozen_image_features()
    if mode == "off":
        return False, "off (--feature-cache off)"
    if not frozen:
        why = f"model {model.spec.name!r} has no frozen image encoder (its image encoder trains)"
        if mode == "on":
            raise ValueError(f"--feature-cache on (train.feature_cache): {why}, so its features change every step; "
                             f"use --feature-cache auto or off, or freeze the encoder (e.g. --set "
                             f"freeze_encoder=true for clipseg)")
        return False, f"off: {why}"
    if augment:
        why = "the training images are augmented (data.augment: true), so the encoder sees new images every epoch"
        if mode == "on":
            raise ValueError(f"--feature-cache on (train.feature_cache): {why}; turn augmentation off (--no-augment, "
                             f"data.augment: false) or use --feature-cache auto or off")
        return False, f"off: {why}"
    return True, "on: the image encoder is frozen and the images are not augmented (exact)"


def memory_available() -> int:
    """Bytes of memory available for new allocations without swapping (``MemAvailable``), or the free
    physical memory where ``/proc/meminfo`` does not exist."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def default_folder(cache_dir=None) -> Path:
    """Where the feature files go: ``<data.cache_dir>/features``, else ``$VLSM_CACHE_DIR/features`` (or
    ``~/.cache/vlsm/features``)."""
    from vlsm.utils import cache_root

    return (Path(cache_dir).expanduser() if cache_dir else cache_root()) / "features"


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 or n == 0 else f"{n / 2**20:.1f} MB"


class _StageStore:
    """One stage's features: per feature tensor an array of ``size`` rows (in memory or memory-mapped),
    and which rows hold features."""

    def __init__(self, stage: str, size: int, template: Sequence[torch.Tensor], files: Optional[list] = None):
        self.stage = stage
        self.shapes = [tuple(t.shape[1:]) for t in template]
        self.dtypes = [t.dtype for t in template]
        self.filled = torch.zeros(size, dtype=torch.bool)
        self.files = files or []
        if files:
            self.arrays = [torch.from_file(str(path), shared=True, size=size * _numel(shape), dtype=dtype)
                           .view(size, *shape) for path, shape, dtype in zip(files, self.shapes, self.dtypes)]
        else:
            # untouched pages cost nothing: memory grows as rows are filled
            self.arrays = [torch.empty((size, *shape), dtype=dtype) for shape, dtype in zip(self.shapes, self.dtypes)]

    def fits(self, features: Sequence[torch.Tensor]) -> bool:
        return (len(features) == len(self.arrays)
                and all(tuple(f.shape[1:]) == s and f.dtype == d for f, s, d in zip(features, self.shapes, self.dtypes)))

    def get(self, rows: torch.Tensor, device: torch.device) -> Optional[tuple]:
        if not bool(self.filled[rows].all()):
            return None
        return tuple(a[rows].to(device, non_blocking=True) for a in self.arrays)

    def put(self, rows: torch.Tensor, features: Sequence[torch.Tensor]) -> None:
        for array, f in zip(self.arrays, features):
            array[rows] = f.detach().to("cpu")
        self.filled[rows] = True

    def close(self) -> None:
        self.arrays = []
        for path in self.files:
            Path(path).unlink(missing_ok=True)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


class FeatureCache:
    """Frozen image features per (stage, sample position); see the module docstring.

    Args:
        sizes: items per stage, e.g. ``{"train": len(train_set), "val": len(val_set)}``.
        folder: where memory-mapped files go when a stage does not fit in memory (a folder of its own is
            made inside it, and removed by :meth:`close`).
        memory_budget: bytes the cache may hold in memory (default :data:`MEMORY_FRACTION` of
            :func:`memory_available` now).
    """

    def __init__(self, sizes: dict, folder, memory_budget: Optional[int] = None):
        self.sizes = {k: int(v) for k, v in sizes.items()}
        self.folder = Path(folder)
        self.memory_budget = int(MEMORY_FRACTION * memory_available()) if memory_budget is None else int(memory_budget)
        self.memory_bytes = 0
        self.disk_bytes = 0
        self.hits = 0
        self.misses = 0
        self._stores: dict = {}
        self._off: set = set()  # stages whose features could not be kept
        self._run_dir: Optional[Path] = None

    def __repr__(self) -> str:
        return (f"FeatureCache({', '.join(f'{k}: {v}' for k, v in self.sizes.items())} items; "
                f"{_gb(self.memory_bytes)} in memory, {_gb(self.disk_bytes)} on disk)")

    def features(self, stage: str, samples: torch.Tensor, compute: Callable[[], Optional[tuple]],
                 device) -> Optional[tuple]:
        """The features of the batch whose items are ``samples`` (positions in the stage's set), on ``device``:
        the stored rows when every item has them, else ``compute()`` (the frozen encoder on the whole batch),
        stored. ``None`` when ``compute`` returns ``None`` (nothing frozen to cache)."""
        rows = samples.detach().to("cpu", torch.long)
        store = self._stores.get(stage)
        if store is not None:
            found = store.get(rows, torch.device(device))
            if found is not None:
                self.hits += len(rows)
                return found
        with torch.no_grad():
            features = compute()
        if features is None:
            return None
        self.misses += len(rows)
        if stage in self._off:
            return features
        if store is None:
            store = self._open(stage, features)
            if store is None:
                return features
        if not store.fits(features):
            log.warning("feature cache (%s): the frozen encoder's outputs changed shape or dtype during training; "
                        "caching stops for this stage", stage)
            self._drop(stage)
            return features
        store.put(rows, features)
        return features

    def _open(self, stage: str, features: Sequence[torch.Tensor]) -> Optional[_StageStore]:
        size = self.sizes.get(stage)
        if size is None:
            raise KeyError(f"feature cache: unknown stage {stage!r}; known: {', '.join(self.sizes)}")
        per_item = sum(_numel(f.shape[1:]) * f.element_size() for f in features)
        total = per_item * size
        what = (f"{size} images x {per_item / 2**20:.2f} MB = {_gb(total)} "
                f"({len(features)} tensors, {', '.join(sorted({str(f.dtype).replace('torch.', '') for f in features}))})")
        if self.memory_bytes + total <= self.memory_budget:
            store = _StageStore(stage, size, features)
            self.memory_bytes += total
            log.info("feature cache (%s): %s in memory", stage, what)
        else:
            files = self._reserve(stage, features, size, total)
            if files is None:
                self._off.add(stage)
                return None
            store = _StageStore(stage, size, features, files)
            self.disk_bytes += total
            log.info("feature cache (%s): %s in a memory-mapped file in %s (over the memory budget of %s)",
                     stage, what, self._run_dir, _gb(self.memory_budget))
        self._stores[stage] = store
        return store

    def _reserve(self, stage: str, features, size: int, total: int) -> Optional[list]:
        """Files with their whole size reserved on disk, or ``None`` (with a warning) when that fails."""
        from vlsm.utils import make_temp_dir

        files = []
        try:
            if self._run_dir is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._run_dir = make_temp_dir(self.folder, "run-")
            free = shutil.disk_usage(self._run_dir).free
            if free < total:
                raise OSError(28, f"{_gb(free)} free, {_gb(total)} needed")
            for i, f in enumerate(features):
                path = self._run_dir / f"{stage}-{i}.bin"
                files.append(path)
                nbytes = size * _numel(f.shape[1:]) * f.element_size()
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    if hasattr(os, "posix_fallocate"):
                        os.posix_fallocate(fd, 0, max(nbytes, 1))
                    else:  # pragma: no cover - not Linux
                        os.ftruncate(fd, max(nbytes, 1))
                finally:
                    os.close(fd)
            return files
        except OSError as err:
            for path in files:
                Path(path).unlink(missing_ok=True)
            log.warning("feature cache (%s): the features (%s) fit neither in memory (budget %s) nor in %s (%s); "
                        "the frozen encoder runs every epoch. Free some space or choose another folder (--cache-dir, "
                        "data.cache_dir or $VLSM_CACHE_DIR)", stage, _gb(total), _gb(self.memory_budget),
                        self._run_dir or self.folder, getattr(err, "strerror", None) or err)
            return None

    def _drop(self, stage: str) -> None:
        store = self._stores.pop(stage, None)
        if store is not None:
            store.close()
        self._off.add(stage)

    def describe(self) -> str:
        """One line: what the cache holds and how often it was used."""
        return (f"{_gb(self.memory_bytes)} in memory, {_gb(self.disk_bytes)} on disk; "
                f"{self.hits} image(s) served from the cache, {self.misses} computed")

    def close(self) -> None:
        """Free the memory and delete the files (the cache may be used again: it starts empty)."""
        for stage in list(self._stores):
            self._stores.pop(stage).close()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
        self._off.clear()
        self.memory_bytes = self.disk_bytes = 0

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
