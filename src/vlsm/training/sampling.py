"""Randomness that depends only on (seed, epoch), so that a resumed run draws what the uninterrupted
run drew: the training order, and the global generators (dropout) at the start of every epoch.

The datasets' own draws (prompt choice, augmentation) are seeded by (seed, epoch, index) in
:class:`vlsm.data.SegmentationDataset`; :class:`EpochShuffleSampler` moves them to the sampler's
epoch together with the order, *before* a DataLoader's workers prefetch the first batches.
"""
from __future__ import annotations

import random
from typing import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import RandomSampler


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 32-bit seed for ``(seed, epoch, stream)`` (independent streams, no arithmetic collisions)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(1)[0])


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CPU and CUDA) for ``epoch``."""
    s = epoch_seed(seed, epoch, 1)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


class EpochShuffleSampler(RandomSampler):
    """A random order of the dataset drawn from ``(seed, epoch)`` alone.

    ``set_epoch`` (Lightning calls it before every epoch) also sets the epoch of ``datasets`` (those
    with ``set_epoch``), so prompt and augmentation draws follow. A ``RandomSampler`` subclass, so
    that Lightning still sees a shuffled loader (under DDP it substitutes its DistributedSampler)."""

    def __init__(self, data_source, *, seed: int, datasets: Iterable = ()):
        super().__init__(data_source)
        self.seed = int(seed)
        self.datasets = [d for d in datasets if hasattr(d, "set_epoch")]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for dataset in self.datasets:
            dataset.set_epoch(self.epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()

    def __len__(self) -> int:
        return len(self.data_source)


__all__ = ["EpochShuffleSampler", "epoch_seed", "seed_epoch"]
