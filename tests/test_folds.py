"""Issue 19: k-fold cross-validation on train+val (vlsm.data.subsets), grouped by patient, seeded and stable; the
folds' runs (vlsm sweep --folds) and their ensemble through vlsm.Predictor (vlsm evaluate RUN RUN -o)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from naming import raises_naming
from vlsm.data import Record
from vlsm.data.subsets import apply_subsets, assign_folds, cross_validation

PATTERN = r"^(patient\d+)_"


def patients(n_patients: int, sizes=(1, 2, 3, 4)) -> list:
    """Records of patients with 1-4 images each, named patientNNN_imgK."""
    out = []
    for p in range(n_patients):
        for k in range(sizes[p % len(sizes)]):
            name = f"patient{p:03d}_img{k}"
            out.append(Record(name, Path(f"/d/images/{name}.png"), Path(f"/d/masks/{name}.png")))
    return out


def test_folds_partition_train_and_val_with_no_patient_in_two_folds():
    recs = patients(40)
    train, val = recs[::3] + recs[1::3], recs[2::3]  # patients split across train and val as listed
    k = 5
    folds = [cross_validation(train, val, folds=k, fold=i, seed=0, pattern=PATTERN) for i in range(k)]
    vals = [{r.name for r in v} for _, v, _ in folds]
    everything = {r.name for r in recs}
    assert set().union(*vals) == everything and sum(map(len, vals)) == len(everything)  # a partition
    for (tr, _, _), names in zip(folds, vals):
        assert {r.name for r in tr} == everything - names  # each run trains on the other folds
    owner = {}
    for i, names in enumerate(vals):
        for name in names:
            assert owner.setdefault(name.split("_")[0], i) == i  # no patient in two folds
    sizes = sorted(map(len, vals))
    assert sizes[-1] - sizes[0] <= 4  # balanced by images (a patient has at most 4)
    # seeded and stable: the same folds from the same records in any order; another seed, other folds
    again = cross_validation(val[::-1], train[::-1], folds=k, fold=2, seed=0, pattern=PATTERN)[1]
    assert {r.name for r in again} == vals[2]
    assert {r.name for r in cross_validation(train, val, folds=k, fold=2, seed=1, pattern=PATTERN)[1]} != vals[2]


def test_images_alone_are_dealt_evenly_and_a_repeated_image_counts_once():
    recs = patients(23, sizes=(1,))
    assignment = assign_folds({r.name: 1 for r in recs}, 5, seed=3)
    assert sorted(np.bincount(list(assignment.values()))) == [4, 4, 5, 5, 5]
    train, val, _ = cross_validation(recs, recs[:3], folds=5, fold=0, seed=3)  # 3 images listed in both
    assert len(train) + len(val) == 23 and not {r.name for r in train} & {r.name for r in val}
    with raises_naming(ValueError, "--folds 30", "23", "at most 23 folds"):
        cross_validation(recs, [], folds=30, fold=0, seed=0)


def test_the_saved_patient_pattern_groups_the_folds(tmp_path):
    from vlsm.data.leakage import Leakage
    from vlsm.data.loading import LoadedDataset

    (tmp_path / "vlsm_convert.json").write_text(json.dumps({"patient_pattern": PATTERN}))
    recs = [Record(r.name, tmp_path / "images" / f"{r.name}.png", None) for r in patients(12)]
    loaded = LoadedDataset("ds", tmp_path, {"train": recs[:20], "val": recs[20:]}, Leakage("ds"))
    facts = apply_subsets(loaded, "train", "val", folds=3, fold=1, fraction=1.0, seed=0)
    assert facts.pattern == PATTERN and facts.counts["pool"] == len(recs)
    val_patients = {r.name.split("_")[0] for r in loaded.splits["val"]}
    assert not val_patients & {r.name.split("_")[0] for r in loaded.splits["train"]}
    assert "fold 1 of 3" in facts.describe() and "whole patients" in facts.describe()


@pytest.mark.parametrize("pairs, names", [  # the flag and key at fault, and the fix or the range and the value
    ([("data.fold", 1)], ("--fold (data.fold)", "--folds K")),
    ([("data.folds", 5)], ("--folds (data.folds)", "--fold I")),
    ([("data.folds", 3), ("data.fold", 3)], ("--fold (data.fold)", "0..data.folds-1 (2)", "got 3")),
    ([("data.folds", 1), ("data.fold", 0)], ("--folds (data.folds)", "at least 2", "got 1")),
])
def test_fold_settings_are_refused_in_one_line(pairs, names):
    from vlsm.config import COMMAND_LINE, ExperimentConfig, apply_overrides

    with raises_naming(ValueError, *names):
        apply_overrides(ExperimentConfig(), pairs, where=COMMAND_LINE)


@pytest.fixture(scope="module")
def fold_runs(tmp_path_factory):
    """Two folds of a tiny UNet-D on synthetic data, trained by vlsm sweep --folds 2 (and the folds' ensemble)."""
    from vlsm.api import sweep
    from vlsm.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("folds")
    data = make_synthetic_dataset(root / "syn", n_train=8, n_val=4, n_test=4, image_size=32, seed=2)
    exp = {"name": "cv", "model": {"name": "unet-d", "preset": "tiny", "overrides": {"image_size": 32}},
           "data": {"paths": [str(data)], "cache": False},
           "train": {"epochs": 1, "batch_size": 4, "num_workers": 0, "progress_bar": False, "seed": 1},
           "eval": {"splits": ["val", "test"]}}
    (root / "cv.yaml").write_text(yaml.safe_dump(exp))
    done = sweep([root / "cv.yaml"], out_root=root / "runs", folds=2)
    assert done.ok and len(done.trained) == 2
    return root, data, sorted(done.trained)


def test_each_fold_run_validates_on_its_fold(fold_runs):
    root, data, runs = fold_runs
    assert [r.name for r in runs] == ["cv-fold0", "cv-fold1"]
    held_out = []
    for i, run in enumerate(runs):
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert (config["data"]["folds"], config["data"]["fold"], config["name"]) == (2, i, f"cv-fold{i}")
        subset = json.loads((run / "summary.json").read_text())["train"]["data_subsets"]["syn"]
        assert (subset["pool"], subset["train"] + subset["val"], subset["fold"]) == (12, 12, i)
        names = (run / "eval" / "syn-val" / "per_case.csv").read_text().splitlines()[1:]
        held_out.append({line.split(",")[0] for line in names})
    assert not held_out[0] & held_out[1] and len(held_out[0] | held_out[1]) == 12  # the folds' val: train+val


def test_the_fold_ensemble_averages_the_folds_probabilities(fold_runs, capsys):
    from vlsm.cli import main
    from vlsm.predictor import Predictor

    root, data, runs = fold_runs
    image = next((data / "images").glob("*.png"))
    ensemble = Predictor([str(r) for r in runs], device="cpu")
    assert ensemble.label == "UNet-D [tiny] (2-fold ensemble)" and len(ensemble.models) == 2
    [p] = ensemble.predict(image)
    singles = [Predictor(str(r), device="cpu").predict(image)[0].probabilities for r in runs]
    assert np.allclose(p.probabilities, np.mean(singles, axis=0), atol=1e-6)
    assert np.array_equal(p.mask, p.probabilities > ensemble.threshold)
    out = root / "eval-ensemble"
    assert main(["evaluate", *map(str, runs), "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["label"] == "UNet-D [tiny] (2-fold ensemble)"
    assert summary["model"]["ensemble"] == [str(r) for r in runs]
    capsys.readouterr()
    assert main(["table", *map(str, runs), str(out), "--no-ci"]) == 0
    table = capsys.readouterr().out
    for row in ("UNet-D [tiny] (fold 0 of 2)", "UNet-D [tiny] (fold 1 of 2)", "UNet-D [tiny] (2-fold ensemble)"):
        assert f"| {row} |" in table
