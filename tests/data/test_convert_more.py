"""DFUC 2022, ETIS-LaribPolypDB and CVC-300 from their download layouts, and the clinic's formats through
`vlsm data convert folder` (samples written here)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medical_samples import write_dicom, write_metaimage, write_nifti
from naming import raises_naming
from vlsm.data import load_mask
from vlsm.data.check import check_dataset
from vlsm.data.convert import convert_dataset
from vlsm.data.convert.base import RawLayoutError


def picture(path: Path, seed: int, size=(12, 10), mode="RGB") -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0]), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def mask_file(path: Path, seed: int, size=(12, 10)) -> np.ndarray:
    m = np.zeros((size[1], size[0]), np.uint8)
    m[1 + seed % 3:6, 2:8] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(m).save(path)
    return m > 0


def entries(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "anns").glob("*.json"))}


def test_dfu_release_with_medvlsm_names(tmp_path, medvlsm_anns_root):
    base = tmp_path / "raw" / "DFUC2022_train_release"
    names = ["100001", "100007", "100015"]  # one of medvlsm's train, val and test cases each
    for i, n in enumerate(names):
        picture(base / "DFUC2022_train_images" / f"{n}.jpg", i)
        mask_file(base / "DFUC2022_train_masks" / f"{n}.png", i)
    out = tmp_path / "out"
    result = convert_dataset("dfu", tmp_path / "raw", out, anns=medvlsm_anns_root / "dfu", allow_missing=True)
    assert result.counts == {"train": 1, "val": 1, "test": 1}
    assert [(e["img_name"], e["mask_name"]) for es in entries(out).values() for e in es] == \
           [("100015.jpg", "100015.png"), ("100001.jpg", "100001.png"), ("100007.jpg", "100007.png")]
    assert check_dataset(out).ok
    gen = convert_dataset("dfu", tmp_path / "raw", tmp_path / "gen")
    first = next(e for es in entries(tmp_path / "gen").values() for e in es)
    assert sum(gen.counts.values()) == 3 and first["prompts"]["p1"] == "foot ulcer"


@pytest.mark.parametrize("layout", ["original", "png"])
def test_etis_layouts_with_medvlsm_names(tmp_path, medvlsm_anns_root, layout):
    raw = tmp_path / "raw"
    masks = {}
    for n in ("1", "10", "102"):  # medvlsm: 1 and 10 in test (and testB), 102 in train
        if layout == "original":
            picture(raw / "ETIS-LaribPolypDB" / f"{n}.tif", int(n))
            masks[n] = mask_file(raw / "Ground Truth" / f"p{n}.tif", int(n))
        else:
            picture(raw / "images" / f"{n}.png", int(n))
            masks[n] = mask_file(raw / "masks" / f"{n}.png", int(n))
    out = tmp_path / "out"
    result = convert_dataset("etis", raw, out, anns=medvlsm_anns_root / "etis_polyp", allow_missing=True)
    assert result.counts == {"train": 1, "val": 0, "test": 2, "testB": 2}
    assert sorted(p.name for p in (out / "images").iterdir()) == ["1.png", "10.png", "102.png"]
    for n, m in masks.items():
        assert (load_mask(out / "masks" / f"{n}.png") == m).all()


def test_cvc300_is_a_test_set_and_medvlsm_copies_are_refused(tmp_path, medvlsm_anns_root):
    raw = tmp_path / "raw" / "CVC-300"
    for n in range(149, 155):
        picture(raw / "bbdd" / f"{n}.bmp", n)
        mask_file(raw / "gtpolyp" / f"{n}.bmp", n)
    out = tmp_path / "out"
    result = convert_dataset("cvc300", tmp_path / "raw", out)
    assert result.counts == {"test": 6} and sorted(entries(out)) == ["test"]
    assert "copies of its colondb_polyp files" in result.format()
    assert [e["img_name"] for e in entries(out)["test"]] == [f"{n}.png" for n in range(149, 155)]
    for anns in (medvlsm_anns_root / "cvc300_polyp", medvlsm_anns_root / "colondb_polyp"):
        with raises_naming(ValueError, f"--anns {anns}", "colondb_polyp", "without --anns"):
            convert_dataset("cvc300", tmp_path / "raw", tmp_path / "refused", anns=anns)
    assert not (tmp_path / "refused").exists()


def test_layout_errors_name_what_is_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    for dataset, expected in (("dfu", "DFUC2022_train_images"), ("etis", "GroundTruth"), ("cvc300", "gtpolyp")):
        with pytest.raises(RawLayoutError, match=expected):
            convert_dataset(dataset, tmp_path / "empty", tmp_path / "out")


def test_folder_of_dicom_nifti_and_metaimage_files(tmp_path):
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    (raw / "masks").mkdir()
    ramp = (np.arange(10 * 12).reshape(10, 12) * 30).astype(np.uint16)
    write_dicom(raw / "images" / "xray.dcm", ramp, photometric="MONOCHROME1", bits_stored=12)
    mask_file(raw / "masks" / "xray.png", 0)
    plane = np.zeros((12, 10), np.uint8)  # voxel order (i, j): 12 columns, 10 rows
    plane[2:7, 3:8] = 180
    write_nifti(raw / "images" / "scan.nii.gz", plane)
    labels = (plane > 0).astype(np.uint8)
    write_nifti(raw / "masks" / "scan.nii.gz", labels)  # a 0/1 label map
    write_metaimage(raw / "images" / "echo.mhd", plane.T)
    write_metaimage(raw / "masks" / "echo_gt.mha", labels.T)
    out = tmp_path / "out"
    result = convert_dataset("folder", raw, out, class_name="lesion")
    assert sum(result.counts.values()) == 3
    assert sorted(p.name for p in (out / "images").iterdir()) == ["echo.png", "scan.png", "xray.png"]
    assert Image.open(out / "images" / "xray.png").mode == "L"  # grey stays grey
    assert np.asarray(Image.open(out / "images" / "xray.png"))[0, 0] == 255  # MONOCHROME1: 0 is white
    assert (load_mask(out / "masks" / "scan.png") == (labels.T == 1)).all()
    assert (load_mask(out / "masks" / "echo.png") == (labels.T == 1)).all()
    assert check_dataset(out).ok
    write_nifti(raw / "images" / "volume.nii.gz", np.stack([plane] * 3, -1))
    write_nifti(raw / "masks" / "volume.nii.gz", np.stack([labels] * 3, -1))
    with pytest.raises(ValueError, match=r"volume\.nii\.gz holds 3 slices"):
        convert_dataset("folder", raw, tmp_path / "out2")
