"""Exact resume: a `vlsm train` killed with SIGKILL mid-run and resumed ends with the same learning
curve and the same weights as the run that was never interrupted (CPU, fp32)."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from vlsm.data.synthetic import make_synthetic_dataset

EPOCHS = 6


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = make_synthetic_dataset(root / "synthetic_polyp", n_train=16, n_val=6, n_test=4, image_size=48, seed=5)
    exp = {"model": {"name": "unet-d", "preset": "tiny", "overrides": {"image_size": 48}},
           "data": {"paths": [str(data)], "augment": True},
           # a high rate and patience 0: the validation loss jumps and the plateau scheduler acts, so its
           # state and the moment it steps matter
           "train": {"epochs": EPOCHS, "batch_size": 4, "seed": 7, "precision": "32-true", "device": "cpu", "lr": 0.05,
                     "progress_bar": False, "scheduler_patience": 0, "scheduler_factor": 0.5}}
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def _cmd(exp, out, *extra):
    return [sys.executable, "-m", "vlsm.cli", "train", "-c", str(exp), "--out", str(out), *extra]


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc


def _curve(run):
    """metrics.csv without the wall-clock column."""
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def _epochs_logged(run) -> int:
    try:
        with open(run / "metrics.csv", newline="") as fh:
            return len(list(csv.DictReader(fh)))
    except FileNotFoundError:
        return 0


def _assert_same_weights(a, b):
    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    la = torch.load(a / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    lb = torch.load(b / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(la[k], lb[k]) for k in la)


@pytest.mark.slow  # two `vlsm train` processes each, one killed: the process boundary is the point
@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_mid_run_then_resume_equals_the_uninterrupted_run(experiment, tmp_path, workers):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    flags = ("--num-workers", str(workers))
    _run(_cmd(experiment, straight, *flags))
    assert len(_curve(straight)) == EPOCHS

    proc = subprocess.Popen(_cmd(experiment, killed, *flags), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while _epochs_logged(killed) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its DataLoader workers, mid-epoch
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    assert not (killed / "summary.json").exists() and (killed / "checkpoints" / "last.ckpt").is_file()
    assert 2 <= _epochs_logged(killed) < EPOCHS

    # --resume reads the run's own config.yaml: no other flag is needed
    _run([sys.executable, "-m", "vlsm.cli", "train", "--out", str(killed), "--resume", *flags])
    assert _curve(killed) == _curve(straight)
    assert len({row["lr"] for row in _curve(straight)}) > 1  # the scheduler did act
    _assert_same_weights(killed, straight)


def test_a_run_whose_config_yaml_an_older_version_wrote_resumes(tmp_path):
    """fixtures/config-f4f8edf.yaml is a run's config.yaml as vlsm f4f8edf (before the schema) wrote it: this
    version writes the same bytes for the same run, and `--resume` of such a run continues it."""
    from pathlib import Path

    from vlsm.cli import main

    data = make_synthetic_dataset(tmp_path / "synthetic_polyp", n_train=8, n_val=4, n_test=4, image_size=32, seed=1)
    out = tmp_path / "run"
    fixture = Path(__file__).parent / "fixtures" / "config-f4f8edf.yaml"
    text = fixture.read_text().replace("'@OUT@'", str(out)).replace("'@DATA@'", str(data))
    text = text.replace("'@CACHE@'", str(tmp_path / "cache"))  # (plain paths need no quotes in YAML)
    exp = tmp_path / "exp.yaml"
    exp.write_text(text)
    assert main(["train", "-c", str(exp)]) == 0
    written = (out / "config.yaml").read_text().splitlines()
    # byte for byte what the older version wrote, plus the lines of the options added since
    from test_config import ADDED_SINCE_F4F8EDF, added_lines

    assert added_lines(text, "\n".join(written)) == ADDED_SINCE_F4F8EDF
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2"]) == 0
    assert len(_curve(out)) == 2
