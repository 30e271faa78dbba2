"""`vlsm tune` workers as separate processes on one SQLite study: two started together run the requested trials
between them, none twice; a worker killed with SIGKILL leaves its trial failed, and the study goes on (the trial's run
folder resumed) when a worker starts again. Slow: each worker is a Python process that imports torch."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from test_tune import write_experiment  # noqa: E402
from vlsm.data.synthetic import make_synthetic_dataset  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _worker(exp: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "vlsm.cli", "tune", "-c", str(exp), "--out", str(out),
                             "--heartbeat", "1", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(exp.parent))


def _trials(out: Path) -> list:
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


def _trainings(run: Path) -> int:
    """How many times training started in a run folder (each start logs the model line once)."""
    return (run / "log.txt").read_text().count("model unet-d (tiny preset)")


@pytest.fixture()
def data(tmp_path):
    return make_synthetic_dataset(tmp_path / "synthetic_polyp", n_train=8, n_val=4, n_test=2, image_size=32, seed=1)


def test_two_workers_share_one_study_and_run_each_trial_once(tmp_path, data):
    exp = write_experiment(tmp_path, data, trials=4)
    out = tmp_path / "study"
    workers = [_worker(exp, out, "--set", "train.epochs=1") for _ in range(2)]
    outputs = [w.communicate(timeout=240) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[1][-2000:] for o in outputs]
    trials = _trials(out)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4  # no surplus, no failure
    runs = [t.user_attrs["run"] for t in trials]
    assert runs == [f"trial-{n:04d}" for n in range(4)]
    assert [_trainings(out / run) for run in runs] == [1, 1, 1, 1]
    started = [line.split(" (")[0] for stdout, _ in outputs for line in stdout.splitlines()
               if line.startswith("trial ") and "(trial-" in line]
    assert sorted(started) == [f"trial {n}" for n in range(4)]  # each trial started by one worker, once
    assert all(f"trial {n}: complete" in "".join(o[0] for o in outputs) for n in range(4))


def test_a_killed_worker_leaves_its_trial_failed_and_the_study_goes_on(tmp_path, data):
    exp = write_experiment(tmp_path, data, trials=1)
    out = tmp_path / "study"
    first = _worker(exp, out, "--set", "train.epochs=4")
    checkpoint = out / "trial-0000" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not checkpoint.is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert checkpoint.is_file(), first.communicate()[1][-2000:]
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert [t.state.name for t in _trials(out)] == ["RUNNING"]  # (nobody told the study)

    second = _worker(exp, out, "--set", "train.epochs=4")
    stdout, stderr = second.communicate(timeout=240)
    assert second.returncode == 0, stderr[-2000:]
    trials = _trials(out)
    assert trials[0].state.name == "FAIL" and trials[0].user_attrs["run"] == "trial-0000"
    assert "trial 0 stopped without a word from its worker" in stderr + stdout
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].user_attrs["run"] == "trial-0000"
    assert retry[0].params == trials[0].params
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    log = (out / "trial-0000" / "log.txt").read_text()
    assert _trainings(out / "trial-0000") == 2 and "resuming" in log  # resumed from its checkpoint, not restarted
    epochs = [line.split(",")[0] for line in (out / "trial-0000" / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == [str(e) for e in range(4)]
