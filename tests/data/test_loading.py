"""`load_records`: one split per dataset folder, checked by the `vlsm data check` rules."""
from __future__ import annotations

import json
import shutil

import pytest

from vlsm.data import dataset_name, load_records
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
