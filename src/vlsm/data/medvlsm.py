"""Reader for the medvlsm dataset layout (Poudel et al., MIDL 2024)::

    <root>/images/<img_name>
    <root>/masks/<mask_name>
    <root>/anns/<split>.json      one list per split (train, val, test, sometimes testB)

Each entry of a split file is a dict with at least ``img_name`` and ``mask_name`` (paths relative to
``images/`` and ``masks/``) and usually ``prompts`` (``p0``..``p9``, texts or lists of texts).

Record names are the image's file stem. In datasets where one image has several masks (CheXlocalize:
one per finding; CAMUS: one per structure) the mask path without its extension is used instead
(``/`` becomes ``__``), so names stay unique.

Some published split files repeat a case within a split or list it in two splits (BKAI-IGH: 3 cases
in two splits and 1 duplicate; ISIC: 3 cases in train and test). They are read as published — the
paper's numbers were computed on them — and a warning is issued once per dataset.
"""
from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from vlsm.data._util import STANDARD_SPLITS, preview
from vlsm.data.records import Record

ANNS_DIR = "anns"
IMAGES_DIR = "images"
MASKS_DIR = "masks"

_warned_overlaps: set = set()


class DatasetLayoutError(ValueError):
    """A dataset folder or split file that does not have the expected structure."""


def available_splits(anns_dir) -> list[str]:
    """Split names (json file stems) in ``anns_dir``: train, val, test first, then the rest sorted."""
    anns_dir = Path(anns_dir)
    if not anns_dir.is_dir():
        return []
    names = [p.stem for p in anns_dir.glob("*.json") if p.is_file() and not p.name.startswith(".")]
    return [s for s in STANDARD_SPLITS if s in names] + sorted(n for n in names if n not in STANDARD_SPLITS)


def read_anns(anns_dir, split: str) -> list[dict]:
    """The entries of ``anns_dir/<split>.json``, validated (each has ``img_name`` and ``mask_name``)."""
    anns_dir = Path(anns_dir)
    path = anns_dir / f"{split}.json"
    if not path.is_file():
        splits = available_splits(anns_dir)
        if not anns_dir.is_dir():
            raise FileNotFoundError(f"no split files: {anns_dir} does not exist. A medvlsm-layout dataset "
                                    f"has anns/<split>.json beside images/ and masks/")
        raise FileNotFoundError(
            f"split {split!r} not found: {path} does not exist. Available splits: "
            f"{', '.join(splits) if splits else 'none (no .json files in ' + str(anns_dir) + ')'}")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetLayoutError(f"{path} is not valid JSON ({err}); restore it from the dataset's "
                                 f"source or re-run `vlsm data convert`") from err
    if not isinstance(entries, list):
        raise DatasetLayoutError(f"{path} must hold a JSON list of entries, found {type(entries).__name__}")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("img_name"), str) \
                or not isinstance(e.get("mask_name"), str):
            raise DatasetLayoutError(
                f"{path}: entry {i} must be an object with 'img_name' and 'mask_name' texts, got {str(e)[:200]}")
        if "prompts" in e and not isinstance(e["prompts"], dict):
            raise DatasetLayoutError(f"{path}: entry {i} ({e['img_name']}): 'prompts' must be an object "
                                     f"(p0..p9), got {type(e['prompts']).__name__}")
    return entries


def _read_all(anns_dir: Path) -> dict[str, list[dict]]:
    return {s: read_anns(anns_dir, s) for s in available_splits(anns_dir)}


def _uses_mask_names(all_entries: dict[str, list[dict]]) -> bool:
    """True when some image has several different masks (then names come from mask paths)."""
    masks_of: dict[str, set] = {}
    for entries in all_entries.values():
        for e in entries:
            masks_of.setdefault(e["img_name"], set()).add(e["mask_name"])
    return any(len(m) > 1 for m in masks_of.values())


def _record_name(entry: dict, by_mask: bool) -> str:
    if by_mask:
        return str(Path(entry["mask_name"]).with_suffix("")).replace("\\", "/").replace("/", "__")
    return Path(entry["img_name"]).stem


