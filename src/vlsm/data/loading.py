"""Records for training and evaluation: one split of each dataset folder, checked before use."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from vlsm.data.records import Record

log = logging.getLogger("vlsm")


def dataset_name(path) -> str:
    """A dataset's name is its folder's name (``data/kvasir_polyp`` -> ``kvasir_polyp``)."""
    return Path(path).resolve().name


def load_records(paths, split: str, class_name: Optional[str] = None, *, check: bool = True,
                 skip_bad: bool = False, notes: Optional[list] = None, decoded=None,
                 drop_overlap: bool = False) -> list[tuple[str, list[Record]]]:
    """``[(dataset name, records)]``: the records of ``split`` of each dataset folder in ``paths``.

    With ``check``, each folder's split is validated by the rules of ``vlsm data check``; a failure
    raises ``ValueError`` listing the bad files, unless ``skip_bad``: then those cases are left out
    and a sentence saying which is appended to ``notes`` (the caller logs it into the run's log).
    With ``decoded`` (a :class:`~vlsm.data.decoded.DecodedCache` of the model's image size), the check
    fills the decoded-image cache as it decodes, so training does not decode the files again.
    Images that ``split`` shares with another split of the same dataset (leakage) are reported in
    ``notes``; with ``drop_overlap`` they are also left out of ``split``.
    """
    from vlsm.data.layout import load_split
    from vlsm.data.leakage import drop_overlapping, split_overlaps

    per_dataset = []
    notes = notes if notes is not None else []
    for path in paths:
        records = load_split(path, split, class_name=class_name)
        if check:
            records = _checked(path, split, records, skip_bad, notes, decoded)
        overlaps = split_overlaps(path, class_name=class_name)
        if overlaps.names(split):
            if drop_overlap:
                records, dropped = drop_overlapping(records, overlaps)
                note = (f"--drop-overlap: leaving out {len(dropped)} {split} image(s) of {path} that are also in "
                        f"another split: {', '.join(dropped)}")
            else:
                note = (f"leakage: {overlaps.describe(split)}; they are used as listed (pass --drop-overlap "
                        f"to leave them out of {split})")
            log.warning(note)
            notes.append(note)
        per_dataset.append((dataset_name(path), records))
    return per_dataset


def _checked(path, split: str, records: list[Record], skip_bad: bool, notes: list, decoded=None) -> list[Record]:
    from vlsm.data.check import check_dataset

    report = check_dataset(path, splits=[split], decoded=decoded)
    if report.ok:
        return records
    if not skip_bad:
        raise ValueError(f"dataset {path} failed its check:\n{report.format()}\n"
                         f"Fix the files listed, or pass --skip-bad to leave them out of this run.")
    bad = {str(Path(p).resolve()) for p in report.bad_files()}
    kept = [r for r in records if str(Path(r.image_path).resolve()) not in bad
            and (r.mask_path is None or str(Path(r.mask_path).resolve()) not in bad)]
    note = (f"--skip-bad: leaving out {len(records) - len(kept)} of {len(records)} {split} images of {path}: "
            f"{sorted(r.name for r in records if r not in kept)}")
    log.warning(note)
    notes.append(note)
    return kept


__all__ = ["dataset_name", "load_records"]
