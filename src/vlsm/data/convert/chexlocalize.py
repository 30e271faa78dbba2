"""CheXlocalize (Saporta et al., Nature Machine Intelligence 2022; Stanford AIMI, research use under its
dataset licence): the ground-truth segmentations of CheXpert's validation and test chest X-rays.

The release (its format is documented, with a two-image sample, in rajpurkarlab/cheXlocalize) holds::

    gt_segmentations_val.json   {"patient64541_study1_view1_frontal": {"Cardiomegaly": {"size": [h, w],
    gt_segmentations_test.json                                          "counts": "<COCO RLE>"}, ...}, ...}
    .../valid/ (or val/) and .../test/patient64541/study1/view1_frontal.jpg   CheXpert's images

Each (image, finding) pair whose run-length code has foreground becomes one case, named as medvlsm names
them: the image ``patient64541_study1_view1_frontal.jpg`` (copied) and the mask
``patient64541_study1_view1_frontal_cardiomegaly.png`` (decoded with pycocotools). Every code's size must
be its image's size. Generated prompts name the finding and the view (medvlsm's wording), then add the
mask's shape and location and the image's other findings. A patient's images stay in one generated split.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from vlsm.data._util import preview
from vlsm.data.convert.base import PATIENT_PATTERN, DatasetSource, RawLayoutError, SourceCase

#: the ground-truth files of the release, by CheXpert split
GT_FILES = {"val": "gt_segmentations_val.json", "test": "gt_segmentations_test.json"}
_KEY = re.compile(r"^(patient\d+)_(study\d+)_(view\d+)_(frontal|lateral)$")
_IMAGE = re.compile(r"^(view\d+)_(frontal|lateral)\.jpe?g$", re.IGNORECASE)
_MAX_DEPTH = 6

#: medvlsm's prompt wording; {finding}, {view}, {shape}, {where}, {others}
PROMPTS = {
    "p1": "{finding} in a chest Xray.",
    "p2": "{finding} in the {view} view of a Chest Xray.",
    "p3": "{finding} of shape {shape} in the {view} view of a Chest Xray.",
    "p4": "{finding} of shape {shape}, and located in {where} of the {view} view of a Chest Xray.",
    "p5": "{finding} of shape {shape}, and located in {where} of the {view} view of a Chest Xray. {others}",
    "p6": "{finding} in a Chest Xray. {others}",
}


def snake_case(finding: str) -> str:
    """medvlsm's mask-name form of a finding: ``Enlarged Cardiomediastinum`` -> ``enlarged_cardiomediastinum``."""
    return re.sub(r"[^a-z0-9]+", "_", finding.lower()).strip("_")


def _walk(raw: Path):
    base = len(raw.parts)
    for folder, dirs, files in os.walk(raw):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if len(Path(folder).parts) - base < _MAX_DEPTH else []
        yield Path(folder), sorted(files)


def _scan(raw: Path) -> tuple[dict, dict]:
    """({split: ground-truth file}, {image key: image file}) under ``raw``."""
    gts, images, clashes = {}, {}, []
    for folder, files in _walk(raw):
        for f in files:
            split = next((s for s, name in GT_FILES.items() if f == name), None)
            if split is not None:
                if split in gts:
                    clashes.append(f"{gts[split]} and {folder / f}")
                gts[split] = folder / f
            m = _IMAGE.match(f)
            if m and folder.name.startswith("study") and folder.parent.name.startswith("patient"):
                key = f"{folder.parent.name}_{folder.name}_{m.group(1)}_{m.group(2).lower()}"
                if key in images:
                    clashes.append(f"{images[key]} and {folder / f}")
                images[key] = folder / f
    if clashes:
        raise RawLayoutError(f"CheXlocalize files found twice under {raw}: {preview(clashes, 3)}; keep one copy")
    return gts, images


