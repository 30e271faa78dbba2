"""Converters from raw downloads (raw-samples and synthetic layouts) into the medvlsm layout."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naming import raises_naming
from vlsm.data import load_image, load_mask, load_split
from vlsm.data.convert import DatasetConversionError, convert_dataset
from vlsm.data.masks import save_mask

SPLITS = ("train", "val", "test")


def _all_records(root: Path) -> list:
    return [r for s in SPLITS for r in load_split(root, s)]


def _assert_medvlsm_output(root: Path, n: int) -> list:
    recs = _all_records(root)
    assert len(recs) == n
    for r in recs:
        assert r.mask_path.suffix == ".png"
        raw = np.asarray(Image.open(r.mask_path))
        assert raw.dtype == np.uint8 and raw.ndim == 2 and set(np.unique(raw).tolist()) <= {0, 255}
        assert load_image(r.image_path).size[::-1] == raw.shape
        assert r.prompts["p0"] == ""
    assert (root / "vlsm_convert.json").is_file()
    assert not [p for p in root.parent.iterdir() if ".tmp-" in p.name]
    return recs


def test_kvasir_generated_splits_and_prompts(raw_samples_root, kvasir_root, tmp_path):
    out = tmp_path / "kvasir_polyp"
    result = convert_dataset("kvasir", raw_samples_root / "kvasir_seg", out, seed=0)
    assert sum(result.counts.values()) == 6
    recs = _assert_medvlsm_output(out, 6)
    for r in recs:
        assert r.image_path.suffix == ".jpg"  # JPEGs are copied, not re-encoded
        src = raw_samples_root / "kvasir_seg" / "Kvasir-SEG" / "images" / r.image_path.name
        assert r.image_path.read_bytes() == src.read_bytes()
        np.testing.assert_array_equal(load_mask(r.mask_path), load_mask(kvasir_root / "masks" / f"{r.name}.jpg"))
        assert r.prompts["p1"] == "polyp" and r.prompts["p6"].endswith(" of the image")
    again = tmp_path / "again"
    convert_dataset("kvasir", raw_samples_root / "kvasir_seg", again, seed=0)
    assert (out / "anns" / "val.json").read_text() == (again / "anns" / "val.json").read_text()


def test_kvasir_with_medvlsm_anns_allow_missing(raw_samples_root, kvasir_root, tmp_path):
    raw = raw_samples_root / "kvasir_seg"
    out = tmp_path / "kv"
    with raises_naming(FileNotFoundError, "994 case(s)", str(kvasir_root / "anns"), str(raw), "--allow-missing"):
        convert_dataset("kvasir", raw, out, anns=kvasir_root / "anns")
    assert not out.exists()
    result = convert_dataset("kvasir", raw, out, anns=kvasir_root / "anns", allow_missing=True)
    assert result.n_dropped == 994 and "994 split-file entries dropped" in result.format()
    recs = _assert_medvlsm_output(out, 6)
    published = {e["img_name"]: e for s in SPLITS
                 for e in json.loads((kvasir_root / "anns" / f"{s}.json").read_text())}
    for r in recs:
        assert r.prompts == published[r.image_path.name]["prompts"]  # medvlsm's prompts kept
    written = json.loads((out / "anns" / "train.json").read_text())
    assert all(e["mask_name"].endswith(".png") for e in written)  # JPEG masks became PNG


def test_clinicdb_tiffs(raw_samples_root, clinicdb_root, tmp_path):
    out = tmp_path / "clinicdb_polyp"
    convert_dataset("clinicdb", raw_samples_root / "cvc_clinicdb", out, anns=clinicdb_root / "anns",
                    allow_missing=True)
    recs = _assert_medvlsm_output(out, 6)
    for r in recs:
        assert r.image_path.suffix == ".png"
        # the shared PNGs were made losslessly from the same TIFFs
        np.testing.assert_array_equal(np.asarray(load_image(r.image_path)),
                                      np.asarray(load_image(clinicdb_root / "images" / f"{r.name}.png")))
        np.testing.assert_array_equal(load_mask(r.mask_path), load_mask(clinicdb_root / "masks" / f"{r.name}.png"))


def test_bkai_red_green_masks(raw_samples_root, medvlsm_anns_root, tmp_path):
    raw = raw_samples_root / "bkai_igh_neopolyp"
    out = tmp_path / "bkai_polyp"
    result = convert_dataset("bkai", raw, out, anns=medvlsm_anns_root / "bkai_polyp", allow_missing=True)
    n = sum(result.counts.values())
    assert n == 6
    for r in _assert_medvlsm_output(out, n):
        assert r.image_path.suffix == ".jpeg"
        rgb = np.asarray(Image.open(raw / "train_gt" / "train_gt" / f"{r.name}.jpeg").convert("RGB"))
        np.testing.assert_array_equal(load_mask(r.mask_path), (rgb[..., 0] > 127) | (rgb[..., 1] > 127))


def test_busi_names_or_merge_and_empty_normals(raw_samples_root, medvlsm_anns_root, tmp_path):
    raw = raw_samples_root / "busi"
    base = raw / "Dataset_BUSI_with_GT"
    out = tmp_path / "busi"
    result = convert_dataset("busi", raw, out, anns=medvlsm_anns_root / "busi", allow_missing=True)
    recs = _assert_medvlsm_output(out, 10)
    names = {r.name for r in recs}
    assert names == {"1_benign", "2_benign", "100_benign", "195_benign", "1_malignant", "2_malignant",
                     "3_malignant", "1_normal", "2_normal", "3_normal"}
    assert result.n_dropped == 780 - 10
    by = {r.name: r for r in recs}
    parts = [load_mask(base / "benign" / f"benign (195){s}.png") for s in ("_mask", "_mask_1", "_mask_2")]
    merged = parts[0] | parts[1] | parts[2]
    assert all((merged & ~p).any() for p in parts)  # each file adds something
    np.testing.assert_array_equal(load_mask(by["195_benign"].mask_path), merged)
    for n in ("1_normal", "2_normal", "3_normal"):
        assert not load_mask(by[n].mask_path).any()
    assert by["1_normal"].prompts["p1"].startswith("No tumor")
    # generated prompts: empty masks say so
    gen = tmp_path / "busi_gen"
    convert_dataset("busi", raw, gen)
    gen_recs = {r.name: r for r in _all_records(gen)}
    assert gen_recs["2_normal"].prompts["p6"] == "no breast tumor"
    assert gen_recs["100_benign"].prompts["p5"].startswith("two ")


def test_isic_layout(tmp_path):
    raw = tmp_path / "isic_raw"
    (raw / "ISBI2016_ISIC_Part1_Training_Data").mkdir(parents=True)
    (raw / "ISBI2016_ISIC_Part1_Training_GroundTruth").mkdir()
    for i in range(5):
        Image.new("RGB", (20, 16), (120, 80, 60)).save(raw / "ISBI2016_ISIC_Part1_Training_Data" / f"ISIC_000000{i}.jpg")
        m = np.zeros((16, 20), bool)
        m[4:12, 5:15] = True
        save_mask(raw / "ISBI2016_ISIC_Part1_Training_GroundTruth" / f"ISIC_000000{i}_Segmentation.png", m)
    (raw / "ISBI2016_ISIC_Part1_Training_Data" / "ISIC_0000001_superpixels.png").write_bytes(b"x")
    out = tmp_path / "isic"
    convert_dataset("isic", raw, out)
    recs = _assert_medvlsm_output(out, 5)
    assert sorted(r.mask_path.name for r in recs)[0] == "ISIC_0000000_Segmentation.png"
    assert recs[0].prompts["p1"] == "skin melanoma"
    anns = tmp_path / "anns"
    anns.mkdir()
    (anns / "train.json").write_text(json.dumps([{"img_name": "ISIC_0000003.jpg",
                                                  "mask_name": "ISIC_0000003_Segmentation.png",
                                                  "prompts": {"p0": "", "p1": "skin melanoma"}}]))
    out2 = tmp_path / "isic2"
    convert_dataset("isic", raw, out2, anns=anns)
    assert [r.name for r in load_split(out2, "train")] == ["ISIC_0000003"]


@pytest.mark.parametrize("nested", [False, True])
def test_colondb_layouts(tmp_path, nested):
    raw = tmp_path / "colondb_raw"
    base = raw / "CVC-ColonDB" if nested else raw
    (base / "images").mkdir(parents=True)
    (base / "masks").mkdir()
    for i in range(1, 11):
        Image.new("RGB", (12, 10), (200, 100, 90)).save(base / "images" / f"{i}.png")
        m = np.zeros((10, 12), bool)
        m[2:6, 3:9] = True
        save_mask(base / "masks" / f"{i}.png", m)
    out = tmp_path / "colondb_polyp"
    result = convert_dataset("colondb", raw, out, seed=1)
    assert sum(result.counts.values()) == 10 and set(result.counts) == {"train", "val", "test"}
    _assert_medvlsm_output(out, 10)


@pytest.mark.parametrize("nested", [False, True])
def test_colondb_original_tiff_release(tmp_path, nested):
    """CVC-ColonDB as first released: N.tiff images, pN.tiff ground truth, cpN.tiff contours (ignored)."""
    raw = tmp_path / "colondb_orig"
    base = raw / "CVC-ColonDB" / "CVC-ColonDB" if nested else raw
    base.mkdir(parents=True)
    for i in range(1, 7):
        Image.new("RGB", (12, 10), (200, 100 + i, 90)).save(base / f"{i}.tiff")
        m = np.zeros((10, 12), np.uint8)
        m[2:6, 3:3 + i] = 255
        Image.fromarray(m).save(base / f"p{i}.tiff")
        Image.fromarray(255 - m).save(base / f"cp{i}.tiff")  # a contour file: must not be taken as the mask
    anns = tmp_path / "anns"
    anns.mkdir()
    (anns / "test.json").write_text(json.dumps([{"img_name": f"{i}.png", "mask_name": f"{i}.png",
                                                 "prompts": {"p1": "polyp"}} for i in (2, 5)]))
    out = tmp_path / "colondb_polyp"
    result = convert_dataset("colondb", raw, out, anns=anns)
    assert result.counts == {"test": 2} and result.unused == ["1", "3", "4", "6"]
    recs = load_split(out, "test")
    assert [r.name for r in recs] == ["2", "5"] and recs[0].image_path.name == "2.png"
    assert [int(load_mask(r.mask_path).sum()) for r in recs] == [4 * 2, 4 * 5]  # pN, not cpN
    assert load_image(recs[1].image_path).getpixel((0, 0)) == (200, 105, 90)


def test_colondb_unknown_layout_lists_both(tmp_path):
    raw = tmp_path / "odd"
    (raw / "pictures").mkdir(parents=True)
    with raises_naming(FileNotFoundError, str(raw), "CVC-ColonDB", "N.tiff", "pN.tiff", "images/N.png", "masks/N.png"):
        convert_dataset("colondb", raw, tmp_path / "out")


def test_generic_folder_with_its_split_file(tmp_path):
    raw = tmp_path / "mine"
    (raw / "images").mkdir(parents=True)
    (raw / "masks").mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8)).save(raw / "images" / f"c{i}.bmp")
        save_mask(raw / "masks" / f"c{i}_mask.png", np.eye(8, dtype=bool))
    (raw / "splits.json").write_text(json.dumps({"train": ["c0", "c1"], "val": ["c2"], "test": ["c3"]}))
    out = tmp_path / "out"
    convert_dataset("folder", raw, out, class_name="lesion")
    recs = _assert_medvlsm_output(out, 4)
    assert [r.name for r in load_split(out, "train")] == ["c0", "c1"]
    assert recs[0].image_path.suffix == ".png"  # BMP re-encoded
    assert recs[0].prompts["p1"] == "lesion"


def test_refuses_non_empty_output_and_overwrites_on_request(raw_samples_root, tmp_path):
    raw = raw_samples_root / "kvasir_seg"
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty.*--overwrite"):
        convert_dataset("kvasir", raw, out)
    assert (out / "keep.txt").read_text() == "precious"
    with pytest.raises(FileExistsError, match="not written by vlsm.*vlsm_convert.json"):
        convert_dataset("kvasir", raw, out, overwrite=True)  # --overwrite never replaces a foreign folder
    assert (out / "keep.txt").read_text() == "precious"
    (out / "keep.txt").unlink()
    convert_dataset("kvasir", raw, out)
    (out / "extra.txt").write_text("left by an earlier conversion")
    convert_dataset("kvasir", raw, out, overwrite=True)  # an earlier conversion is replaced
    assert not (out / "extra.txt").exists() and (out / "anns" / "train.json").is_file()


def test_bad_raw_files_write_nothing(raw_samples_root, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(raw_samples_root / "kvasir_seg", raw)
    img = sorted((raw / "Kvasir-SEG" / "images").iterdir())[0]
    img.write_bytes(img.read_bytes()[:3000])  # truncated download
    mask = sorted((raw / "Kvasir-SEG" / "masks").iterdir())[1]
    mask.unlink()
    out = tmp_path / "out"
    with pytest.raises(DatasetConversionError) as info:
        convert_dataset("kvasir", raw, out)
    msg = str(info.value)
    assert "2 case(s)" in msg and img.name in msg and "no mask found" in msg and "nothing was written" in msg
    assert list(tmp_path.iterdir()) == [raw]


def test_wrong_layouts_explain_what_is_expected(raw_samples_root, tmp_path):
    with raises_naming(FileNotFoundError, str(raw_samples_root / "kvasir_seg"), "CVC-ClinicDB", "Original/",
                       "Ground Truth/"):
        convert_dataset("clinicdb", raw_samples_root / "kvasir_seg", tmp_path / "o")
    with raises_naming(FileNotFoundError, str(raw_samples_root / "kvasir_seg"), "BUSI", "Dataset_BUSI_with_GT/"):
        convert_dataset("busi", raw_samples_root / "kvasir_seg", tmp_path / "o")
    with pytest.raises(ValueError, match="unknown dataset 'kvasr'.*kvasir"):
        convert_dataset("kvasr", raw_samples_root / "kvasir_seg", tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="raw folder"):
        convert_dataset("kvasir", tmp_path / "nope", tmp_path / "o")
    with pytest.raises(ValueError, match="contains the input"):
        convert_dataset("kvasir", raw_samples_root / "kvasir_seg", raw_samples_root, overwrite=True)


def test_cli_convert(raw_samples_root, tmp_path, capsys):
    from vlsm.cli import main

    out = tmp_path / "bkai"
    assert main(["data", "convert", "bkai", str(raw_samples_root / "bkai_igh_neopolyp"), str(out),
                 "--seed", "3"]) == 0
    assert "converted bkai" in capsys.readouterr().out
    assert main(["data", "convert", "bkai", str(raw_samples_root / "bkai_igh_neopolyp"), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
