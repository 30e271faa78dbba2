"""CheXlocalize from its documented release format (rajpurkarlab/cheXlocalize's sample/, rebuilt here: COCO RLE
ground truth written with pycocotools beside CheXpert-style image folders)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from naming import raises_naming
from vlsm.cli import main
from vlsm.data import load_mask, load_split
from vlsm.data.convert import convert_dataset
from vlsm.data.convert.base import RawLayoutError

FINDINGS = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Airspace Opacity", "Edema", "Consolidation",
            "Atelectasis", "Pneumothorax", "Pleural Effusion", "Support Devices")
#: the two images of the official sample and the findings medvlsm's files keep for them
SAMPLE = {"patient64541_study1_view1_frontal": ((36, 44), ("Airspace Opacity", "Cardiomegaly",
                                                           "Enlarged Cardiomediastinum")),
          "patient64542_study1_view1_frontal": ((30, 30), ("Support Devices",))}


def encode(mask: np.ndarray) -> dict:
    from pycocotools import mask as coco_mask

    code = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in code["size"]], "counts": code["counts"].decode("ascii")}


def finding_mask(shape: tuple, index: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[2 + index:shape[0] // 2 + index, 3 + 2 * index:shape[1] - 4] = True
    return mask


def write_release(raw: Path, sample=SAMPLE, split="val", folder="valid", size_of=None) -> dict:
    """gt_segmentations_<split>.json + <folder>/patient*/study*/view*.jpg; returns {mask name: mask}."""
    gt, masks = {}, {}
    for key, ((h, w), present) in sample.items():
        patient, study, view, side = key.split("_")
        image_dir = raw / "CheXpert" / folder / patient / study
        image_dir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(len(key) + h)
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(image_dir / f"{view}_{side}.jpg")
        gt[key] = {}
        for i, finding in enumerate(FINDINGS):
            mask = finding_mask((h, w), i) if finding in present else np.zeros((h, w), bool)
            code_shape = (size_of or {}).get(key, (h, w))
            gt[key][finding] = encode(mask if code_shape == (h, w) else np.zeros(code_shape, bool) | True)
            if finding in present:
                masks[f"{key}_{finding.lower().replace(' ', '_')}.png"] = mask
    (raw / "CheXlocalize").mkdir(parents=True, exist_ok=True)
    (raw / "CheXlocalize" / f"gt_segmentations_{split}.json").write_text(json.dumps(gt))
    return masks


def test_the_official_sample_gives_exactly_medvlsm_entries(tmp_path, medvlsm_anns_root, capsys):
    anns = medvlsm_anns_root / "chexlocalize"
    masks = write_release(tmp_path / "raw")
    out = tmp_path / "out"
    result = convert_dataset("chexlocalize", tmp_path / "raw", out, anns=anns, allow_missing=True)
    expected = [e for s in ("train", "val", "test") for e in json.loads((anns / f"{s}.json").read_text())
                if e["img_name"][:-4] in SAMPLE]
    written = [e for s in ("train", "val", "test") for e in json.loads((out / "anns" / f"{s}.json").read_text())]
    assert written == expected and len(written) == 4 and result.counts["train"] == 4
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(masks)
    for name, mask in masks.items():
        assert (load_mask(out / "masks" / name) == mask).all()  # the RLE decode, pixel for pixel
    assert (out / "images" / "patient64541_study1_view1_frontal.jpg").read_bytes() == \
           (tmp_path / "raw/CheXpert/valid/patient64541/study1/view1_frontal.jpg").read_bytes()
    assert main(["data", "check", str(out), "--no-prompts"]) == 0
    records = load_split(out, "train")
    assert {r.name for r in records} == {Path(n).stem for n in masks}  # one record per (image, finding)


def test_generated_prompts_name_the_finding_and_the_view(tmp_path):
    sample = {**SAMPLE, "patient64542_study1_view2_lateral": ((30, 26), ("Support Devices", "Edema")),
              "patient64543_study1_view1_frontal": ((28, 28), ())}
    masks = write_release(tmp_path / "raw", sample)
    out = tmp_path / "out"
    result = convert_dataset("chexlocalize", tmp_path / "raw", out)
    entries = {e["mask_name"]: (s, e) for s in result.counts
               for e in json.loads((out / "anns" / f"{s}.json").read_text())}
    assert sorted(entries) == sorted(masks)  # empty codes write no mask; an image without findings no image
    split, lateral = entries["patient64542_study1_view2_lateral_edema.png"]
    p = lateral["prompts"]
    assert p["p1"] == "Edema in a chest Xray." and p["p2"] == "Edema in the lateral view of a Chest Xray."
    assert p["p3"].startswith("Edema of shape ") and "located in" in p["p4"]
    assert p["p5"].endswith("Support Devices are present.")
    # one patient, one split: both views of patient64542 together
    assert entries["patient64542_study1_view1_frontal_support_devices.png"][0] == split


def test_a_code_of_another_size_than_its_image_names_both(tmp_path):
    write_release(tmp_path / "raw", size_of={"patient64542_study1_view1_frontal": (31, 30)})
    with raises_naming(ValueError, str(tmp_path / "raw/CheXlocalize/gt_segmentations_val.json"),
                       "patient64542_study1_view1_frontal", "30x31",
                       str(tmp_path / "raw/CheXpert/valid/patient64542/study1/view1_frontal.jpg"), "30x30",
                       "CheXlocalize download", one_line=False):  # (a line per case that cannot be converted)
        convert_dataset("chexlocalize", tmp_path / "raw", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_test_split_files_and_val_folders_are_found(tmp_path):
    write_release(tmp_path / "raw", {"patient64741_study1_view1_frontal": ((20, 24), ("Edema",))}, split="test",
                  folder="test")
    write_release(tmp_path / "raw", {"patient64600_study1_view1_frontal": ((20, 24), ("Cardiomegaly",))},
                  folder="val")
    result = convert_dataset("chexlocalize", tmp_path / "raw", tmp_path / "out")
    assert sum(result.counts.values()) == 2


def test_layout_errors_say_what_is_expected(tmp_path):
    (tmp_path / "raw").mkdir()
    with raises_naming(RawLayoutError, str(tmp_path / "raw"), "gt_segmentations_val.json", "gt_segmentations_test.json",
                       "valid/"):
        convert_dataset("chexlocalize", tmp_path / "raw", tmp_path / "out")
    write_release(tmp_path / "raw2")
    (tmp_path / "raw2/CheXpert/valid/patient64542/study1/view1_frontal.jpg").unlink()
    with raises_naming(RawLayoutError, str(tmp_path / "raw2"), "patient64542_study1_view1_frontal", "valid/"):
        convert_dataset("chexlocalize", tmp_path / "raw2", tmp_path / "out")
