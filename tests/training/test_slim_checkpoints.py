"""Slim training checkpoints: a CLIPSeg whose frozen encoder comes from a weight folder trains into a run
folder whose checkpoints and model/ hold only what training changes, resumes exactly, and is evaluated and
used for prediction from the slim files; a missing or changed source is one line."""
from __future__ import annotations

import csv
import shutil

import pytest
import torch
from safetensors.torch import load_file

from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset
from vlsm.models.frozen import frozen_keys
from vlsm.runs import RunFolder, load_trained_model
from weight_sources import clipseg_source, frozen_clipseg_experiment

TRAIN = ["train", "--model", "clipseg", "--preset", "tiny", "--batch-size", "4", "--num-workers", "0",
         "--no-progress", "--seed", "3", "--device", "cpu", "--precision", "32-true"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("slim")
    data = make_synthetic_dataset(root / "synthetic_polyp", n_train=8, n_val=4, n_test=4, image_size=48, seed=2)
    source, exp = frozen_clipseg_experiment(root)
    return data, source, exp


def _train(setup, out, *extra):
    data, _, exp = setup
    assert main(["train", "-c", str(exp), *TRAIN[5:], "--data", str(data), "--out", str(out), *extra]) == 0
    return RunFolder(out)


def _curve(run):
    with open(run.metrics_file, newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def straight(setup, tmp_path_factory):
    return _train(setup, tmp_path_factory.mktemp("runs") / "straight", "--epochs", "3", "--keep-checkpoints", "all")


def test_checkpoints_leave_out_the_sourced_frozen_tensors(straight):
    model, _ = load_trained_model(straight.path)
    frozen = set(frozen_keys(model))
    assert frozen and all(k.startswith("clipseg.clip.") for k in frozen)
    last = torch.load(straight.last_checkpoint, weights_only=True)
    best = torch.load(straight.best_checkpoint, weights_only=True)
    for ckpt in (last, best):
        keys = {k[len("model."):] for k in ckpt["state_dict"]}
        assert keys == set(model.state_dict()) - frozen
        assert ckpt["vlsm_frozen"]["keys"] == len(frozen) and ckpt["vlsm_frozen"]["digest"].startswith("sha256:")
    assert "optimizer_states" in last and "optimizer_states" not in best  # best.ckpt: weights only
    assert not straight.previous_last_checkpoint.exists()  # atomic rename, no third copy
    weights = load_file(str(straight.model_dir / "model.safetensors"))
    assert set(weights) == set(model.state_dict()) - frozen
    full = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    assert straight.last_checkpoint.stat().st_size < full / 3


def test_resume_from_a_slim_checkpoint_is_exact(setup, straight, tmp_path):
    split = _train(setup, tmp_path / "split", "--epochs", "1", "--keep-checkpoints", "all")
    assert main(["train", "--out", str(split.path), "--resume", "--epochs", "3"]) == 0
    assert _curve(split) == _curve(straight)
    a, b = (load_file(str(r.model_dir / "model.safetensors")) for r in (split, straight))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_slim_run_loads_from_checkpoint_and_model_folder_alike(straight):
    from_folder, _ = load_trained_model(straight.path)
    from_best, _ = load_trained_model(straight.best_checkpoint)
    a, b = from_folder.state_dict(), from_best.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_and_predict_a_slim_run(setup, straight, tmp_path, capsys):
    data, _, _ = setup
    assert main(["evaluate", str(straight.best_checkpoint), "--data", str(data), "-o", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "ev" / "per_case.csv").is_file()
    assert main(["predict", "-i", str(data / "images"), "-o", str(tmp_path / "pred"), "--checkpoint",
                 str(straight.path), "--prompt", "polyp"]) == 0
    assert len(list((tmp_path / "pred").glob("*.png"))) >= 4


def test_missing_or_changed_source_is_one_line(setup, straight, tmp_path, capsys):
    _, source, _ = setup
    moved = tmp_path / "moved"
    shutil.move(source, moved)
    try:
        for target in (straight.path, straight.last_checkpoint):
            assert main(["evaluate", str(target), "--data", str(setup[0]), "-o", str(tmp_path / "ev")]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "Traceback" not in err
            assert "is slim" in err and str(source) in err and "--standalone" in err
        clipseg_source(source, seed=9)  # other weights at the same place
        capsys.readouterr()
        assert main(["evaluate", str(straight.path), "--data", str(setup[0]), "-o", str(tmp_path / "ev")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "weights changed since training" in err
    finally:
        shutil.rmtree(source, ignore_errors=True)
        shutil.move(moved, source)


@pytest.mark.parametrize("keep,left", [("last", ["last.ckpt"]), ("none", [])])
def test_keep_checkpoints(setup, tmp_path, keep, left):
    run = _train(setup, tmp_path / keep, "--epochs", "1", "--keep-checkpoints", keep)
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == left
    assert run.status == "done"
    model, _ = load_trained_model(run.path)
    assert model.spec.name == "clipseg"


def test_a_finished_run_without_checkpoints_says_why_it_cannot_resume(setup, tmp_path, capsys):
    run = _train(setup, tmp_path / "none", "--epochs", "1", "--keep-checkpoints", "none")
    capsys.readouterr()
    assert main(["train", "--out", str(run.path), "--resume", "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoints were removed" in err and "keep_checkpoints" in err
