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
paper's numbers were computed on them — and reported (:mod:`vlsm.data.leakage`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from vlsm.data._util import STANDARD_SPLITS, preview
from vlsm.data.records import Record

ANNS_DIR = "anns"
IMAGES_DIR = "images"
MASKS_DIR = "masks"


class DatasetLayoutError(ValueError):
    """A dataset folder or split file that does not have the expected structure."""


def available_splits(anns_dir) -> list[str]:
    """Split names (json file stems) in ``anns_dir``: train, val, test first, then the rest sorted."""
    anns_dir = Path(anns_dir)
    if not anns_dir.is_dir():
        return []
    names = [p.stem for p in anns_dir.glob("*.json") if p.is_file() and not p.name.startswith(".")]
    return [s for s in STANDARD_SPLITS if s in names] + sorted(n for n in names if n not in STANDARD_SPLITS)


def split_not_found(anns_dir, split: str) -> FileNotFoundError:
    """The error for a split that has no split file in ``anns_dir`` (it lists the available ones)."""
    anns_dir = Path(anns_dir)
    if not anns_dir.is_dir():
        return FileNotFoundError(f"no split files: {anns_dir} does not exist. A medvlsm-layout dataset "
                                 f"has anns/<split>.json beside images/ and masks/")
    splits = available_splits(anns_dir)
    return FileNotFoundError(
        f"split {split!r} not found: {anns_dir / f'{split}.json'} does not exist. Available splits: "
        f"{', '.join(splits) if splits else 'none (no .json files in ' + str(anns_dir) + ')'}")


def read_anns(anns_dir, split: str) -> list[dict]:
    """The entries of ``anns_dir/<split>.json``, validated (each has ``img_name`` and ``mask_name``)."""
    anns_dir = Path(anns_dir)
    path = anns_dir / f"{split}.json"
    if not path.is_file():
        raise split_not_found(anns_dir, split)
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


def read_all_anns(anns_dir, failed: Optional[dict] = None) -> dict[str, list[dict]]:
    """{split: entries} of every split file in ``anns_dir``. A file that cannot be read raises, or with
    ``failed`` (a dict) is left out and its error stored there under the split's name."""
    out = {}
    for s in available_splits(anns_dir):
        try:
            out[s] = read_anns(anns_dir, s)
        except (ValueError, OSError) as err:
            if failed is None:
                raise
            failed[s] = err
    return out


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


def medvlsm_records(root, all_entries: dict[str, list[dict]]) -> dict[str, list[Record]]:
    """{split: records in the split file's order} from every split's entries (names need them all)."""
    root = Path(root)
    by_mask = _uses_mask_names(all_entries)
    dataset = root.resolve().name
    return {split: [Record(name=_record_name(e, by_mask), image_path=root / IMAGES_DIR / e["img_name"],
                           mask_path=root / MASKS_DIR / e["mask_name"], prompts=dict(e.get("prompts") or {}),
                           dataset=dataset) for e in entries]
            for split, entries in all_entries.items()}


def missing_files(root, split: str, records: list[Record]) -> Optional[FileNotFoundError]:
    """The error naming the images and masks of ``split`` that do not exist, or None when all do."""
    root = Path(root)
    missing_img = [str(r.image_path.relative_to(root)) for r in records if not r.image_path.is_file()]
    missing_mask = [str(r.mask_path.relative_to(root)) for r in records if not r.mask_path.is_file()]
    if not (missing_img or missing_mask):
        return None
    parts = []
    if missing_img:
        parts.append(f"{len(missing_img)} image(s): {preview(missing_img)}")
    if missing_mask:
        parts.append(f"{len(missing_mask)} mask(s): {preview(missing_mask)}")
    return FileNotFoundError(
        f"{root}/anns/{split}.json names files that are missing in {root}: " + "; ".join(parts)
        + ". Put the dataset's images in images/ and masks in masks/ with the names used in the "
          "split file (`vlsm data convert DATASET RAW_DIR OUT_DIR --anns ...` does this from the "
          "original download), or fix the split file.")


def is_medvlsm_root(root) -> bool:
    return (Path(root) / ANNS_DIR).is_dir()


def read_medvlsm_split(root, split: str, *, check_files: bool = True,
                       all_entries: Optional[dict] = None) -> list[Record]:
    """Records of one split of a medvlsm-layout dataset, in the split file's order.

    Raises ``FileNotFoundError`` if the split file is missing (listing the available splits) or,
    with ``check_files``, if images or masks named in it are missing (one error listing them).
    An empty split file gives an empty list. ``all_entries`` ({split: entries}) saves reading the
    split files again (record names depend on every split).
    """
    root = Path(root)
    anns_dir = root / ANNS_DIR
    if all_entries is None or split not in all_entries:
        entries = read_anns(anns_dir, split)  # this split's problem first, naming it
        all_entries = {**(read_all_anns(anns_dir) if all_entries is None else all_entries), split: entries}
    records = medvlsm_records(root, all_entries)[split]
    error = missing_files(root, split, records) if check_files else None
    if error is not None:
        raise error
    return records


__all__ = ["read_medvlsm_split", "medvlsm_records", "read_all_anns", "available_splits", "read_anns",
           "missing_files", "split_not_found", "DatasetLayoutError", "is_medvlsm_root"]
