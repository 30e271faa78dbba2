"""examples/slurm/*.sbatch: valid bash, and their command lines run a tiny grid / run with a faked SLURM."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vlsm.claims import claim_path
from vlsm.data.synthetic import make_synthetic_dataset

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "slurm"
SCRIPTS = sorted(EXAMPLES.glob("*.sbatch"))
VLSM = f"{sys.executable} -m vlsm.cli"


@pytest.fixture()
def tiny_grid(tmp_path):
    data = make_synthetic_dataset(tmp_path / "syn", n_train=6, n_val=3, n_test=3, image_size=32, seed=1)
    grid = tmp_path / "grid"
    grid.mkdir()
    for name in ("a", "b"):
        exp = {"name": f"exp-{name}", "model": {"name": "unet-d", "preset": "tiny", "overrides": {"image_size": 32}},
               "data": {"paths": [str(data)]},
               "train": {"epochs": 1, "batch_size": 3, "num_workers": 0, "progress_bar": False, "seed": 1}}
        (grid / f"{name}.yaml").write_text(yaml.safe_dump(exp))
    return grid


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, "HF_HUB_OFFLINE": "1", "VLSM": VLSM, "VLSM_DATA_ROOT": str(tmp_path), **extra}


def test_scripts_are_valid_bash():
    assert {p.name for p in SCRIPTS} == {"sweep-array.sbatch", "train-multinode.sbatch"}
    for script in SCRIPTS:
        subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.slow  # the script runs `vlsm sweep` as a process
def test_array_script_trains_its_shard(tiny_grid, tmp_path):
    """Array task 1 of 2: the second run folder of the sorted grid, and nothing else."""
    env = _env(tmp_path, GRID=str(tiny_grid), OUT_ROOT=str(tmp_path / "runs"),
               SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_TASK_COUNT="2", SLURM_ARRAY_JOB_ID="7", SLURM_JOB_ID="8")
    proc = subprocess.run(["bash", str(EXAMPLES / "sweep-array.sbatch")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("shard 1/2: 1 of 2 runs")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["exp-b"]
    assert json.loads((tmp_path / "runs" / "exp-b" / "summary.json").read_text())["results"][0]["n"] == 3


@pytest.mark.slow  # the script runs `vlsm train` as a process
def test_multinode_script_runs_under_a_fake_srun(tiny_grid, tmp_path):
    """The DDP script's srun line, with one task on one node (a fake srun sets what SLURM would)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text("#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\n"
                    "SLURM_NTASKS=1 SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NODEID=0 SLURM_STEP_ID=0 exec \"$@\"\n")
    srun.chmod(0o755)
    out = tmp_path / "ddp" / "exp-a"
    env = _env(tmp_path, CONFIG=str(tiny_grid / "a.yaml"), OUT=str(out), SLURM_JOB_ID="9",
               SLURM_NTASKS_PER_NODE="1", SLURM_NNODES="1", PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(EXAMPLES / "train-multinode.sbatch")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"][0]["n"] == 3 and summary["train"]["devices"] == 1
    assert not claim_path(out).exists()
