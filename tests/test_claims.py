"""Run-folder claims (vlsm.runs.claims): one process per run folder, stale claims taken over, nothing left behind."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from claim_helpers import forge_claim
from naming import raises_naming
from vlsm.runs import claims
from vlsm.runs.claims import RunClaimedError, claim_path, claim_run, claim_state, read_claim


def test_claim_is_a_hidden_file_beside_the_run_folder_and_is_released(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "900")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    run = tmp_path / "runs" / "exp-a"
    with claim_run(run) as claim:
        path = tmp_path / "runs" / ".exp-a.vlsm-claim"
        assert claim.path == path and path.is_file() and not run.exists()
        info = read_claim(run)
        assert (info.host, info.pid, info.slurm_job) == (socket.gethostname(), os.getpid(), "900_2")
        assert info.pid_start and info.started and not info.ready
        assert claim_state(run)[0] == claims.MINE
        claim.mark_ready()
        assert read_claim(run).ready and read_claim(run).token == info.token
        assert os.environ["VLSM_CLAIM_TOKEN"] == info.token
    assert not path.exists() and "VLSM_CLAIM_TOKEN" not in os.environ
    assert not (tmp_path / "runs").exists()  # the folder it created for the claim is gone again
    assert claim_state(run) == (claims.FREE, "free")


def test_nested_claims_share_the_outer_one_and_exceptions_release_it(tmp_path):
    run = tmp_path / "exp"
    with pytest.raises(RuntimeError, match="boom"):
        with claim_run(run) as outer:
            with claim_run(run) as inner:
                assert inner is outer
            assert claim_path(run).is_file()  # still held by the outer block
            raise RuntimeError("boom")
    assert not claim_path(run).exists()


def test_a_claim_held_by_a_live_process_is_refused_in_one_line(tmp_path, live_pid):
    run = tmp_path / "exp"
    forge_claim(run, pid=live_pid, age_s=3600)  # same host: age does not matter while the process runs
    assert claim_state(run)[0] == claims.HELD
    with pytest.raises(RunClaimedError) as err:
        with claim_run(run):
            pass
    message = str(err.value)
    assert "\n" not in message and f"pid {live_pid}" in message and "SLURM job 77_3" in message
    assert str(claim_path(run)) in message
    assert read_claim(run).pid == live_pid  # untouched


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over(tmp_path, dead_pid):
    run = tmp_path / "exp"
    forge_claim(run, pid=dead_pid)
    state, words = claim_state(run)
    assert state == claims.STALE and "no longer runs" in words
    with claim_run(run) as claim:
        assert read_claim(run).pid == os.getpid()
        assert f"process {dead_pid} no longer runs" in claim.took_over
    assert not claim_path(run).exists()


def test_a_reused_pid_is_not_mistaken_for_the_claimant(tmp_path, live_pid):
    run = tmp_path / "exp"
    path = forge_claim(run, pid=live_pid)
    info = json.loads(path.read_text())
    path.write_text(json.dumps({**info, "pid_start": "1"}))  # the claimant started at another time
    assert claim_state(run)[0] == claims.STALE


def test_another_hosts_claim_is_stale_only_after_the_quiet_time(tmp_path):
    run = tmp_path / "exp"
    run.mkdir()
    (run / "log.txt").write_text("epoch 3\n")
    forge_claim(run, pid=1, host="node-that-is-not-here", age_s=3600)
    assert claim_state(run)[0] == claims.HELD  # log.txt was written just now: the holder is working
    old = time.time() - 3600
    for p in (run / "log.txt", run):
        os.utime(p, (old, old))
    assert claim_state(run, stale_minutes=90)[0] == claims.HELD
    state, words = claim_state(run, stale_minutes=30)
    assert state == claims.STALE and "no activity for 60 minutes" in words
    with claim_run(run, stale_minutes=30) as claim:
        assert "node-that-is-not-here" in claim.took_over


def test_a_takeover_never_removes_a_claim_that_changed_meanwhile(tmp_path, dead_pid):
    run = tmp_path / "exp"
    path = forge_claim(run, pid=dead_pid)
    seen = path.read_bytes()
    forge_claim(run, pid=os.getppid(), token="a-fresh-claim")  # another worker got there first
    assert claims._take_over(path, seen) and read_claim(run).token == "a-fresh-claim"
    lock = path.with_name(path.name + ".takeover")
    lock.touch()  # another worker is replacing it this instant
    assert not claims._take_over(path, path.read_bytes()) and path.exists()
    old = time.time() - 120
    os.utime(lock, (old, old))  # ... or died doing so: its lock is cleared
    assert not claims._take_over(path, path.read_bytes()) and not lock.exists()


def test_other_ranks_wait_for_their_jobs_ready_claim(tmp_path, monkeypatch):
    run = tmp_path / "exp"
    monkeypatch.delenv("VLSM_CLAIM_TOKEN", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "55")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    path = forge_claim(run, pid=os.getppid(), ready=True)
    info = json.loads(path.read_text())
    path.write_text(json.dumps({**info, "job": "slurm:54.0.0"}))  # a claim of an earlier job
    with raises_naming(TimeoutError, "rank 0", str(run), "rank 0's error"):
        claims.wait_until_ready(run, timeout=0.2, poll=0.05)
    path.write_text(json.dumps({**info, "job": claims.ddp_job_key()}))
    assert claims.wait_until_ready(run, timeout=1).ready
    monkeypatch.setenv("VLSM_CLAIM_TOKEN", info["token"])  # Lightning's launcher passes the holder's token on
    assert claims.wait_until_ready(run, timeout=1).token == "someone-else"


def test_ddp_job_key():
    assert claims.ddp_job_key({}) is None
    assert claims.ddp_job_key({"SLURM_JOB_ID": "5", "SLURM_STEP_ID": "1"}) == "slurm:5.1.0"
    assert claims.ddp_job_key({"SLURM_JOB_ID": "5"}) is None  # the batch script itself, not an srun step
    assert claims.ddp_job_key({"TORCHELASTIC_RUN_ID": "abc", "TORCHELASTIC_RESTART_COUNT": "2"}) == "torchrun:abc.2"


def test_sigterm_releases_the_claim(tmp_path):
    """SIGTERM (SLURM's time limit) while a claim is held: SystemExit, the claim file is removed."""
    run = tmp_path / "exp"
    code = ("import sys, time\nfrom vlsm.claims import claim_run\n"
            f"with claim_run({str(run)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held" and claim_path(run).is_file()
    proc.terminate()
    assert proc.wait(timeout=30) == 143
    assert not claim_path(run).exists()


def test_older_import_name():
    """``vlsm.claims`` (the name training and older scripts import) is this module itself."""
    import vlsm.claims
    from vlsm.claims import claim_run as older

    assert vlsm.claims is claims and older is claim_run
