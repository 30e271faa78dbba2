"""Cross-validation folds and nested training subsets of a dataset's records (``data.folds``/``data.fold`` and
``data.train_fraction``).

**Units.** Folds and subsets move whole *units*: a patient where the image names carry one (the regular expression
``data.patient_pattern``, else the one ``vlsm data convert`` saved in the dataset's ``vlsm_convert.json``, whose
first group is the patient: :func:`vlsm.data.leakage.patient_of`), else each image. So no patient is in two folds,
and a subset holds all of a patient's images or none.

**Seeded and stable.** A unit's place is ``sha256(f"{seed}/{unit}")``, as :func:`vlsm.data._util.stable_split`
places images: the same records, K and seed give the same folds and subsets on every machine, whatever order the
split files list them in; another seed gives others.

* :func:`assign_folds`: the units by decreasing size (ties in hash order), each to the fold that holds the fewest
  images so far (ties: the lowest fold), so folds differ by at most one image when every unit is one image (as
  scikit-learn's ``GroupKFold`` balances groups, seeded as nnU-Net's ``KFold(shuffle=True, random_state=...)``).
  :func:`cross_validation` pools train and val (an image listed in both counts once) and validates on one fold.
* :func:`training_subset`: the units in hash order, taken until ``ceil(fraction x images)`` images are in: a
  prefix of one order, so the 10% subset lies inside the 25% one, which lies inside the 50% one (nested).

Records keep their listed order within a fold or subset.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from vlsm.data.leakage import image_id, image_name, patient_of, saved_patient_pattern
from vlsm.data.medvlsm import IMAGES_DIR


def _place(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{int(seed)}/{key}".encode("utf-8")).digest()[:8], "big")


def record_units(records: Sequence, pattern: Optional[str] = None, images_root=None) -> tuple[list[str], int]:
    """The unit of each record (its patient by ``pattern``, else its image name below ``images_root``), and how
    many image names the pattern found no patient in (those images are units of their own)."""
    units, unmatched = [], 0
    for r in records:
        name = image_name(r, images_root)
        patient = patient_of(pattern, name) if pattern else None
        unmatched += bool(pattern) and patient is None
        units.append(f"patient:{patient}" if patient is not None else f"image:{name}")
    return units, unmatched


def assign_folds(sizes: dict, folds: int, seed: int) -> dict:
    """``{unit: fold}`` of ``sizes`` (``{unit: images}``) into ``folds`` folds (see the module docstring)."""
    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    load = [0] * folds
    assignment = {}
    for unit in sorted(sizes, key=lambda u: (-sizes[u], _place(seed, u))):
        fold = min(range(folds), key=lambda k: (load[k], k))
        assignment[unit] = fold
        load[fold] += sizes[unit]
    return assignment


def _pooled(train: Sequence, val: Sequence) -> list:
    """train then val, each image once (an image both list is one case)."""
    seen, pooled = set(), []
    for r in [*train, *val]:
        if image_id(r) not in seen:
            seen.add(image_id(r))
            pooled.append(r)
    return pooled


def cross_validation(train: Sequence, val: Sequence, *, folds: int, fold: int, seed: int,
                     pattern: Optional[str] = None, images_root=None) -> tuple[list, list, list]:
    """``(train, val, fold of each pooled record)``: train+val pooled and split into ``folds`` folds by unit;
    fold ``fold`` is validated on, the others trained on."""
    if not 0 <= fold < folds:
        raise ValueError(f"--fold must be 0..{folds - 1} (the folds count from 0), got {fold}")
    pooled = _pooled(train, val)
    units, _ = record_units(pooled, pattern, images_root)
    sizes: dict = {}
    for u in units:
        sizes[u] = sizes.get(u, 0) + 1
    if len(sizes) < folds:
        raise ValueError(f"--folds {folds}: train+val holds only {len(sizes)} patient(s)/image(s); use at most "
                         f"{len(sizes)} folds")
    assignment = assign_folds(sizes, folds, seed)
    of = [assignment[u] for u in units]
    return ([r for r, k in zip(pooled, of) if k != fold], [r for r, k in zip(pooled, of) if k == fold], of)


def training_subset(records: Sequence, fraction: float, *, seed: int, pattern: Optional[str] = None,
                    images_root=None) -> list:
    """The records of the nested subset of ``fraction`` of ``records`` (all of them for 1; see the module
    docstring): whole units, at least one, in the listed order."""
    if not 0 < fraction <= 1:
        raise ValueError(f"--train-fraction must be above 0 and at most 1, got {fraction}")
    records = list(records)
    if fraction >= 1 or not records:
        return records
    units, _ = record_units(records, pattern, images_root)
    sizes: dict = {}
    for u in units:
        sizes[u] = sizes.get(u, 0) + 1
    target = max(1, math.ceil(round(fraction * len(records), 9)))
    taken, count = set(), 0
    for unit in sorted(sizes, key=lambda u: _place(seed, u)):
        if count >= target:
            break
        taken.add(unit)
        count += sizes[unit]
    return [r for r, u in zip(records, units) if u in taken]


@dataclass
class SubsetFacts:
    """What :func:`apply_subsets` did to one dataset: the log's line and summary.json's record."""

    dataset: str
    seed: int
    pattern: Optional[str]
    folds: Optional[int] = None
    fold: Optional[int] = None
    fraction: float = 1.0
    counts: dict = field(default_factory=dict)  # train/val images after, and those before ("pool", "listed")
    unmatched: int = 0

    def describe(self) -> str:
        parts = []
        if self.folds is not None:
            parts.append(f"fold {self.fold} of {self.folds} of train+val ({self.counts['pool']} images): "
                         f"{self.counts['listed']} train / {self.counts['val']} val")
        if self.fraction < 1:
            parts.append(f"{self.fraction:g} of the training split: {self.counts['train']} of "
                         f"{self.counts['listed']} images")
        by = f"patients by {self.pattern!r}" if self.pattern else "images"
        text = f"{self.dataset}: " + "; ".join(parts) + f" (split seed {self.seed}, whole {by})"
        if self.unmatched:
            text += f"; {self.unmatched} image name(s) hold no patient by that pattern: each is its own"
        return text

    def to_dict(self) -> dict:
        out = {"split_seed": self.seed, "patient_pattern": self.pattern, **self.counts}
        if self.folds is not None:
            out.update(folds=self.folds, fold=self.fold)
        if self.fraction < 1:
            out["train_fraction"] = self.fraction
        return out


def apply_subsets(loaded, train_split: str, val_split: str, *, folds: Optional[int], fold: Optional[int],
                  fraction: float, seed: int, pattern: Optional[str] = None) -> Optional[SubsetFacts]:
    """Replace ``loaded``'s (a :class:`vlsm.data.loading.LoadedDataset`) train and val records by fold ``fold`` of
    ``folds`` (when set), then the training records by their nested ``fraction``; None when neither is asked."""
    if folds is None and fraction >= 1:
        return None
    pattern = pattern or saved_patient_pattern(loaded.path)
    root = Path(loaded.path) / IMAGES_DIR
    train, val = loaded.splits[train_split], loaded.splits[val_split]
    facts = SubsetFacts(loaded.name, seed, pattern, folds, fold, fraction)
    if folds is not None:
        pool = _pooled(train, val)
        train, val, _ = cross_validation(train, val, folds=folds, fold=fold, seed=seed, pattern=pattern,
                                         images_root=root)
        facts.counts["pool"] = len(pool)
    facts.counts["listed"] = len(train)
    train = training_subset(train, fraction, seed=seed, pattern=pattern, images_root=root)
    facts.counts.update(train=len(train), val=len(val))
    facts.unmatched = record_units(_pooled(train, val), pattern, root)[1] if pattern else 0
    loaded.splits[train_split], loaded.splits[val_split] = train, val
    return facts


__all__ = ["SubsetFacts", "apply_subsets", "assign_folds", "cross_validation", "record_units", "training_subset"]
