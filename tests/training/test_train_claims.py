"""vlsm train and the run-folder claim: released on SIGTERM; in DDP only global rank 0 claims and prepares."""
import os
import signal
import subprocess
import sys
import time

import lightning
import pytest
import torch

from claim_helpers import forge_claim
from tiny_runs import TRAIN
from vlsm.claims import RunClaim, claim_path, ddp_job_key, read_claim
from vlsm.cli import build_parser
from vlsm.commands.train import config_from_args
from vlsm.data.synthetic import make_synthetic_dataset
from vlsm.runs import RunFolder
from vlsm.training.run import _launched_rank, train

DDP_VARIABLES = ("SLURM_NTASKS", "SLURM_PROCID", "SLURM_JOB_NAME", "SLURM_JOB_ID", "SLURM_STEP_ID", "RANK",
                 "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID",
                 "VLSM_CLAIM_TOKEN")


@pytest.fixture()
def data(tmp_path):
    return make_synthetic_dataset(tmp_path / "syn", n_train=8, n_val=4, n_test=4, image_size=32, seed=1)


@pytest.mark.parametrize("env, rank", [
    ({}, 0),
    ({"LOCAL_RANK": "1"}, 1),                                   # Lightning's launcher, second GPU
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, 1),                 # ... first GPU of the second node: not rank 0
    ({"LOCAL_RANK": "0", "GROUP_RANK": "1", "LOCAL_WORLD_SIZE": "4"}, 4),
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "4", "LOCAL_RANK": "0"}, 4),  # srun: second node's first task
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "0"}, 0),
    ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "bash", "LOCAL_RANK": "2"}, 2),  # interactive
    ({"TORCHELASTIC_RUN_ID": "x", "RANK": "5", "LOCAL_RANK": "1"}, 5),  # torchrun
    ({"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "LOCAL_RANK": "0", "NODE_RANK": "1"}, 0),
])
def test_launched_rank_is_the_global_rank(env, rank):
    assert _launched_rank(env) == rank


def _cfg(argv):
    return config_from_args(build_parser().parse_args(argv))


class _StopAtTrainer(Exception):
    pass


def _record_trainer(monkeypatch):
    """Lightning's Trainer replaced by a recorder that stops training where it would start."""
    seen = {}

    def trainer(**kwargs):
        seen.update(kwargs)
        raise _StopAtTrainer()

    monkeypatch.setattr(lightning, "Trainer", trainer)
    return seen


def test_srun_rank_0_claims_and_prepares_and_passes_num_nodes(data, tmp_path, monkeypatch):
    for name in DDP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {"SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_JOB_ID": "41", "SLURM_STEP_ID": "0"}.items():
        monkeypatch.setenv(name, value)
    seen = _record_trainer(monkeypatch)
    out = tmp_path / "run"
    claimed = {}
    real_mark_ready = RunClaim.mark_ready

    def mark_ready(self):
        real_mark_ready(self)
        claimed.update(vars(read_claim(out)))

    monkeypatch.setattr(RunClaim, "mark_ready", mark_ready)
    with pytest.raises(_StopAtTrainer):
        train(_cfg([*TRAIN, "--data", str(data), "--out", str(out), "--num-nodes", "2", "--epochs", "1"]))
    assert seen["num_nodes"] == 2 and seen["devices"] == 1
    assert claimed["ready"] and claimed["job"] == "slurm:41.0.0" and claimed["pid"] == os.getpid()
    assert RunFolder(out).config_file.is_file() and RunFolder(out).marker_file.is_file()
    assert not claim_path(out).exists()  # released on the way out


def test_srun_rank_1_waits_for_rank_0_and_leaves_the_folder_to_it(data, tmp_path, monkeypatch):
    for name in DDP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_JOB_ID": "41", "SLURM_STEP_ID": "0"}.items():
        monkeypatch.setenv(name, value)
    seen = _record_trainer(monkeypatch)
    out = tmp_path / "run"
    RunFolder(out).prepare()  # as rank 0 did
    claim = forge_claim(out, pid=os.getppid(), token="rank-0", ready=True)
    claim.write_text(claim.read_text().replace('"job": null', f'"job": "{ddp_job_key()}"'))
    before = claim.read_bytes()
    with pytest.raises(_StopAtTrainer):
        train(_cfg([*TRAIN, "--data", str(data), "--out", str(out), "--num-nodes", "2", "--epochs", "1"]))
    assert seen["num_nodes"] == 2
    assert claim.read_bytes() == before  # rank 1 neither claims nor releases
    assert not RunFolder(out).config_file.exists()  # rank 0 writes config.yaml


@pytest.mark.slow  # a `vlsm train` process receives the signal
def test_sigterm_during_training_releases_the_claim_and_the_run_resumes(data, tmp_path):
    """SLURM's time limit sends SIGTERM: the process exits 143, its claim is gone, --resume continues."""
    out = tmp_path / "run"
    argv = [*TRAIN, "--data", str(data), "--out", str(out), "--epochs", "400"]
    proc = subprocess.Popen([sys.executable, "-m", "vlsm.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (RunFolder(out).last_checkpoint.is_file() and claim_path(out).is_file()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
            time.sleep(0.2)
        assert read_claim(out).pid == proc.pid
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, output
    assert not claim_path(out).exists()
    assert RunFolder(out).status == "resume"


def test_sigterm_inside_a_checkpoint_write_lands_after_the_file_is_in_place(tmp_path, monkeypatch):
    """The claim's SIGTERM handler raises SystemExit(143). Raised inside torch's zip writer it would come
    out as RuntimeError ("unexpected pos") with a traceback; it must wait for the complete file."""
    from vlsm.training import checkpoint_io

    real_save = torch.save

    class SignalOnFirstWrite:
        def __init__(self, fh):
            self.fh, self.sent = fh, False

        def write(self, data):
            if not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGTERM)
            return self.fh.write(data)

        def flush(self):
            self.fh.flush()

    def exit_143(signum, frame):
        raise SystemExit(143)

    monkeypatch.setattr(checkpoint_io.torch, "save", lambda obj, fh: real_save(obj, SignalOnFirstWrite(fh)))
    previous = signal.signal(signal.SIGTERM, exit_143)
    try:
        with pytest.raises(SystemExit) as exited:
            checkpoint_io.save_atomically({"weights": torch.arange(50_000.0)}, tmp_path / "last.ckpt")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exited.value.code == 143
    assert torch.equal(torch.load(tmp_path / "last.ckpt")["weights"], torch.arange(50_000.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
