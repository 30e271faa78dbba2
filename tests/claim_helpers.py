"""What the claim tests share: a claim file as another process writes it, and live/dead pids to put in it."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

from vlsm.claims import claim_path


def forge_claim(run_dir, *, pid, host=None, token="someone-else", ready=False, age_s=0.0):
    """A claim file as another process would have written it."""
    path = claim_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"run": str(run_dir), "host": host or socket.gethostname(), "pid": pid, "pid_start": None,
            "started": "2025-01-01 00:00:00", "slurm_job": "77_3", "job": None, "command": "vlsm sweep",
            "token": token, "ready": ready}
    path.write_text(json.dumps(info))
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return path


@contextlib.contextmanager
def live_process():
    """The pid of a process that runs until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def reaped_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
