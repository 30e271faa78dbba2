"""Dataset readers: medvlsm layout (real split files), plain folders, layout detection, list_images."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naming import raises_naming
from vlsm.data import Record, detect_layout, list_images, load_split
from vlsm.data.folder import folder_splits, read_folder_split
from vlsm.data.leakage import find_leakage, split_overlaps
from vlsm.data.masks import save_mask
from vlsm.data.medvlsm import medvlsm_records, read_all_anns, read_medvlsm_split


@pytest.mark.parametrize("split,n", [("train", 800), ("val", 100), ("test", 100)])
def test_kvasir_splits(kvasir_root, split, n):
    recs = load_split(kvasir_root, split)
    assert len(recs) == n
    assert all(r.image_path.is_file() and r.mask_path.is_file() for r in recs)
    assert len({r.name for r in recs}) == n
    r = recs[0]
    assert isinstance(r, Record) and r.dataset == "kvasir_polyp"
    assert r.name == Path(r.image_path).stem
    assert r.prompts["p0"] == "" and r.prompts["p1"] == "polyp"
    assert isinstance(r.prompts["p9"], list)


@pytest.mark.parametrize("split,n", [("train", 490), ("val", 61), ("test", 61)])
def test_clinicdb_splits(clinicdb_root, split, n):
    recs = load_split(clinicdb_root, split)
    assert len(recs) == n
    assert all(r.image_path.is_file() and r.mask_path.is_file() for r in recs)
    assert recs[0].dataset == "clinicdb_polyp"


def test_real_splits_are_disjoint(kvasir_root, clinicdb_root):
    for root in (kvasir_root, clinicdb_root):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overlap warning for these two
            names = [set(r.name for r in load_split(root, s)) for s in ("train", "val", "test")]
        assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])


def test_missing_split_lists_available(kvasir_root):
    with raises_naming(FileNotFoundError, "'testC'", str(kvasir_root / "anns" / "testC.json"), "train, val, test"):
        load_split(kvasir_root, "testC")


def _mini_medvlsm(tmp_path: Path, names_by_split: dict, make_files=True) -> Path:
    root = tmp_path / "mini_ds"
    for sub in ("images", "masks", "anns"):
        (root / sub).mkdir(parents=True)
    for split, names in names_by_split.items():
        entries = []
        for n in names:
            entries.append({"img_name": f"{n}.jpg", "mask_name": f"{n}.png",
                            "prompts": {"p0": "", "p1": "thing", "p7": ["a", "b"]}})
            if make_files:
                Image.new("RGB", (8, 6)).save(root / "images" / f"{n}.jpg")
                save_mask(root / "masks" / f"{n}.png", np.ones((6, 8), bool))
        (root / "anns" / f"{split}.json").write_text(json.dumps(entries))
    return root


def test_missing_files_one_error_with_count_and_fix(tmp_path):
    root = _mini_medvlsm(tmp_path, {"train": [f"c{i}" for i in range(8)]})
    for i in range(7):
        (root / "images" / f"c{i}.jpg").unlink()
    (root / "masks" / "c7.png").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_split(root, "train")
    msg = str(info.value)
    assert "7 image(s)" in msg and "(7 in all)" in msg and "images/c0.jpg" in msg
    assert "1 mask(s): masks/c7.png" in msg
    assert "vlsm data convert" in msg


def test_entry_without_names_is_an_error(tmp_path):
    root = _mini_medvlsm(tmp_path, {"train": ["a"]})
    (root / "anns" / "val.json").write_text(json.dumps([{"img_name": "a.jpg"}]))
    with raises_naming(ValueError, str(root / "anns" / "val.json"), "entry 0", "'img_name'", "'mask_name'"):
        load_split(root, "val")
    (root / "anns" / "test.json").write_text("{not json")
    with raises_naming(ValueError, str(root / "anns" / "test.json"), "JSON", "vlsm data convert"):
        load_split(root, "test")


def test_empty_split_file_gives_empty_list(tmp_path):
    root = _mini_medvlsm(tmp_path, {"train": ["a"], "val": []})
    assert load_split(root, "val") == []


def test_overlaps_and_duplicates_are_read_as_published_and_found(tmp_path):
    root = _mini_medvlsm(tmp_path, {"train": ["a", "b", "b"], "val": ["a", "c"], "test": ["d"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading reports nothing: read_dataset and the data check do
        recs = load_split(root, "train")
    assert [r.name for r in recs] == ["a", "b", "b"]  # read as published
    leak = split_overlaps(root)
    assert leak.pairs == {("train", "val"): ["a"]} and leak.duplicates == {"train": ["b"]}
    assert [(r.name, n) for r, n in leak.repeated("train")] == [("b", 2)]
    assert leak.describe(duplicates=True) == ("mini_ds: 1 image(s) in both train and val: a; "
                                              "1 case(s) listed more than once in train: b")


def _anns_leakage(anns_dir):
    """The leakage of medvlsm's split files alone (no images needed)."""
    return find_leakage(medvlsm_records(anns_dir, read_all_anns(anns_dir)), anns_dir.name)


