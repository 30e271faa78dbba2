"""Every split of one dataset folder, listed once: each split's records (no image opened) and what
listing them found wrong.

:func:`list_dataset` reads the split files (medvlsm layout) or the folder and its split file (plain
layout) one time; the data check (:func:`vlsm.data.check.check_listing`), the leakage between splits
(:func:`vlsm.data.leakage.find_leakage`) and :func:`vlsm.data.loading.read_dataset` all work from it.
Nothing raises for a broken split file here: it is kept in :attr:`Listing.failed`, reported by the
check as a layout problem, and raised by :meth:`Listing.records` as :func:`vlsm.data.load_split` would.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from vlsm.data._util import preview
from vlsm.data.folder import folder_pairs, folder_record, folder_splits, missing_masks, split_errors
from vlsm.data.issues import issue
from vlsm.data.layout import detect_layout
from vlsm.data.medvlsm import (
    ANNS_DIR,
    IMAGES_DIR,
    available_splits,
    medvlsm_records,
    missing_files,
    read_all_anns,
    split_not_found,
)

_FOLDER = "*"  # Listing.failed's key for a plain folder that cannot be read as a whole


@dataclass
class Listing:
    """One dataset folder as its split lists describe it."""

    root: Path
    layout: str
    splits: dict = field(default_factory=dict)        # split -> [Record] of every split that could be read
    available: Optional[list] = None                  # the folder's split names (None: the folder is unreadable)
    failed: dict = field(default_factory=dict)        # split (or "*": the whole folder) -> why it cannot be read
    issues: list = field(default_factory=list)        # [Issue] of the whole dataset (the data check's errors)
    split_issues: dict = field(default_factory=dict)  # split -> [Issue] of names its list gives but no file has
    masks_missing: list = field(default_factory=list)  # plain folders: images without a mask (file names)
    _lists: dict = field(default_factory=dict, repr=False)  # plain folders: split -> the names it lists
    _stems: set = field(default_factory=set, repr=False)    # plain folders: the names images/ has

    @property
    def name(self) -> str:
        """The dataset's name: its folder's name."""
        return self.root.resolve().name

    def split_names(self, splits: Optional[Iterable[str]] = None) -> list[str]:
        """``splits`` (all splits when None or empty); raises ``FileNotFoundError`` for one the folder lacks."""
        if self.available is None:
            return []
        if not splits:
            return list(self.available)
        wanted = list(splits)
        unknown = [s for s in wanted if s not in self.available]
        if unknown:
            where = f"in {self.root / ANNS_DIR}" if self.layout == "medvlsm" else f"for {self.root}"
            raise FileNotFoundError(f"split(s) {', '.join(unknown)} not found {where}; available: "
                                    f"{', '.join(self.available) or 'none'}")
        return wanted

    def records(self, split: str) -> list:
        """The records of ``split``, refused as :func:`vlsm.data.load_split` refuses them: a missing
        split, an unreadable split file, files the split names that do not exist, images without masks."""
        if self.layout == "medvlsm":
            if split not in (self.available or ()):
                raise split_not_found(self.root / ANNS_DIR, split)
            if self.failed:
                raise self.failed.get(split) or next(iter(self.failed.values()))
            error = missing_files(self.root, split, self.splits[split])
        else:
            if _FOLDER in self.failed:
                raise self.failed[_FOLDER]
            if self.masks_missing:
                raise missing_masks(self.root, self.masks_missing)
            error = split_errors(self.root, split, self._lists, self._stems)
        if error is not None:
            raise error
        return list(self.splits[split])

    def unlisted_images(self) -> list[str]:
        """File names in ``images/`` of a medvlsm-layout dataset that no split lists."""
        img_dir = self.root / IMAGES_DIR
        if self.layout != "medvlsm" or not img_dir.is_dir():
            return []
        listed = {r.image_path.relative_to(img_dir).as_posix() for recs in self.splits.values() for r in recs}
        return sorted(p.name for p in img_dir.iterdir()
                      if p.is_file() and p.name not in listed and not p.name.startswith("."))

    def unlisted_note(self) -> list[str]:
        extra = self.unlisted_images()
        return [f"{len(extra)} file(s) in images/ are in no split: {preview(extra, 3)}"] if extra else []


def list_dataset(path, *, class_name: Optional[str] = None, seed: int = 0) -> Listing:
    """The :class:`Listing` of the dataset folder ``path`` (layout detected). ``class_name`` is a plain
    folder's prompt p1, ``seed`` its hash split's (see :mod:`vlsm.data.folder`)."""
    root = Path(path)
    listing = Listing(root=root, layout=detect_layout(root))
    if listing.layout == "medvlsm":
        _list_medvlsm(listing)
    else:
        _list_folder(listing, class_name, seed)
    return listing


def _list_medvlsm(listing: Listing) -> None:
    anns = listing.root / ANNS_DIR
    listing.available = available_splits(anns)
    entries = read_all_anns(anns, failed=listing.failed)
    listing.issues += [issue("layout", anns / f"{s}.json", str(err)) for s, err in listing.failed.items()]
    listing.splits = medvlsm_records(listing.root, entries)


def _list_folder(listing: Listing, class_name: Optional[str], seed: int) -> None:
    root = listing.root
    try:
        pairs = folder_pairs(root, require_masks=False)
    except ValueError as err:  # two images with one name, a mask matching several images
        listing.failed[_FOLDER] = err
        listing.issues.append(issue("layout", root, str(err)))
        return
    by_stem = {s: (i, m) for s, i, m in pairs}
    listing._stems = set(by_stem)
    listing.masks_missing = [i.name for _s, i, m in pairs if m is None]
    listing.issues += [issue("missing-mask", i, "this image has no mask in masks/") for _s, i, m in pairs if m is None]
    listing._lists = folder_splits(root, seed=seed, stems=list(by_stem))
    listing.available = list(listing._lists)
    for s, names in listing._lists.items():
        listing.splits[s] = [folder_record(root, n, *by_stem[n], class_name=class_name) for n in names if n in by_stem]
        unknown = [n for n in names if n not in by_stem]
        if unknown:
            listing.split_issues[s] = [issue("missing-image", root / IMAGES_DIR / n,
                                             f"listed in split {s} but not in images/") for n in unknown]


__all__ = ["Listing", "list_dataset"]
