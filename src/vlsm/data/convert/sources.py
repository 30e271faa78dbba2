"""Where each dataset's official download keeps its images and masks.

Each ``find_<dataset>(raw_dir)`` returns the cases of a raw download as :class:`SourceCase` objects
whose ``key`` is the file stem medvlsm uses for the image (``cju0qkwl35piu0993l0dewei2``,
``12`` for CVC-ClinicDB/ColonDB, ``12_benign`` for BUSI, ``ISIC_0000001``), so they can be matched
with medvlsm's split files.

The datasets belong to their creators; cite them and respect their terms:
Kvasir-SEG (Jha et al., MMM 2020; research use), CVC-ClinicDB (Bernal et al., Comput. Med. Imaging
Graph. 2015; research and education only), CVC-ColonDB (Bernal et al., Pattern Recognition 2012),
BKAI-IGH NeoPolyp (Kaggle competition data; cite the organisers), BUSI (Al-Dhabyani et al., Data in
Brief 2020), ISIC (Codella et al., ISBI 2018; Gutman et al., 2016). medvlsm's split/prompt files
are MIT-licensed (Poudel et al., MIDL 2024).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from vlsm.data._util import IMAGE_EXTENSIONS, file_suffix, preview
from vlsm.data.convert import camus, chexlocalize, extra
from vlsm.data.convert.base import (
    MASK_RED_OR_GREEN,
    MASK_RULE,
    DatasetSource,
    RawLayoutError,
    SourceCase,
    first_dir,
    numbered_pairs,
    pair_folders,
)


def find_kvasir(raw: Path) -> list:
    base = first_dir(raw, [raw, raw / "Kvasir-SEG", raw / "kvasir-seg"], ("images", "masks"),
                      "Kvasir-SEG (Kvasir-SEG/images, Kvasir-SEG/masks)")
    return pair_folders(base / "images", base / "masks")


def find_clinicdb(raw: Path) -> list:
    cands = [raw, raw / "TIF", raw / "PNG", raw / "CVC-ClinicDB", raw / "CVC-ClinicDB" / "TIF",
             raw / "CVC-ClinicDB" / "PNG"]
    for c in cands:
        gt = next((c / n for n in ("Ground Truth", "GroundTruth", "Ground_Truth") if (c / n).is_dir()), None)
        if (c / "Original").is_dir() and gt is not None:
            return pair_folders(c / "Original", gt)
    raise RawLayoutError(f"{raw} does not look like CVC-ClinicDB: expected 'Original/' and 'Ground Truth/' "
                         f"(N.tif or N.png) in {raw} or its TIF/, PNG/ or CVC-ClinicDB/ subfolder")


_COLONDB_IMAGE = re.compile(r"^(\d+)\.tiff?$", re.IGNORECASE)
_COLONDB_MASK = re.compile(r"^p(\d+)\.tiff?$", re.IGNORECASE)  # cpN.tiff (contours) are not masks
COLONDB_LAYOUTS = ("the original release: N.tiff images with ground truth pN.tiff in one folder (contour files "
                   "cpN.tiff are ignored)", "the PNG version: images/N.png and masks/N.png")


def find_colondb(raw: Path) -> list:
    """CVC-ColonDB in either of its two layouts (:data:`COLONDB_LAYOUTS`), in RAW_DIR or its
    CVC-ColonDB/ or CVC-ColonDB/CVC-ColonDB/ subfolder."""
    candidates = [raw, raw / "CVC-ColonDB", raw / "CVC-ColonDB" / "CVC-ColonDB"]
    for c in candidates:
        if (c / "images").is_dir() and (c / "masks").is_dir():
            return pair_folders(c / "images", c / "masks")
        if not c.is_dir():
            continue
        images, masks = numbered_pairs(c, _COLONDB_IMAGE, _COLONDB_MASK)
        if images:
            return [SourceCase(k, images[k], [masks[k]] if k in masks else []) for k in sorted(images, key=int)]
    raise RawLayoutError(f"{raw} does not look like CVC-ColonDB. Expected, in {raw} or its CVC-ColonDB/ "
                         f"subfolder, one of its two layouts: " + "; or ".join(COLONDB_LAYOUTS))


def find_bkai(raw: Path) -> list:
    img = next((d for d in (raw / "train" / "train", raw / "train") if d.is_dir() and _has_images(d)), None)
    gt = next((d for d in (raw / "train_gt" / "train_gt", raw / "train_gt") if d.is_dir() and _has_images(d)),
              None)
    if img is None or gt is None:
        raise RawLayoutError(f"{raw} does not look like BKAI-IGH NeoPolyp: expected train/train/*.jpeg and "
                             f"train_gt/train_gt/*.jpeg (or train/*.jpeg and train_gt/*.jpeg)")
    return pair_folders(img, gt, MASK_RED_OR_GREEN)


def _has_images(d: Path) -> bool:
    return any(file_suffix(p) in IMAGE_EXTENSIONS for p in d.iterdir())


_BUSI_IMAGE = re.compile(r"^(benign|malignant|normal) \((\d+)\)\.png$", re.IGNORECASE)
_BUSI_MASK = re.compile(r"^(benign|malignant|normal) \((\d+)\)_mask(?:_(\d+))?\.png$", re.IGNORECASE)


def find_busi(raw: Path) -> list:
    classes = ("benign", "malignant", "normal")
    base = next((c for c in (raw, raw / "Dataset_BUSI_with_GT") if any((c / k).is_dir() for k in classes)), None)
    if base is None:
        raise RawLayoutError(f"{raw} does not look like BUSI: expected Dataset_BUSI_with_GT/{{benign,malignant,"
                             f"normal}}/ with 'benign (N).png' and 'benign (N)_mask.png' files")
    cases: dict[str, SourceCase] = {}
    masks: dict[str, list] = {}
    unknown = []
    for cls in classes:
        d = base / cls
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if not p.is_file() or p.name.startswith("."):
                continue
            m_img, m_mask = _BUSI_IMAGE.match(p.name), _BUSI_MASK.match(p.name)
            if m_img:
                key = f"{int(m_img.group(2))}_{m_img.group(1).lower()}"
                cases[key] = SourceCase(key, p)
            elif m_mask:
                key = f"{int(m_mask.group(2))}_{m_mask.group(1).lower()}"
                masks.setdefault(key, []).append((int(m_mask.group(3) or 0), p))
            elif p.suffix.lower() in IMAGE_EXTENSIONS:
                unknown.append(str(p.relative_to(base)))
    if unknown:
        raise RawLayoutError(f"unexpected file name(s) in {base}: {preview(unknown)}. BUSI files are named "
                             f"'benign (N).png' and 'benign (N)_mask.png' / '_mask_1.png'; rename or remove them")
    for key, c in cases.items():
        c.masks = [p for _i, p in sorted(masks.get(key, []))]
    orphans = sorted(set(masks) - set(cases))
    if orphans:
        raise RawLayoutError(f"mask(s) without an image in {base}: {preview(orphans)}")
    return [cases[k] for k in sorted(cases, key=_busi_sort)]


def _busi_sort(key: str):
    n, cls = key.split("_", 1)
    return cls, int(n)


_ISIC_IMAGE = re.compile(r"^(ISIC_\d+)\.(jpe?g|png)$", re.IGNORECASE)
_ISIC_MASK = re.compile(r"^(ISIC_\d+)_segmentation\.png$", re.IGNORECASE)


def find_isic(raw: Path) -> list:
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    clashes = []
    for folder, dirs, files in os.walk(raw):
        dirs.sort()
        for f in sorted(files):
            m_img, m_mask = _ISIC_IMAGE.match(f), _ISIC_MASK.match(f)
            target, m = (images, m_img) if m_img else (masks, m_mask) if m_mask else (None, None)
            if target is None:
                continue
            key = m.group(1).upper()
            if key in target:
                clashes.append(f"{target[key]} and {Path(folder) / f}")
            target[key] = Path(folder) / f
    if clashes:
        raise RawLayoutError(f"the same ISIC case occurs twice under {raw}: {preview(clashes, 3)}; keep one copy")
    if not images:
        raise RawLayoutError(f"{raw} does not look like ISIC: expected *_Data/ISIC_NNNNNNN.jpg (or "
                             f"*_Input/) and *_GroundTruth/ISIC_NNNNNNN_Segmentation.png")
    return [SourceCase(k, images[k], [masks[k]] if k in masks else []) for k in sorted(images)]


def find_folder(raw: Path) -> list:
    from vlsm.data.folder import folder_pairs

    if not (raw / "images").is_dir():
        raise RawLayoutError(f"{raw} does not look like a plain dataset folder: expected images/ and masks/")
    return [SourceCase(s, i, [m] if m is not None else []) for s, i, m in folder_pairs(raw, require_masks=False)]


SOURCES = {
    "kvasir": DatasetSource("kvasir", find_kvasir, "polyp", "Kvasir-SEG: Kvasir-SEG/{images,masks}/*.jpg"),
    "clinicdb": DatasetSource("clinicdb", find_clinicdb, "polyp",
                              "CVC-ClinicDB: Original/N.tif + 'Ground Truth'/N.tif (or the PNG version)"),
    "colondb": DatasetSource("colondb", find_colondb, "polyp",
                             "CVC-ColonDB: N.tiff + pN.tiff (original release) or {images,masks}/N.png"),
    "bkai": DatasetSource("bkai", find_bkai, "polyp",
                          "BKAI-IGH NeoPolyp: train/train/*.jpeg + train_gt/train_gt/*.jpeg (red/green masks)"),
    "busi": DatasetSource("busi", find_busi, "breast tumor",
                          "BUSI: Dataset_BUSI_with_GT/{benign,malignant,normal}/'<class> (N).png' + '_mask*.png'"),
    "isic": DatasetSource("isic", find_isic, "skin melanoma",
                          "ISIC 2016/2018: *_Data/ISIC_N.jpg + *_GroundTruth/ISIC_N_Segmentation.png",
                          mask_name=lambda key: f"{key}_Segmentation.png"),
    "chexlocalize": chexlocalize.SOURCE,
    "camus": camus.SOURCE,
    **extra.SOURCES,
    "folder": DatasetSource("folder", find_folder, "object", "plain folder: images/ + masks/ (matched by name)"),
}


def get_source(name: str) -> DatasetSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(SOURCES)}") from None


__all__ = ["SourceCase", "DatasetSource", "SOURCES", "get_source", "RawLayoutError", "MASK_RULE",
           "MASK_RED_OR_GREEN"]