def test_real_overlaps_in_medvlsm_anns(medvlsm_anns_root):
    bkai = _anns_leakage(medvlsm_anns_root / "bkai_polyp")
    assert sum(len(v) for v in bkai.pairs.values()) == 3
    assert {k: len(v) for k, v in bkai.duplicates.items()} == {"train": 1}
    isic = _anns_leakage(medvlsm_anns_root / "isic")
    assert {k: len(v) for k, v in isic.pairs.items()} == {("train", "test"): 3}
    assert "isic" in isic.describe() and "in both train and test" in isic.describe()
    for clean in ("busi", "dfu", "colondb_polyp"):
        clean_leak = _anns_leakage(medvlsm_anns_root / clean)
        assert not clean_leak and not clean_leak.duplicates


def test_multi_mask_datasets_get_unique_names(tmp_path):
    root = tmp_path / "chex"
    for sub in ("images", "masks", "anns"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "images" / "p1.jpg")
    (root / "masks" / "mask_1").mkdir()
    for m in ("p1_opacity.png", "p1_edema.png", "mask_1/p1_gt.png"):
        save_mask(root / "masks" / m, np.zeros((4, 4), bool))
    entries = [{"img_name": "p1.jpg", "mask_name": m} for m in ("p1_opacity.png", "p1_edema.png", "mask_1/p1_gt.png")]
    (root / "anns" / "test.json").write_text(json.dumps(entries))
    recs = read_medvlsm_split(root, "test")
    assert [r.name for r in recs] == ["p1_opacity", "p1_edema", "mask_1__p1_gt"]


# -- plain folders ----------------------------------------------------------------------------------
def _plain(tmp_path: Path, n=20, mask_style="same", ext=".png") -> Path:
    root = tmp_path / "plain_ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.new("RGB", (6, 5)).save(root / "images" / f"case{i:02d}.jpg")
        mname = {"same": f"case{i:02d}{ext}", "suffix": f"case{i:02d}_mask{ext}"}[mask_style]
        save_mask(root / "masks" / mname, np.ones((5, 6), bool))
    return root


@pytest.mark.parametrize("style", ["same", "suffix"])
def test_folder_layout_hash_split(tmp_path, style):
    root = _plain(tmp_path, 20, style)
    assert detect_layout(root) == "folder"
    splits = {s: load_split(root, s) for s in ("train", "val", "test")}
    assert [len(v) for v in splits.values()] == [16, 2, 2]  # ~80/10/10 by a hash of each name
    names = [r.name for v in splits.values() for r in v]
    assert sorted(names) == [f"case{i:02d}" for i in range(20)]
    assert splits["train"][0].prompts == {"p0": "", "p1": "object"}
    assert splits["train"][0].dataset == "plain_ds"
    assert all(r.mask_path.is_file() for v in splits.values() for r in v)
    # deterministic, and another seed gives another split
    assert [r.name for r in load_split(root, "val")] == [r.name for r in splits["val"]]
    other = [r.name for r in load_split(root, "val", seed=5)]
    assert other != [r.name for r in splits["val"]]
    assert load_split(root, "test", class_name="polyp")[0].prompts["p1"] == "polyp"