@dataclass
class SplitOverlaps:
    """Cases listed twice in one split file or in two split files of one dataset."""

    dataset: str
    duplicates: dict = field(default_factory=dict)  # split -> [image names listed more than once]
    overlaps: dict = field(default_factory=dict)    # (split_a, split_b) -> [image names in both]

    def __bool__(self) -> bool:
        return bool(self.duplicates) or bool(self.overlaps)

    def describe(self) -> str:
        parts = []
        for split, names in self.duplicates.items():
            parts.append(f"{len(names)} case(s) listed more than once in {split} ({preview(names, 3)})")
        for (a, b), names in self.overlaps.items():
            parts.append(f"{len(names)} case(s) in both {a} and {b} ({preview(names, 3)})")
        return f"{self.dataset}: " + "; ".join(parts) if parts else f"{self.dataset}: no overlaps"


def check_split_overlaps(anns_dir, entries: Optional[dict] = None) -> SplitOverlaps:
    """Find repeated cases within a split (same image and mask) and images shared by two splits.

    Reads only the split files, so it works on annotation folders without images.
    """
    anns_dir = Path(anns_dir)
    all_entries = entries if entries is not None else _read_all(anns_dir)
    name = anns_dir.parent.name if anns_dir.name == ANNS_DIR else anns_dir.name
    result = SplitOverlaps(dataset=name)
    images: dict[str, list[str]] = {}
    for split, es in all_entries.items():
        counts = Counter((e["img_name"], e["mask_name"]) for e in es)
        dup = sorted(img for (img, _m), c in counts.items() if c > 1)
        if dup:
            result.duplicates[split] = dup
        images[split] = sorted({e["img_name"] for e in es})
    splits = list(all_entries)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            common = sorted(set(images[a]) & set(images[b]))
            if common:
                result.overlaps[(a, b)] = common
    return result


def warn_overlaps_once(anns_dir: Path, entries: Optional[dict] = None) -> Optional[SplitOverlaps]:
    """Issue one ``UserWarning`` per dataset (per process) if its split files overlap."""
    key = str(Path(anns_dir).resolve())
    if key in _warned_overlaps:
        return None
    _warned_overlaps.add(key)
    overlaps = check_split_overlaps(anns_dir, entries)
    if overlaps:
        warnings.warn(f"split files overlap: {overlaps.describe()}. They are used as published; "
                      f"results on the affected splits include these cases.", UserWarning, stacklevel=3)
    return overlaps


def is_medvlsm_root(root) -> bool:
    return (Path(root) / ANNS_DIR).is_dir()


def read_medvlsm_split(root, split: str, *, check_files: bool = True, warn_overlaps: bool = True,
                       all_entries: Optional[dict] = None) -> list[Record]:
    """Records of one split of a medvlsm-layout dataset, in the split file's order.

    Raises ``FileNotFoundError`` if the split file is missing (listing the available splits) or,
    with ``check_files``, if images or masks named in it are missing (one error listing them).
    An empty split file gives an empty list. ``all_entries`` ({split: entries}, e.g. only the
    readable split files, as ``vlsm data check`` has them) saves reading every split file again.
    """
    root = Path(root)
    anns_dir = root / ANNS_DIR
    entries = all_entries[split] if all_entries is not None and split in all_entries else read_anns(anns_dir, split)
    all_entries = all_entries if all_entries is not None else _read_all(anns_dir)
    if warn_overlaps:
        warn_overlaps_once(anns_dir, all_entries)
    by_mask = _uses_mask_names(all_entries)
    dataset = root.resolve().name
    records = []
    for e in entries:
        prompts = dict(e.get("prompts") or {})
        records.append(Record(name=_record_name(e, by_mask), image_path=root / IMAGES_DIR / e["img_name"],
                              mask_path=root / MASKS_DIR / e["mask_name"], prompts=prompts, dataset=dataset))
    if check_files:
        missing_img = [str(r.image_path.relative_to(root)) for r in records if not r.image_path.is_file()]
        missing_mask = [str(r.mask_path.relative_to(root)) for r in records if not r.mask_path.is_file()]
        if missing_img or missing_mask:
            parts = []
            if missing_img:
                parts.append(f"{len(missing_img)} image(s): {preview(missing_img)}")
            if missing_mask:
                parts.append(f"{len(missing_mask)} mask(s): {preview(missing_mask)}")
            raise FileNotFoundError(
                f"{root}/anns/{split}.json names files that are missing in {root}: " + "; ".join(parts)
                + ". Put the dataset's images in images/ and masks in masks/ with the names used in the "
                  "split file (`vlsm data convert DATASET RAW_DIR OUT_DIR --anns ...` does this from the "
                  "original download), or fix the split file.")
    return records


__all__ = ["read_medvlsm_split", "check_split_overlaps", "available_splits", "read_anns",
           "SplitOverlaps", "DatasetLayoutError", "is_medvlsm_root"]
