"""`vlsm evaluate --zero-shot`: a pretrained VLSM scored without training, per prompt type."""
import json

import pytest
import torch

from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset
from vlsm.models.vlsm_base import load_config_json


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


@pytest.fixture()
def clipseg_weights(tmp_path, offline):
    """A tiny transformers CLIPSeg folder standing in for CIDAS/clipseg-rd64-refined."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    torch.manual_seed(0)
    CLIPSegForImageSegmentation(CLIPSegConfig(**load_config_json("clipseg_tiny.json"))).save_pretrained(
        tmp_path / "clipseg-tiny")
    return tmp_path / "clipseg-tiny"


def test_zero_shot_prompt_sweep_gives_one_row_per_prompt(clipseg_weights, tmp_path, capsys):
    data = make_synthetic_dataset(tmp_path / "syn", n_train=1, n_val=1, n_test=3, image_size=32, seed=7)
    out = tmp_path / "zs"
    assert main(["evaluate", "--zero-shot", "--model", "clipseg", "--preset", "tiny", "--pretrained",
                 str(clipseg_weights), "--data", str(data), "--prompt", "all", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    results = {}
    for p in [f"p{i}" for i in range(10)]:
        s = json.loads((out / f"syn-test-{p}" / "summary.json").read_text())
        assert s["zero_shot"] is True and s["model"]["pretrained"] == str(clipseg_weights)
        [r] = s["results"]
        assert r["prompt"] == p and r["n"] == 3
        results[p] = r["dice_mean"]
        assert f"CLIPSeg [tiny] {p}" in printed
    # each row used its own prompt text: p0 is empty, p1 the class name
    import csv

    for p, want in (("p0", {""}), ("p1", {"polyp"})):
        with open(out / f"syn-test-{p}" / "per_case.csv", newline="") as fh:
            assert {row["prompt"] for row in csv.DictReader(fh)} == want


def test_zero_shot_needs_model_and_refuses_checkpoint_mix(tmp_path, capsys):
    assert main(["evaluate", "--zero-shot", "--data", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert "--model" in capsys.readouterr().err
    # a checkpoint together with --zero-shot --model: which model to score is ambiguous
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    assert main(["evaluate", str(ckpt), "--zero-shot", "--model", "unet-d", "--data", str(tmp_path),
                 "-o", str(tmp_path / "o")]) == 2
    assert "do not also give a checkpoint" in capsys.readouterr().err
    # a checkpoint with --model (no --zero-shot): the checkpoint already knows its model
    assert main(["evaluate", str(ckpt), "--model", "unet-d", "--data", str(tmp_path),
                 "-o", str(tmp_path / "o")]) == 2
    assert "a checkpoint already knows its model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_weights_fail_fast_with_the_fix(tmp_path, offline, capsys):
    data = make_synthetic_dataset(tmp_path / "syn", n_train=1, n_val=1, n_test=1, image_size=32, seed=7)
    assert main(["evaluate", "--zero-shot", "--model", "clipseg", "--pretrained", str(tmp_path / "nowhere"),
                 "--data", str(data), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err
    assert not (tmp_path / "o").exists()


def test_ensemble_trained_from_backbone_folder_reloads_without_it(clipseg_weights, tmp_path):
    """A run's model folder and .ckpt hold every weight: the backbone source may be gone later."""
    import shutil

    data = make_synthetic_dataset(tmp_path / "syn", n_train=2, n_val=1, n_test=2, image_size=64, seed=7)
    out = tmp_path / "run"
    assert main(["train", "--model", "clipseg-b", "--preset", "tiny", "--set",
                 f"clipseg={{pretrained: {clipseg_weights}}}", "--data", str(data), "--out", str(out),
                 "--epochs", "1", "--batch-size", "2", "--num-workers", "0", "--no-progress",
                 "--keep-checkpoints", "all"]) == 0  # (its encoder trains: nothing frozen, so nothing is slim)
    want = json.loads((out / "summary.json").read_text())["results"][0]["dice_mean"]
    shutil.rmtree(clipseg_weights)
    for source, dest in ((out, "ev1"), (out / "checkpoints" / "best.ckpt", "ev2")):
        assert main(["evaluate", str(source), "--data", str(data), "-o", str(tmp_path / dest)]) == 0
        got = json.loads((tmp_path / dest / "summary.json").read_text())["results"][0]["dice_mean"]
        assert got == pytest.approx(want)