def test_folder_split_is_stable_when_files_are_added(tmp_path):
    from vlsm.data._util import stable_split

    root = _plain(tmp_path, 30)
    before = {s: [r.name for r in load_split(root, s)] for s in ("train", "val", "test")}
    assert before["val"] and before["test"]
    for i in range(30, 90):  # add 60 images (and remove one)
        Image.new("RGB", (6, 5)).save(root / "images" / f"case{i:02d}.jpg")
        save_mask(root / "masks" / f"case{i:02d}.png", np.ones((5, 6), bool))
    (root / "images" / "case07.jpg").unlink()
    after = {s: [r.name for r in load_split(root, s)] for s in ("train", "val", "test")}
    for s in before:
        assert set(before[s]) - {"case07"} <= set(after[s]), s  # nobody moved
    assert sum(map(len, after.values())) == 89 and not list(root.glob("*.json"))  # nothing written
    big = stable_split([f"k{i}" for i in range(10000)])
    assert [round(len(v) / 200) for v in big.values()] == [40, 5, 5]  # within 1 %
    fewer = stable_split([f"k{i}" for i in range(0, 10000, 3)])
    assert all(set(fewer[s]) <= set(big[s]) for s in big)


def test_folder_split_files(tmp_path):
    root = _plain(tmp_path, 6)
    (root / "splits.json").write_text(json.dumps({"train": ["case00", "case01.jpg"], "test": ["case05"]}))
    assert [r.name for r in load_split(root, "train")] == ["case00", "case01"]
    with pytest.raises(FileNotFoundError, match="available splits: train, test"):
        load_split(root, "val")
    (root / "splits.json").unlink()
    (root / "train.txt").write_text("case02\ncase03\n\n")
    (root / "val.txt").write_text("case04\nmissing_case\n")
    assert [r.name for r in load_split(root, "train")] == ["case02", "case03"]
    with pytest.raises(FileNotFoundError, match="missing_case"):
        load_split(root, "val")


def test_folder_images_without_masks(tmp_path):
    root = _plain(tmp_path, 5)
    (root / "masks" / "case01.png").unlink()
    (root / "masks" / "case03.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"2 image\(s\).*case01.jpg, case03.jpg"):
        load_split(root, "train")
    assert sum(len(v) for v in folder_splits(root).values()) == 5
    recs = [r for s in ("train", "val", "test") for r in read_folder_split(root, s, require_masks=False)]
    assert sorted(r.name for r in recs if r.mask_path is None) == ["case01", "case03"]


def test_folder_ambiguous_and_clashing_names(tmp_path):
    root = _plain(tmp_path, 3)
    save_mask(root / "masks" / "case00_mask.png", np.ones((5, 6), bool))
    with raises_naming(ValueError, str(root / "masks"), "case00", "one mask per image"):
        load_split(root, "train")
    (root / "masks" / "case00_mask.png").unlink()
    Image.new("RGB", (6, 5)).save(root / "images" / "case01.png")
    with raises_naming(ValueError, str(root / "images"), "case01", "Rename or remove"):
        load_split(root, "train")


def test_unknown_layout_describes_both(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_split(tmp_path / "stuff", "train")
    msg = str(info.value)
    assert "medvlsm layout" in msg and "anns/{train,val,test}.json" in msg and "plain folder" in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_split(tmp_path / "nothing", "train")


# -- prediction inputs ------------------------------------------------------------------------------
def test_list_images(tmp_path):
    d = tmp_path / "inputs"
    d.mkdir()
    for n in ("b.png", "a.jpg", "c.TIFF"):
        Image.new("RGB", (4, 4)).save(d / n)
    (d / "notes.txt").write_text("x")
    (d / "sub").mkdir()
    recs = list_images(d)
    assert [r.name for r in recs] == ["a", "b", "c"]
    assert all(r.mask_path is None and r.dataset == "inputs" for r in recs)
    one = list_images([d / "b.png", str(d / "a.jpg")])
    assert [r.name for r in one] == ["b", "a"]
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (4, 4)).save(other / "a.png")
    both = list_images([d, other])
    assert len({r.name for r in both}) == 4  # the two "a" images get distinct names
    with raises_naming(ValueError, str(d / "notes.txt"), ".png"):
        list_images(d / "notes.txt")
    with pytest.raises(FileNotFoundError, match="no image files"):
        list_images(d / "sub")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "missing")


def test_list_images_of_a_dataset_root(kvasir_root):
    recs = list_images(kvasir_root)
    assert len(recs) == 1000 and recs == sorted(recs, key=lambda r: r.image_path.name)
