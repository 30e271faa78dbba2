"""The data of a training run as a ``LightningDataModule``: records, datasets, sampler and loaders.

:meth:`SegmentationDataModule.read` reads every dataset folder once (:func:`vlsm.data.loading.read_dataset`:
the splits trained, validated and evaluated, checked by the rules of ``vlsm data check``, images over the
pixel limit refused, leakage found once), filling the decode-once cache as the check decodes. Training calls
it (and :meth:`setup`) before the run folder is touched, so bad data never leaves a folder behind; what was
left out, and why, is logged as it is found.

The training order and the datasets' draws follow ``(seed, epoch)`` (:class:`EpochShuffleSampler`); the
sampler starts at :attr:`start_epoch` (a resumed run's next epoch) before Lightning creates the loader's
iterator, so the workers' first prefetch already has the right epoch. With the frozen-encoder feature cache
the items carry their position in the whole (pooled) set, the cache's key.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader

from vlsm.config import ExperimentConfig
from vlsm.data import SegmentationDataset
from vlsm.data.decoded import open_decoded_cache
from vlsm.data.loading import LoadedDataset, read_dataset
from vlsm.training.feature_cache import FeatureCache, NumberedConcatDataset, default_folder
from vlsm.training.sampling import EpochShuffleSampler

log = logging.getLogger("vlsm")


class SegmentationDataModule(L.LightningDataModule):
    """The datasets of ``cfg`` for ``model`` (its preprocessing and tokenizer).

    ``feature_cache``: items carry their position (the :class:`FeatureCache` key); ``accelerator``: Lightning's
    (pinned memory on a GPU)."""

    def __init__(self, cfg: ExperimentConfig, model, *, feature_cache: bool = False, accelerator: str = "cpu"):
        super().__init__()
        self.cfg, self.feature_cache = cfg, feature_cache
        self.preprocess, self.tokenizer = model.preprocess, model.get_tokenizer()
        self.pin_memory = accelerator == "gpu"
        #: the epoch the training order starts at (a resumed run's next epoch)
        self.start_epoch = 0
        self.datasets: dict = {}  # path -> LoadedDataset of data.paths, then data.test_paths
        self.subsets: dict = {}  # dataset -> its fold and training subset (data.folds, data.train_fraction)
        self.train_set = self.val_set = None
        self._decoded = None

    # -- records -------------------------------------------------------------------------------
    def read(self) -> "SegmentationDataModule":
        """Read and check every dataset folder once (idempotent); refuses an empty train or val split."""
        if self.datasets:
            return self
        data = self.cfg.data
        if data.cache:  # decode once: the data check fills the cache training reads
            self._decoded = open_decoded_cache(data.cache_dir, self.preprocess.image_size, self.preprocess.interpolation)
        wanted: dict = {}  # path -> its splits read, each folder once
        for path in data.paths:
            wanted.setdefault(path, []).extend([data.train_split, data.val_split, *self.cfg.eval.splits])
        for path in data.test_paths:
            wanted.setdefault(path, []).append(data.test_split)
        for path, splits in wanted.items():
            drop = data.train_split if data.drop_overlap and path in data.paths else False
            self.datasets[path] = self._read(path, list(dict.fromkeys(splits)), drop=drop)
        self._subsets()
        for key in ("train_split", "val_split"):
            if not any(self.records(getattr(data, key))):
                raise ValueError(
                    f"the {getattr(data, key)!r} split has no images in {', '.join(data.paths)}. Set data.{key} in "
                    f"the experiment file to a split that has images, or add a dataset that has one (medvlsm's "
                    f"colondb_polyp and etis_polyp have empty val splits: use them with --test-data)")
        return self

    def _read(self, path: str, splits: list, drop) -> LoadedDataset:
        data = self.cfg.data
        loaded = read_dataset(path, splits, class_name=data.class_name, check=data.check, skip_bad=data.skip_bad,
                              decoded=self._decoded, drop_overlap=drop, max_pixels=data.max_pixels)
        for note in loaded.notes:
            log.warning(note)
        return loaded

    def _subsets(self) -> None:
        """Cross-validation folds of train+val and the nested training subset (data.folds/fold, train_fraction),
        per training dataset (:func:`vlsm.data.subsets.apply_subsets`); logged, and kept for summary.json."""
        from vlsm.data.subsets import apply_subsets

        data = self.cfg.data
        seed = self.cfg.train.seed if data.split_seed is None else data.split_seed
        for path in dict.fromkeys(data.paths):
            facts = apply_subsets(self.datasets[path], data.train_split, data.val_split, folds=data.folds,
                                  fold=data.fold, fraction=data.train_fraction, seed=seed, pattern=data.patient_pattern)
            if facts is not None:
                log.info("data subset: %s", facts.describe())
                self.subsets[facts.dataset] = facts.to_dict()

    def records(self, split: str) -> list:
        """``split``'s records of each training dataset (one list per folder of data.paths)."""
        return [self.datasets[p].splits[split] for p in self.cfg.data.paths]

    def eval_sets(self) -> list[tuple[str, str, list]]:
        """``[(dataset name, split, records)]`` evaluated after training: eval.splits of data.paths, then
        data.test_split of data.test_paths."""
        data = self.cfg.data
        sets = [(self.datasets[p].name, s, self.datasets[p].splits[s]) for p in data.paths for s in self.cfg.eval.splits]
        return sets + [(self.datasets[p].name, data.test_split, self.datasets[p].splits[data.test_split])
                       for p in data.test_paths]

    def leakage(self) -> dict:
        """``{dataset: {"train/test": [names], ...}}``: the images each dataset lists in two splits."""
        return {d.name: d.leakage.to_dict() for d in self.datasets.values() if d.leakage}

    def summary_facts(self) -> dict:
        """What summary.json's ``train`` says about the data."""
        facts = {"dropped_overlap": self.cfg.data.drop_overlap}
        if self.subsets:  # (only for runs with folds or a training fraction: other summaries are as they were)
            facts["data_subsets"] = self.subsets
        return facts

    def describe(self) -> str:
        data = self.cfg.data
        return ", ".join(f"{d.name}: {len(d.splits[data.train_split])} train / {len(d.splits[data.val_split])} val"
                         for p, d in self.datasets.items() if p in data.paths)

    # -- datasets and loaders --------------------------------------------------------------------
    def setup(self, stage: Optional[str] = None) -> None:
        """Build the train and val sets (once), and check that the evaluated sets have their prompts."""
        if self.train_set is not None:
            return
        self.read()
        data, prompt = self.cfg.data, self.cfg.data.resolved_eval_prompt()
        self.train_set = self._concat(self.records(data.train_split), data.prompt, data.augment)
        self.val_set = self._concat(self.records(data.val_split), prompt, False)
        for _, _, records in self.eval_sets():  # (their datasets are built at evaluation)
            if records:
                SegmentationDataset(records, self.preprocess, self.tokenizer, prompt=prompt)

    def _concat(self, per_dataset: list, prompt: str, augment: bool) -> ConcatDataset:
        concat = NumberedConcatDataset if self.feature_cache else ConcatDataset
        return concat([SegmentationDataset(records, self.preprocess, self.tokenizer, prompt=prompt, augment=augment,
                                           seed=self.cfg.train.seed, cache=self._decoded or False)
                       for records in per_dataset if records])

    def _loader_options(self) -> dict:
        workers = self.cfg.train.num_workers
        # own generator: creating a loader's iterator must not draw from the global generator
        return dict(num_workers=workers, persistent_workers=workers > 0, pin_memory=self.pin_memory,
                    generator=torch.Generator().manual_seed(self.cfg.train.seed))

    def train_dataloader(self) -> DataLoader:
        batch_size = self.cfg.train.batch_size
        sampler = EpochShuffleSampler(self.train_set, seed=self.cfg.train.seed, datasets=self.train_set.datasets)
        sampler.set_epoch(self.start_epoch)
        return DataLoader(self.train_set, batch_size=batch_size, sampler=sampler,
                          drop_last=len(self.train_set) > batch_size, **self._loader_options())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.cfg.eval.batch_size, shuffle=False, **self._loader_options())

    def train_batches(self) -> int:
        """Batches per training epoch (the loader's length)."""
        n, batch_size = len(self.train_set), self.cfg.train.batch_size
        return n // batch_size if n > batch_size else math.ceil(n / batch_size)

    def open_feature_cache(self) -> FeatureCache:
        """An empty :class:`FeatureCache` sized for these sets, in ``<data.cache_dir>/features``."""
        return FeatureCache({"train": len(self.train_set), "val": len(self.val_set)},
                            default_folder(self.cfg.data.cache_dir))


__all__ = ["SegmentationDataModule"]
