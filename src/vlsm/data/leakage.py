"""Leakage: images a dataset lists in two of its splits, and cases it lists twice in one split.

An image in both the training and the test split inflates the test score. medvlsm's own split files
have a few (BKAI-IGH: 3 images in two splits and 1 case listed twice in train; ISIC: 3 in train and
test), and the paper's numbers were computed with them, so they are *reported*, never silently fixed:
by name in ``vlsm data check`` (an error with ``--strict``), in the run's log and summary, and left out
of a split only on request (``train --drop-overlap``: :meth:`Leakage.leave_out`).

Two cases are the same image when their image files are the same file (same absolute path), whatever
their record names or masks; a case is listed twice in a split when its image and mask both repeat.

**Patients.** Where image names carry the patient (CheXlocalize's ``patient64541_study1_view1_frontal``,
CAMUS's ``patient0001_2CH_ED``), two different images of one patient in two splits leak too: the model
has seen that patient. :func:`patient_leakage` finds them with a regular expression whose first group is
the patient (:func:`patient_of`): the one ``vlsm data convert`` saved in the dataset's
``vlsm_convert.json`` (:func:`saved_patient_pattern`), or one given to ``vlsm data check --patient-pattern``.
:class:`Leakage` is found once per dataset from every split's records (:func:`find_leakage`), by
:func:`vlsm.data.loading.read_dataset`, the data check and :func:`vlsm.data.load_split`'s warning.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from vlsm.data._util import preview
from vlsm.data.records import Record


def image_id(record: Record) -> str:
    """What makes two records the same image: the absolute path of the image file."""
    return os.path.abspath(record.image_path)


def _case_id(record: Record) -> tuple:
    return image_id(record), None if record.mask_path is None else os.path.abspath(record.mask_path)


@dataclass
class Leakage:
    """What a dataset's splits share, and what a split repeats.

    ``pairs``: (split_a, split_b) -> sorted names (split_a's record names) of the images both list;
    ``duplicates``: split -> sorted names of the cases it lists more than once;
    ``shared``: split -> absolute image paths it shares with another split.
    It is true when two splits share an image (duplicates alone are no leakage).
    """

    dataset: str
    pairs: dict = field(default_factory=dict)
    duplicates: dict = field(default_factory=dict)
    shared: dict = field(default_factory=dict)
    _cases: dict = field(default_factory=dict, repr=False)    # split -> {image id: record}
    _repeats: dict = field(default_factory=dict, repr=False)  # split -> [(first record, times listed)]

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def names(self, split: Optional[str] = None) -> list[str]:
        """Sorted names of the shared images (of ``split``, or of all splits)."""
        splits = [split] if split is not None else list(self.shared)
        return sorted({self._cases[s][i].name for s in splits for i in self.shared.get(s, ())})

    def shared_records(self, a: str, b: str) -> list[Record]:
        """Split ``a``'s records of the images that splits ``a`` and ``b`` both list, sorted by name."""
        common = set(self._cases.get(a, ())) & set(self._cases.get(b, ()))
        return sorted((self._cases[a][i] for i in common), key=lambda r: r.name)

    def repeated(self, split: str) -> list[tuple[Record, int]]:
        """(the case, how many times it is listed) for each case ``split`` lists more than once."""
        return list(self._repeats.get(split, ()))

    def describe(self, split: Optional[str] = None, limit: int = 10, *, duplicates: bool = False) -> str:
        """One line: ``ds: 3 image(s) in both train and test: a, b, c`` (pairs involving ``split``, or all),
        with ``duplicates`` also ``1 case(s) listed more than once in train: d``."""
        parts = [f"{len(names)} image(s) in both {a} and {b}: {preview(names, limit)}"
                 for (a, b), names in self.pairs.items() if split is None or split in (a, b)]
        if duplicates:
            parts += [f"{len(names)} case(s) listed more than once in {s}: {preview(names, limit)}"
                      for s, names in self.duplicates.items() if split is None or s == split]
        if parts:
            return f"{self.dataset}: " + "; ".join(parts)
        return f"{self.dataset}: no image in two splits" + (" and no case listed twice" if duplicates else "")

    def to_dict(self) -> dict:
        """JSON-ready ``{"train/test": [names], ...}`` for a run's summary."""
        return {f"{a}/{b}": list(names) for (a, b), names in self.pairs.items()}

    def leave_out(self, records: list) -> tuple[list, list]:
        """(``records`` without the images found in two splits, the sorted names left out)."""
        shared = set().union(*self.shared.values()) if self.shared else set()
        kept = [r for r in records if image_id(r) not in shared]
        dropped = sorted(r.name for r in records if image_id(r) in shared)
        return kept, dropped


def find_leakage(split_records: dict, dataset: str = "") -> Leakage:
    """:class:`Leakage` of ``{split: [Record]}`` (every split of one dataset, to see all it shares)."""
    leak = Leakage(dataset=dataset)
    ids = {s: {image_id(r): r for r in recs} for s, recs in split_records.items()}
    leak._cases = ids
    splits = list(split_records)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            common = set(ids[a]) & set(ids[b])
            if common:
                leak.pairs[(a, b)] = sorted(ids[a][c].name for c in common)
                leak.shared.setdefault(a, set()).update(common)
                leak.shared.setdefault(b, set()).update(common)
    for s, recs in split_records.items():
        times = Counter(_case_id(r) for r in recs)
        first = {}
        for r in recs:
            first.setdefault(_case_id(r), r)
        repeats = sorted(((first[c], n) for c, n in times.items() if n > 1), key=lambda rn: rn[0].name)
        if repeats:
            leak._repeats[s] = repeats
            leak.duplicates[s] = sorted({r.name for r, _n in repeats})
    return leak


def patient_of(pattern: str, name: str) -> Optional[str]:
    """The patient in the image name ``name`` by ``pattern`` (its first group, else the whole match; searched in the
    file name), None if it does not match. A folder in ``name`` stays part of the patient (``testing/patient0001`` is
    not ``patient0001``: CAMUS numbers its 2019 training and testing patients from 1 each)."""
    folder, _sep, base = name.replace("\\", "/").rpartition("/")
    m = re.search(pattern, base)
    if m is None:
        return None
    found = m.group(1) if m.groups() else m.group(0)
    return f"{folder}/{found}" if folder else found


def saved_patient_pattern(root) -> Optional[str]:
    """The patient pattern ``vlsm data convert`` saved for the dataset at ``root`` (None when there is none)."""
    path = Path(root) / "vlsm_convert.json"
    try:
        pattern = json.loads(path.read_text(encoding="utf-8")).get("patient_pattern") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return pattern if isinstance(pattern, str) and pattern else None


@dataclass
class PatientLeakage:
    """Patients with images in two splits: ``pairs`` (split_a, split_b) -> sorted patients; ``unmatched``: image
    names the pattern finds no patient in."""

    pattern: str
    pairs: dict = field(default_factory=dict)
    unmatched: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def patients(self) -> list[str]:
        return sorted({p for names in self.pairs.values() for p in names})


def patient_leakage(split_records: dict, pattern: str, images_root=None) -> PatientLeakage:
    """:class:`PatientLeakage` of ``{split: [Record]}``: the patient of each image is ``pattern``'s first group in its
    name (the path below ``images_root`` without its extension, when the image lies there)."""
    try:
        re.compile(pattern)
    except re.error as err:
        raise ValueError(f"--patient-pattern {pattern!r} is not a regular expression ({err})") from None
    found = PatientLeakage(pattern)
    per_split: dict = {}
    for split, records in split_records.items():
        for r in records:
            name = image_name(r, images_root)
            patient = patient_of(pattern, name)
            if patient is None:
                found.unmatched.append(name)
            else:
                per_split.setdefault(split, set()).add(patient)
    splits = list(per_split)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            common = per_split[a] & per_split[b]
            if common:
                found.pairs[(a, b)] = sorted(common)
    found.unmatched = sorted(set(found.unmatched))
    return found


def image_name(record: Record, images_root=None) -> str:
    """A record's image name as patient patterns read it: its path below ``images_root`` without the extension
    (``testing/patient0001_2CH_ED``), else its file name's stem."""
    from vlsm.data._util import file_stem

    path = Path(record.image_path)
    if images_root is not None:
        try:
            return str(path.relative_to(images_root).with_name(file_stem(path))).replace(os.sep, "/")
        except ValueError:
            pass
    return file_stem(path)


def split_overlaps(path, *, class_name: Optional[str] = None, seed: int = 0) -> Leakage:
    """The :class:`Leakage` of the dataset folder ``path`` (reads only its split lists).
    :func:`vlsm.data.loading.read_dataset` returns it with the records it reads."""
    from vlsm.data.listing import list_dataset

    listing = list_dataset(path, class_name=class_name, seed=seed)
    return find_leakage(listing.splits, listing.name or Path(path).name)


__all__ = ["Leakage", "find_leakage", "split_overlaps", "image_id", "image_name", "PatientLeakage", "patient_leakage",
           "patient_of", "saved_patient_pattern"]
