"""`read_dataset` and `load_records`: splits read, checked by the `vlsm data check` rules, and leakage found, once."""
from __future__ import annotations

import json
import shutil

import pytest

from naming import raises_naming
from vlsm.data import dataset_name, load_records, read_dataset
from vlsm.data.synthetic import make_synthetic_dataset


@pytest.fixture()
def truncated(tmp_path):
    """A synthetic dataset whose first training image is a truncated PNG."""
    made = make_synthetic_dataset(tmp_path / "src" / "syn_bad", n_train=4, n_val=2, n_test=2, image_size=32, seed=3)
    root = tmp_path / "syn_bad"
    shutil.copytree(made, root)
    first = json.loads((root / "anns" / "train.json").read_text())[0]
    victim = root / "images" / first["img_name"]
    victim.write_bytes(victim.read_bytes()[:40])
    return root, first["img_name"]


def test_dataset_name_is_the_folder_name(tmp_path):
    assert dataset_name(tmp_path / "data" / "kvasir_polyp") == "kvasir_polyp"
    assert dataset_name(str(tmp_path / "data" / "busi") + "/") == "busi"


def test_records_of_one_split_per_dataset(tmp_path):
    a = make_synthetic_dataset(tmp_path / "pool_a", n_train=3, n_val=2, n_test=1, image_size=32, seed=1)
    b = make_synthetic_dataset(tmp_path / "pool_b", n_train=2, n_val=1, n_test=1, image_size=32, seed=2)
    got = load_records([a, b], "train")
    assert [(name, len(recs)) for name, recs in got] == [("pool_a", 3), ("pool_b", 2)]
    assert all(r.dataset == name for name, recs in got for r in recs)


def test_bad_files_stop_loading_with_the_fix(truncated):
    root, victim = truncated
    with pytest.raises(ValueError, match="--skip-bad") as err:
        load_records([root], "train")
    assert victim in str(err.value)


def test_skip_bad_leaves_the_file_out_and_notes_it(truncated):
    root, victim = truncated
    notes = []
    [(name, records)] = load_records([root], "train", skip_bad=True, notes=notes)
    assert len(records) == 3 and all(r.image_path.name != victim for r in records)
    assert len(notes) == 1 and "leaving out 1 of 4 train images" in notes[0]
    # the other splits are fine, and an unchecked read keeps every record
    assert len(load_records([root], "val")[0][1]) == 2
    assert len(load_records([root], "train", check=False)[0][1]) == 4


def _leaky(tmp_path):
    """A synthetic dataset whose first training image is also listed in test."""
    made = make_synthetic_dataset(tmp_path / "src" / "leaky", n_train=4, n_val=2, n_test=2, image_size=32, seed=4)
    root = tmp_path / "leaky"
    shutil.copytree(made, root)
    train = json.loads((root / "anns" / "train.json").read_text())
    test = json.loads((root / "anns" / "test.json").read_text())
    (root / "anns" / "test.json").write_text(json.dumps(test + [train[0]]))
    return root, train[0]["img_name"].rsplit(".", 1)[0]


def test_read_dataset_reads_checks_and_finds_leakage_once(tmp_path, monkeypatch):
    from vlsm.data import check as check_mod
    from vlsm.data import leakage as leakage_mod
    from vlsm.data import listing as listing_mod
    from vlsm.data import loading as loading_mod
    from vlsm.data.decoded import DecodedCache

    root, leaked = _leaky(tmp_path)
    calls = {"anns": 0, "check": 0, "leakage": 0}

    def counted(name, module, attr):
        real = getattr(module, attr)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(module, attr, wrapper)

    counted("anns", listing_mod, "read_all_anns")
    counted("check", loading_mod, "check_listing")
    counted("leakage", loading_mod, "find_leakage")
    monkeypatch.setattr(leakage_mod, "split_overlaps", None)  # not the per-split path of before
    monkeypatch.setattr(check_mod, "find_leakage", None)      # the check reuses the leakage found
    cache = DecodedCache(tmp_path / "cache", 16)
    loaded = read_dataset(root, ["train", "val", "test"], decoded=cache, drop_overlap="train")
    assert calls == {"anns": 1, "check": 1, "leakage": 1}
    assert (loaded.name, loaded.path) == ("leaky", root) and list(loaded.splits) == ["train", "val", "test"]
    assert [len(v) for v in loaded.splits.values()] == [3, 2, 3]  # left out of train only, kept in test
    assert leaked not in {r.name for r in loaded.splits["train"]}
    assert loaded.leakage.to_dict() == {"train/test": [leaked]} and loaded.report.ok
    assert loaded.notes == [f"--drop-overlap: leaving out 1 train image(s) of {root} that are also in another "
                            f"split: {leaked}",
                            f"leakage: leaky: 1 image(s) in both train and test: {leaked}; they are used as listed "
                            f"in test (--drop-overlap leaves them out of the training split)"]
    assert len(list((tmp_path / "cache").rglob("*.bin"))) == 8  # the check filled the cache: one entry per image
    unchecked = read_dataset(root, "test", check=False)
    assert unchecked.report is None and len(unchecked.splits["test"]) == 3
    every = read_dataset(root, ["train", "test"], drop_overlap=True, check=False)
    assert [len(v) for v in every.splits.values()] == [3, 2]


def test_read_dataset_skips_bad_files_per_split_and_refuses_missing_splits(truncated):
    root, victim = truncated
    with pytest.raises(ValueError, match="failed its check") as err:
        read_dataset(root, ["train", "val"])
    assert victim in str(err.value) and "--skip-bad" in str(err.value)
    loaded = read_dataset(root, ["train", "val"], skip_bad=True)
    assert [len(v) for v in loaded.splits.values()] == [3, 2]
    assert len(loaded.notes) == 1 and "leaving out 1 of 4 train images" in loaded.notes[0]
    with raises_naming(FileNotFoundError, "'testB'", "train, val, test"):
        read_dataset(root, ["train", "testB"])


def test_read_dataset_refuses_large_images_before_decoding_them(tmp_path, monkeypatch):
    from PIL import Image

    from vlsm.data import check as check_mod

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    root = make_synthetic_dataset(tmp_path / "syn", n_train=2, n_val=1, n_test=1, image_size=32)
    monkeypatch.setattr(check_mod, "load_image", lambda p: (_ for _ in ()).throw(AssertionError("decoded")))
    with raises_naming(ValueError, "synth_0000.png", "32x32", "--max-pixels"):
        read_dataset(root, "train", max_pixels=1000)