def _read_gt(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RawLayoutError(f"{path} is not valid JSON ({err}); re-download it") from None
    if not isinstance(data, dict):
        raise RawLayoutError(f"{path} must be a JSON object keyed by image (patient<id>_study<n>_view<n>_<view>)")
    return data


def _rle(gt_file: Path, key: str, finding: str, code) -> dict:
    if not isinstance(code, dict) or not isinstance(code.get("counts"), (str, bytes)) \
            or not (isinstance(code.get("size"), list) and len(code["size"]) == 2):
        raise RawLayoutError(f"{gt_file}: {key} / {finding} is not a COCO run-length code "
                             f"({{\"size\": [height, width], \"counts\": \"...\"}}); re-download the file")
    counts = code["counts"]
    return {"size": [int(code["size"][0]), int(code["size"][1])],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_rle(code: dict) -> np.ndarray:
    """The boolean (H, W) mask of a COCO compressed run-length code (pycocotools)."""
    import warnings

    from pycocotools import mask as coco_mask

    with warnings.catch_warnings():  # pycocotools' numpy-2 copy-keyword notice
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco_mask.decode(code).astype(bool)


def _has_foreground(code: dict) -> bool:
    from pycocotools import mask as coco_mask

    return int(coco_mask.area(code)) > 0


def _mask_maker(gt_file: Path, key: str, finding: str, code: dict, image: Path):
    def make(size: tuple) -> np.ndarray:
        height, width = code["size"]
        if (width, height) != tuple(size):
            raise ValueError(f"{gt_file}: the mask of {key} / {finding} is {width}x{height} but its image {image} is "
                             f"{size[0]}x{size[1]}; the image is not the release's (a resized CheXpert copy?): use "
                             f"the images of the CheXlocalize download")
        return decode_rle(code)
    return make


def find_chexlocalize(raw: Path) -> list:
    """One case per (image, finding) with foreground, for every image of the ground-truth files found."""
    gts, images = _scan(raw)
    if not gts:
        raise RawLayoutError(f"{raw} does not look like CheXlocalize: expected {' or '.join(GT_FILES.values())} "
                             f"and CheXpert's valid/ and test/ folders of patient<id>/study<n>/view<n>_<view>.jpg")
    cases, no_image = [], []
    for split, gt_file in sorted(gts.items()):
        for key, findings in sorted(_read_gt(gt_file).items()):
            m = _KEY.match(key)
            if m is None or not isinstance(findings, dict):
                raise RawLayoutError(f"{gt_file}: {key!r} is not an image key (patient<id>_study<n>_view<n>_"
                                     f"<frontal|lateral>) holding one code per finding")
            if key not in images:
                no_image.append(key)
                continue
            for finding, raw_code in sorted(findings.items()):
                code = _rle(gt_file, key, finding, raw_code)
                if not _has_foreground(code):
                    continue
                name = f"{key}_{snake_case(finding)}"
                cases.append(SourceCase(
                    name, images[key], image_key=key, mask_name=f"{name}.png",
                    make_mask=_mask_maker(gt_file, key, finding, code, images[key]), group=m.group(1),
                    facts={"finding": finding, "view": m.group(4), "split": split}))
    if no_image:
        raise RawLayoutError(f"{len(no_image)} image(s) of the ground truth are not under {raw}: {preview(no_image)}; "
                             f"put CheXpert's valid/ (or val/) and test/ folders beside the JSON files")
    return cases


def chexlocalize_prompts(case: SourceCase, mask: np.ndarray, image: np.ndarray, cases_of_image=None) -> dict:
    """medvlsm's prompt wording from the finding, the view, the mask's shape and location, and the image's
    other findings (``case.facts["others"]``)."""
    from vlsm.data.prompt_gen import describe_mask

    desc = describe_mask(mask)
    others = case.facts.get("others") or []
    values = {"finding": case.facts["finding"], "view": case.facts["view"], "shape": desc.shape or "irregular",
              "where": desc.where or "center", "others": f"{', '.join(others)} are present." if others else ""}
    return {"p0": "", **{k: t.format(**values).strip() for k, t in PROMPTS.items()}}


def _with_others(cases: list) -> list:
    by_image: dict = {}
    for c in cases:
        by_image.setdefault(c.image_stem, []).append(c.facts["finding"])
    for c in cases:
        c.facts["others"] = [f for f in by_image[c.image_stem] if f != c.facts["finding"]]
    return cases


SOURCE = DatasetSource(
    "chexlocalize", lambda raw: _with_others(find_chexlocalize(raw)), "finding",
    "CheXlocalize: gt_segmentations_{val,test}.json + CheXpert's valid/ and test/ patient*/study*/view*_*.jpg",
    mask_name=lambda key: f"{key}.png", entry_key=lambda entry: Path(entry["mask_name"]).stem,
    prompts=chexlocalize_prompts, patient_pattern=PATIENT_PATTERN)

__all__ = ["SOURCE", "find_chexlocalize", "decode_rle", "snake_case", "GT_FILES", "PROMPTS"]
