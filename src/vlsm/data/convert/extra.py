"""DFUC 2022, ETIS-LaribPolypDB and CVC-300 from their downloads.

* **DFUC 2022** (Diabetic Foot Ulcer Challenge 2022; Kendrick et al.; for research, under the
  challenge's licence agreement): ``DFUC2022_train_images/100001.jpg`` + ``DFUC2022_train_masks/100001.png``
  (also read as ``images/`` + ``masks/`` or ``labels/``, in RAW_DIR, ``train/`` or one folder down).
* **ETIS-LaribPolypDB** (Silva et al., IJCARS 2014; research use): the original ``N.tif`` images beside a
  ground-truth folder of ``N.tif`` or ``pN.tif``, or the PNG ``images/`` + ``masks/`` version.
* **CVC-300** (the CVC-EndoSceneStill test part; Vázquez et al., J. Healthc. Eng. 2017; research use):
  EndoScene's ``bbdd/`` + ``gtpolyp/`` (BMP) or the PNG ``images/`` + ``masks/`` version. Its 60 images are
  a test set: without split files every image is in ``test``. medvlsm's ``cvc300_polyp`` split files are
  byte-identical copies of its ``colondb_polyp`` files (they list CVC-ColonDB's 380 images), so they are
  refused with that reason.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from vlsm.data.convert.base import (
    DatasetSource,
    RawLayoutError,
    SourceCase,
    first_dir,
    numbered_pairs,
    pair_folders,
)

#: (image folder, mask folder) pairs a DFUC 2022 download may use
DFU_FOLDERS = (("DFUC2022_train_images", "DFUC2022_train_masks"), ("images", "masks"), ("images", "labels"),
               ("train/images", "train/masks"), ("train/images", "train/labels"))
#: SHA-256 of medvlsm's colondb_polyp train.json and test.json, which its cvc300_polyp folder copies
COLONDB_SPLIT_DIGESTS = {
    "1364331bdff303d94d7d06828ed637d8da965ac38cab2a9e6da11ba136f08f7d": "colondb_polyp/train.json",
    "a05004170f4b777e28b6124097ced8f72014bc87e9a2d84b606b2d5abc1ced39": "colondb_polyp/test.json",
}
CVC300_NOT_MEDVLSM = ("medvlsm's cvc300_polyp split files are byte-identical copies of its colondb_polyp files: "
                      "they list CVC-ColonDB's 380 images, and CVC-300 has 60")
_NUMBERED = re.compile(r"^(\d+)\.(tiff?|png|bmp|jpe?g)$", re.IGNORECASE)
_NUMBERED_MASK = re.compile(r"^p?(\d+)\.(tiff?|png|bmp|jpe?g)$", re.IGNORECASE)
_GT_FOLDERS = ("GroundTruth", "Ground Truth", "Ground_Truth", "ground_truth", "gt", "masks", "gtpolyp")


def _near(raw: Path) -> list:
    """RAW_DIR and the folders one and two levels below it."""
    below = [d for d in sorted(raw.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    return [raw] + below + [e for d in below for e in sorted(d.iterdir()) if e.is_dir() and not e.name.startswith(".")]


def find_dfu(raw: Path) -> list:
    for base in _near(raw):
        for images, masks in DFU_FOLDERS:
            if (base / images).is_dir() and (base / masks).is_dir():
                return pair_folders(base / images, base / masks)
    raise RawLayoutError(f"{raw} does not look like DFUC 2022: expected DFUC2022_train_images/ + "
                         f"DFUC2022_train_masks/ (or images/ + masks/ or labels/) in it or a folder below")


def _numbered_release(raw: Path, what: str, image_folders: tuple) -> list:
    """Cases of a folder of numbered images and a ground-truth folder of numbered masks (``pN`` allowed)."""
    for base in _near(raw):
        for name in image_folders:
            folder = base / name if name else base
            if not folder.is_dir():
                continue
            images, _none = numbered_pairs(folder, _NUMBERED, re.compile(r"^$"))
            gt = next((base / g for g in _GT_FOLDERS if (base / g).is_dir() and base / g != folder), None)
            if images and gt is not None:
                _none, masks = numbered_pairs(gt, re.compile(r"^$"), _NUMBERED_MASK)
                return [SourceCase(k, images[k], [masks[k]] if k in masks else []) for k in sorted(images, key=int)]
    raise RawLayoutError(f"{raw} does not look like {what}")


def find_etis(raw: Path) -> list:
    try:
        base = first_dir(raw, _near(raw), ("images", "masks"), "ETIS-LaribPolypDB")
        return pair_folders(base / "images", base / "masks")
    except RawLayoutError:
        pass
    try:
        return _numbered_release(raw, "ETIS-LaribPolypDB", ("ETIS-LaribPolypDB", "Original", ""))
    except RawLayoutError:
        raise RawLayoutError(f"{raw} does not look like ETIS-LaribPolypDB: expected its N.tif images beside a "
                             f"GroundTruth/ (or 'Ground Truth/') folder of N.tif or pN.tif masks, or the PNG "
                             f"version's images/ + masks/") from None


def find_cvc300(raw: Path) -> list:
    for base in _near(raw):
        for images, masks in (("bbdd", "gtpolyp"), ("images", "masks")):
            if (base / images).is_dir() and (base / masks).is_dir():
                return pair_folders(base / images, base / masks)
    raise RawLayoutError(f"{raw} does not look like CVC-300: expected EndoScene's bbdd/ + gtpolyp/ or the PNG "
                         f"version's images/ + masks/ (in it or a folder below)")


def cvc300_split(raw: Path, cases: dict, seed: int) -> tuple[dict, list]:
    return {"test": sorted(cases, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))}, [
        f"CVC-300 is a test set: all {len(cases)} images are in test ({CVC300_NOT_MEDVLSM}, so no train/val "
        f"split is published for it)"]


def check_cvc300_anns(anns: Path, entries: dict, cases: dict) -> None:
    """Refuse medvlsm's cvc300_polyp files (copies of colondb_polyp's), and any split files most of whose images
    CVC-300 does not have."""
    for split in entries:
        path = Path(anns) / f"{split}.json"
        if not path.is_file():
            path = Path(anns) / "anns" / f"{split}.json"
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() in COLONDB_SPLIT_DIGESTS:
            raise ValueError(f"--anns {anns}: {CVC300_NOT_MEDVLSM}. Convert CVC-300 without --anns (all its images "
                             f"become the test split)")
    named = {Path(e["img_name"]).stem for es in entries.values() for e in es}
    foreign = named - set(cases)
    if named and len(foreign) > len(named) / 2:
        raise ValueError(f"--anns {anns} names {len(named)} images, {len(foreign)} of which CVC-300 does not have: "
                         f"these are not CVC-300's split files ({CVC300_NOT_MEDVLSM}). Convert without --anns")


SOURCES = {
    "dfu": DatasetSource("dfu", find_dfu, "foot ulcer",
                         "DFUC 2022: DFUC2022_train_images/*.jpg + DFUC2022_train_masks/*.png"),
    "etis": DatasetSource("etis", find_etis, "polyp",
                          "ETIS-LaribPolypDB: N.tif + GroundTruth/pN.tif, or images/ + masks/ (PNG version)"),
    "cvc300": DatasetSource("cvc300", find_cvc300, "polyp",
                            "CVC-300: bbdd/ + gtpolyp/ (EndoScene) or images/ + masks/; a test set (all 60 images)",
                            split=cvc300_split, check_anns=check_cvc300_anns),
}

__all__ = ["SOURCES", "find_dfu", "find_etis", "find_cvc300", "CVC300_NOT_MEDVLSM", "COLONDB_SPLIT_DIGESTS"]
