"""vlsm sweep --shard K/N and run-folder claims: workers split a grid and never train the same run."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from claim_helpers import forge_claim
from naming import refused
from tiny_runs import TRAIN
from vlsm.api.sweeps import plan_sweep as plan
from vlsm.api.sweeps import shard_of
from vlsm.claims import claim_path
from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset

PAPER = sorted((Path(__file__).resolve().parents[2] / "experiments" / "paper").glob("*.yaml"))

@pytest.fixture()
def grid(tmp_path):
    """Three tiny UNet-D experiments on one synthetic dataset."""
    data = make_synthetic_dataset(tmp_path / "syn", n_train=6, n_val=3, n_test=3, image_size=32, seed=1)
    files = []
    for name in ("a", "b", "c"):
        exp = {"name": f"exp-{name}", "model": {"name": "unet-d", "preset": "tiny", "overrides": {"image_size": 32}},
               "data": {"paths": [str(data)]},
               "train": {"epochs": 1, "batch_size": 3, "num_workers": 0, "progress_bar": False, "seed": 1}}
        f = tmp_path / f"{name}.yaml"
        f.write_text(yaml.safe_dump(exp))
        files.append(f)
    return files


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1", "a/b", "0/0", ""])
def test_bad_shard_is_one_line(grid, text, capsys):
    err = refused(capsys, ["sweep", *grid, f"--shard={text}", "--dry-run"], re.compile("^vlsm sweep: error: --shard"))
    if text == "4/4":
        assert "K must be 0..3" in err and "--array=0-3" in err


def test_shards_split_the_paper_grid_whatever_the_file_order(monkeypatch, tmp_path):
    monkeypatch.setenv("VLSM_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("VLSM_WEIGHTS", str(tmp_path / "weights"))
    items = plan(PAPER, str(tmp_path / "runs"))
    assert len(items) == 35
    shards = [[str(out) for *_, out, _ in shard_of(items, k, 4)] for k in range(4)]
    assert sorted(len(s) for s in shards) == [8, 9, 9, 9]
    assert sorted(sum(shards, [])) == sorted(str(out) for *_, out, _ in items)  # each run in exactly one shard
    shuffled = plan(list(reversed(PAPER)), str(tmp_path / "runs"))
    assert [sorted(str(out) for *_, out, _ in shard_of(shuffled, k, 4)) for k in range(4)] == \
        [sorted(s) for s in shards]
    models = {Path(out).name.rsplit("-", 1)[0] for out in shards[0]}
    assert len(models) >= 4  # neighbouring runs (one model, five datasets) go to different workers


def test_dry_run_shows_shard_and_claims(grid, tmp_path, capsys, live_pid, dead_pid):
    root = tmp_path / "runs"
    forge_claim(root / "exp-a", pid=live_pid)
    forge_claim(root / "exp-b", pid=dead_pid)
    assert main(["sweep", *map(str, grid), "--out-root", str(root), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"claimed by {os.uname().nodename} pid {live_pid}, SLURM job 77_3" in lines[0]
    assert "stale claim" in lines[1] and "no longer runs" in lines[1] and "taken over" in lines[1]
    assert lines[2].endswith("[free]")
    assert main(["sweep", *map(str, grid), "--out-root", str(root), "--dry-run", "--shard", "1/2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "shard 1/2: 1 of 3 runs (run folders no. 2 of the 3 in sorted order)"
    assert len(out) == 3 and "exp-b" in out[1] and out[2] == "1 run(s) (1 new) from 3 experiment file(s)"
    assert not (root / "exp-a").exists()


def test_workers_skip_claimed_runs_and_take_over_stale_ones(grid, tmp_path, capsys, live_pid, dead_pid):
    root = tmp_path / "runs"
    forge_claim(root / "exp-a", pid=live_pid)  # another worker trains it
    forge_claim(root / "exp-b", pid=dead_pid)  # a worker that was killed
    assert main(["sweep", *map(str, grid), "--out-root", str(root)]) == 0
    out = capsys.readouterr()
    assert f"skipped {grid[0]}: {root / 'exp-a'} is being trained by another process" in out.out
    assert "1 run(s) skipped" in out.out
    assert f"process {dead_pid} no longer runs" in out.err
    assert not (root / "exp-a").exists() and claim_path(root / "exp-a").is_file()
    for name in ("exp-b", "exp-c"):
        assert (root / name / "summary.json").is_file() and not claim_path(root / name).exists()
    assert "took over" in (root / "exp-b" / "log.txt").read_text()


def test_second_train_on_the_same_folder_is_refused(grid, tmp_path, capsys, live_pid):
    out = tmp_path / "runs" / "r"
    forge_claim(out, pid=live_pid)
    data = yaml.safe_load(grid[0].read_text())["data"]["paths"][0]
    refused(capsys, [*TRAIN, "--data", data, "--out", out, "--epochs", "1"], re.compile("^vlsm train: error: "),
            str(out), "another process", str(claim_path(out)))
    assert not out.exists()


def test_two_experiments_writing_one_folder_are_refused(grid, tmp_path, capsys):
    twin = tmp_path / "twin.yaml"
    twin.write_text(grid[0].read_text())
    assert main(["sweep", str(grid[0]), str(twin), "--out-root", str(tmp_path / "runs"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "both write" in err and "exp-a" in err


@pytest.mark.slow
def test_two_workers_sharing_a_list_train_each_run_once(grid, tmp_path):
    """Two `vlsm sweep` processes started together on the same three experiments, no --shard."""
    root = tmp_path / "runs"
    cmd = [sys.executable, "-m", "vlsm.cli", "sweep", *map(str, grid), "--out-root", str(root)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
               for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert sum(o.count("\n=== ") for o in outputs) == 3, outputs  # three trainings in all
    for name in ("exp-a", "exp-b", "exp-c"):
        summary = json.loads((root / name / "summary.json").read_text())
        assert summary["results"][0]["n"] == 3
        assert not claim_path(root / name).exists()
