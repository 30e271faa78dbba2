"""Leakage: images listed in two splits of one dataset.

An image in both the training and the test split inflates the test score. medvlsm's own split files
have a few (BKAI-IGH: 3 images in two splits; ISIC: 3 in train and test), and the paper's numbers
were computed with them, so they are *reported*, never silently fixed: by name in ``vlsm data check``
(an error with ``--strict``), in the run's log and summary, and left out of a split only on request
(``train --drop-overlap``: :func:`drop_overlapping`).

Two cases are the same image when their image files are the same file (same absolute path), whatever
their record names or masks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from vlsm.data._util import preview
from vlsm.data.records import Record


def _image_id(record: Record) -> str:
    return os.path.abspath(record.image_path)


@dataclass
class Leakage:
    """The images a dataset's splits share. ``pairs``: (split_a, split_b) -> record names in both (the
    names of split_a's records); ``shared``: split -> absolute image paths it shares with another split."""

    dataset: str
    pairs: dict = field(default_factory=dict)
    shared: dict = field(default_factory=dict)
    _names: dict = field(default_factory=dict, repr=False)  # split -> {image id: record name}

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def names(self, split: Optional[str] = None) -> list[str]:
        """Sorted names of the shared images (of ``split``, or of all splits)."""
        splits = [split] if split is not None else list(self.shared)
        return sorted({self._names[s][i] for s in splits for i in self.shared.get(s, ())})

    def describe(self, split: Optional[str] = None, limit: int = 10) -> str:
        """One line: ``3 image(s) in both train and test: a, b, c`` (pairs involving ``split``, or all)."""
        parts = [f"{len(names)} image(s) in both {a} and {b}: {preview(names, limit)}"
                 for (a, b), names in self.pairs.items() if split is None or split in (a, b)]
        return f"{self.dataset}: " + "; ".join(parts) if parts else f"{self.dataset}: no image in two splits"

    def to_dict(self) -> dict:
        """JSON-ready ``{"train/test": [names], ...}`` for a run's summary."""
        return {f"{a}/{b}": list(names) for (a, b), names in self.pairs.items()}


def find_leakage(split_records: dict, dataset: str = "") -> Leakage:
    """:class:`Leakage` of ``{split: [Record]}`` (any records, e.g. of several splits of one dataset)."""
    leak = Leakage(dataset=dataset)
    ids = {s: {_image_id(r): r.name for r in recs} for s, recs in split_records.items()}
    leak._names = ids
    splits = list(split_records)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            common = set(ids[a]) & set(ids[b])
            if common:
                leak.pairs[(a, b)] = sorted(ids[a][c] for c in common)
                leak.shared.setdefault(a, set()).update(common)
                leak.shared.setdefault(b, set()).update(common)
    return leak


def read_all_splits(path, class_name: Optional[str] = None, seed: int = 0) -> dict:
    """{split: records} of every split of a dataset folder that can be read (files are not opened)."""
    from vlsm.data.folder import folder_pairs, folder_record, folder_splits
    from vlsm.data.layout import detect_layout
    from vlsm.data.medvlsm import ANNS_DIR, DatasetLayoutError, available_splits, read_anns, read_medvlsm_split

    root = Path(path)
    out = {}
    if detect_layout(root) == "medvlsm":
        entries = {}
        for s in available_splits(root / ANNS_DIR):
            try:
                entries[s] = read_anns(root / ANNS_DIR, s)
            except (DatasetLayoutError, OSError):
                continue  # a broken split file is reported by the data check
        return {s: read_medvlsm_split(root, s, check_files=False, warn_overlaps=False, all_entries=entries)
                for s in entries}
    try:
        pairs = folder_pairs(root, require_masks=False)
        lists = folder_splits(root, seed=seed, stems=[s for s, _i, _m in pairs])
    except (DatasetLayoutError, OSError):
        return out
    by_stem = {s: (i, m) for s, i, m in pairs}
    return {s: [folder_record(root, n, *by_stem[n], class_name=class_name) for n in names if n in by_stem]
            for s, names in lists.items()}


def split_overlaps(path, *, class_name: Optional[str] = None, seed: int = 0) -> Leakage:
    """The images that two splits of the dataset folder ``path`` share (reads only the split lists)."""
    return find_leakage(read_all_splits(path, class_name, seed), dataset=Path(path).resolve().name)


def drop_overlapping(records: list, leakage: Leakage) -> tuple[list, list]:
    """(``records`` without the images ``leakage`` found in two splits, the names left out)."""
    shared = set().union(*leakage.shared.values()) if leakage.shared else set()
    kept = [r for r in records if _image_id(r) not in shared]
    dropped = sorted(r.name for r in records if _image_id(r) in shared)
    return kept, dropped


__all__ = ["Leakage", "find_leakage", "split_overlaps", "drop_overlapping", "read_all_splits"]
