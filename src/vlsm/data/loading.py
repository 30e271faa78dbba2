"""Records for training and evaluation: a dataset folder's splits, read once, checked once, with the
images its splits share (leakage) found once.

:func:`read_dataset` is the one way in: it lists the folder's splits (:mod:`vlsm.data.listing`),
refuses images over a pixel limit from their headers, checks the requested splits by the rules of
``vlsm data check`` (filling the decoded-image cache as it decodes), finds the leakage between all
splits, and says in ``notes`` what it left out and why. :func:`load_records` is the same per split.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

from vlsm.data.check import CheckReport, check_listing
from vlsm.data.images import check_pixel_limit
from vlsm.data.leakage import Leakage, find_leakage
from vlsm.data.listing import Listing, list_dataset
from vlsm.data.records import Record

log = logging.getLogger("vlsm")


def dataset_name(path) -> str:
    """A dataset's name is its folder's name (``data/kvasir_polyp`` -> ``kvasir_polyp``)."""
    return Path(path).resolve().name


@dataclass
class LoadedDataset:
    """What :func:`read_dataset` read from one dataset folder."""

    name: str                                    # the folder's name
    path: Path                                   # the folder, as given
    splits: dict                                 # split -> [Record], in the order asked for
    leakage: Leakage                             # images two of the folder's splits share (all its splits)
    notes: list = field(default_factory=list)    # what was left out, and leakage used as listed (for the log)
    report: Optional[CheckReport] = None         # the data check's report (with check=True)


def read_dataset(path, splits: Union[str, Iterable[str]], *, class_name: Optional[str] = None, check: bool = True,
                 skip_bad: bool = False, decoded=None, drop_overlap: Union[bool, str, Iterable[str]] = False,
                 max_pixels: Optional[int] = 0) -> LoadedDataset:
    """Read the ``splits`` of the dataset folder ``path`` (one split name or several).

    * Each split is refused as :func:`vlsm.data.load_split` refuses it (a missing split or file, an
      unreadable split file).
    * ``max_pixels``: an image with more pixels is refused by name from its header before anything is
      decoded (``ValueError`` naming ``--max-pixels``); None applies Pillow's decompression-bomb limit,
      0 (the default) skips this.
    * ``check``: the requested splits are checked once by the rules of ``vlsm data check``; a failure
      raises ``ValueError`` with the report, unless ``skip_bad``: then those cases are left out (noted).
      ``decoded`` (a :class:`~vlsm.data.decoded.DecodedCache` of the model's image size) is filled as the
      check decodes, so training does not decode the files again.
    * Leakage is found once over all the folder's splits. Images a requested split shares with another
      split are noted and used, or left out of the splits ``drop_overlap`` names (a split name, several,
      or True for every split read; training passes its training split).
    """
    wanted = [splits] if isinstance(splits, str) else list(dict.fromkeys(splits))
    listing = list_dataset(path, class_name=class_name)
    records = {s: listing.records(s) for s in wanted}
    if max_pixels != 0:
        check_pixel_limit([r.image_path for recs in records.values() for r in recs], max_pixels)
    leakage = find_leakage(listing.splits, listing.name)
    loaded = LoadedDataset(name=listing.name, path=Path(path), splits=records, leakage=leakage)
    if check:
        loaded.report = _checked(loaded, listing, skip_bad, decoded)
    drop = set(wanted if drop_overlap is True else [drop_overlap] if isinstance(drop_overlap, str)
               else drop_overlap or ())
    for split in wanted:
        if not leakage.names(split):
            continue
        if split in drop:
            loaded.splits[split], dropped = leakage.leave_out(loaded.splits[split])
            loaded.notes.append(f"--drop-overlap: leaving out {len(dropped)} {split} image(s) of {path} that are "
                                f"also in another split: {', '.join(dropped)}")
        else:
            loaded.notes.append(f"leakage: {leakage.describe(split)}; they are used as listed in {split} "
                                f"(--drop-overlap leaves them out of the training split)")
    return loaded


def _checked(loaded: LoadedDataset, listing: Listing, skip_bad: bool, decoded) -> CheckReport:
    """Check the splits read (once); leave out the bad cases with ``skip_bad``, else refuse them."""
    report = check_listing(listing, list(loaded.splits), leakage=loaded.leakage, decoded=decoded)
    if report.ok:
        return report
    if not skip_bad:
        raise ValueError(f"dataset {loaded.path} failed its check:\n{report.format()}\n"
                         f"Fix the files listed, or pass --skip-bad to leave them out of this run.")
    bad = report.bad_files()

    def usable(r: Record) -> bool:
        return Path(r.image_path).resolve() not in bad and (r.mask_path is None or Path(r.mask_path).resolve() not in bad)

    for split, records in loaded.splits.items():
        kept = [r for r in records if usable(r)]
        if len(kept) < len(records):
            loaded.notes.append(f"--skip-bad: leaving out {len(records) - len(kept)} of {len(records)} {split} images "
                                f"of {loaded.path}: {sorted(r.name for r in records if not usable(r))}")
        loaded.splits[split] = kept
    return report


def load_records(paths, split: str, class_name: Optional[str] = None, *, check: bool = True,
                 skip_bad: bool = False, notes: Optional[list] = None, decoded=None,
                 drop_overlap: bool = False) -> list[tuple[str, list[Record]]]:
    """``[(dataset name, records)]``: :func:`read_dataset` of ``split`` of each folder in ``paths``; its notes
    are logged as warnings and appended to ``notes``."""
    per_dataset = []
    for path in paths:
        loaded = read_dataset(path, split, class_name=class_name, check=check, skip_bad=skip_bad, decoded=decoded,
                              drop_overlap=drop_overlap)
        for note in loaded.notes:
            log.warning(note)
        if notes is not None:
            notes += loaded.notes
        per_dataset.append((loaded.name, loaded.splits[split]))
    return per_dataset


__all__ = ["dataset_name", "read_dataset", "LoadedDataset", "load_records"]
