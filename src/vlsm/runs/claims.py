"""Run-folder claims: one training process per run folder, however many workers share a grid.

Before ``vlsm train`` (or a ``vlsm sweep`` worker) touches a run folder ``ROOT/NAME`` it creates the
claim file ``ROOT/.NAME.vlsm-claim`` atomically (a complete file hard-linked into place, which fails
if one exists, on NFS too). The claim sits beside the run folder, not in it: it must exist before
the folder does and survive ``--overwrite``, which replaces the folder. It holds the claimant's host,
pid, start time, SLURM job and command. It is removed when training ends, fails, or is interrupted
(Ctrl-C, or SIGTERM, which SLURM sends at a job's time limit: the claim turns SIGTERM into
``SystemExit`` while it is held, so the cleanup runs). The holder touches the file every
:data:`HEARTBEAT_SECONDS`.

A claim is **stale**, and is taken over with a message, when its process is gone (same host: the pid
no longer runs), or, for a claim from another host, when neither the claim file nor the run folder
(its log, learning curve and checkpoints) changed for ``stale_minutes``
(:data:`DEFAULT_STALE_MINUTES`; ``vlsm sweep --stale-after``). Any other claim is **held**: a second
``vlsm train --out RUN`` is refused with one line, a sweep worker skips the run. Taking over goes
through a short lock file, so two workers never both replace the same stale claim.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

from vlsm.errors import UserError
from vlsm.runs.layout import RunFolder

CLAIM_SUFFIX = ".vlsm-claim"
#: how often the holder touches its claim file (the activity that keeps a claim from another host alive)
HEARTBEAT_SECONDS = 60.0
#: a claim from another host with no activity for this long is stale (vlsm sweep --stale-after)
DEFAULT_STALE_MINUTES = 15.0
#: a takeover lock older than this was left by a process that died while taking over (it lasts milliseconds)
_TAKEOVER_LOCK_SECONDS = 60.0
#: set by the claim holder for the DDP workers Lightning starts by re-running the command
_TOKEN_ENV = "VLSM_CLAIM_TOKEN"

FREE, MINE, HELD, STALE = "free", "mine", "held", "stale"
PathLike = Union[str, Path]


class RunClaimedError(UserError):
    """The run folder is being trained by another live process."""


@dataclass
class ClaimInfo:
    """What a claim file says about its holder."""

    run: str
    host: str
    pid: int
    pid_start: Optional[str]  # the process's start tick (Linux), so that a reused pid is not mistaken for it
    started: str
    slurm_job: Optional[str]
    job: Optional[str]  # the DDP job this process belongs to (SLURM or torchrun ids): its other ranks wait for it
    command: str
    token: str
    ready: bool = False  # the run folder is prepared: the other DDP ranks may start

    def describe(self) -> str:
        job = f", SLURM job {self.slurm_job}" if self.slurm_job else ""
        return f"{self.host} pid {self.pid}{job}, since {self.started}"


def claim_path(run_dir: PathLike) -> Path:
    """``ROOT/.NAME.vlsm-claim`` for the run folder ``ROOT/NAME``."""
    run_dir = Path(os.path.abspath(run_dir))
    return run_dir.parent / f".{run_dir.name}{CLAIM_SUFFIX}"


def read_claim(run_dir: PathLike) -> Optional[ClaimInfo]:
    """The claim on ``run_dir`` (None when there is none or it cannot be read)."""
    try:
        return _parse(claim_path(run_dir).read_bytes())
    except OSError:
        return None


def claim_state(run_dir: PathLike, stale_minutes: float = DEFAULT_STALE_MINUTES) -> tuple[str, str]:
    """``(state, words)``: free, mine (this process holds it), held (by the process described) or stale
    (why), for ``vlsm sweep --dry-run``."""
    path = claim_path(run_dir)
    if str(path) in _HELD:
        return MINE, "claimed by this process"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return FREE, "free"
    info = _parse(raw)
    reason = _stale_reason(path, info, Path(run_dir), stale_minutes)
    who = info.describe() if info else "an unreadable claim"
    if reason:
        return STALE, f"stale claim ({who}: {reason}); it will be taken over"
    return HELD, f"claimed by {who}"


class RunClaim:
    """A claim this process holds (see :func:`claim_run`)."""

    def __init__(self, run_dir: PathLike, stale_minutes: float):
        self.run_dir = Path(run_dir)
        self.path = claim_path(run_dir)
        self.stale_minutes = stale_minutes
        self.info = ClaimInfo(run=str(self.run_dir), host=socket.gethostname(), pid=os.getpid(),
                              pid_start=_process_start(os.getpid()), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                              slurm_job=_slurm_job(), job=ddp_job_key(), command=" ".join(sys.argv)[:500],
                              token=uuid.uuid4().hex)
        #: the message when a stale claim was replaced (None otherwise), for the run's log
        self.took_over: Optional[str] = None
        self._created_dirs: list[Path] = []
        self._stop = threading.Event()
        self._heartbeat: Optional[threading.Thread] = None

    # -- taking and giving back -------------------------------------------------------------
    def acquire(self) -> "RunClaim":
        self._make_parent()
        for _ in range(20):
            if self._create():
                self._heartbeat = threading.Thread(target=self._beat, name="vlsm-claim-heartbeat", daemon=True)
                self._heartbeat.start()
                return self
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                continue  # released meanwhile: try again
            info = _parse(raw)
            reason = _stale_reason(self.path, info, self.run_dir, self.stale_minutes)
            if not reason:
                who = info.describe() if info else "a claim file being written"
                raise RunClaimedError(
                    f"{self.run_dir} is being trained by another process ({who}; claim file "
                    f"{self.path}). If that process is gone for good, delete the claim file; a claim from "
                    f"another host is taken over after {self.stale_minutes:g} minutes without activity")
            if _take_over(self.path, raw):
                who = info.describe() if info else "an unreadable claim file"
                self.took_over = f"took over {self.run_dir} from a stale claim ({who}: {reason})"
            else:
                time.sleep(0.2)  # another worker is replacing it this instant
        self._remove_created_dirs()
        raise RunClaimedError(f"could not claim {self.run_dir}: its claim file {self.path} kept changing; "
                              f"is another worker starting it? Try again")

    def mark_ready(self) -> None:
        """The run folder is prepared: the job's other DDP ranks (waiting in :func:`wait_until_ready`) start."""
        self.info.ready = True
        if self._owned():
            tmp = self.path.with_name(f"{self.path.name}.{self.info.token}.tmp")
            tmp.write_text(json.dumps(asdict(self.info)))
            os.replace(tmp, self.path)

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(timeout=5)
        if self._owned():  # a claim that was (wrongly) taken over belongs to its new holder now
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._remove_created_dirs()

    # -- internals ---------------------------------------------------------------------------
    def _create(self) -> bool:
        """Create the claim file atomically, complete from its first moment; False if one exists."""
        data = json.dumps(asdict(self.info)).encode()
        tmp = self.path.with_name(f"{self.path.name}.{self.info.token}.tmp")
        tmp.write_bytes(data)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as err:  # a file system without hard links: exclusive create, then write
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _owned(self) -> bool:
        info = read_claim(self.run_dir)
        return info is not None and info.token == self.info.token

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            if self._owned():
                with contextlib.suppress(OSError):
                    os.utime(self.path)

    def _make_parent(self) -> None:
        """Create the folder the run folder goes into (removed again if training never starts)."""
        missing = []
        parent = self.path.parent
        while not parent.exists() and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._created_dirs = missing  # deepest first

    def _remove_created_dirs(self) -> None:
        for folder in self._created_dirs:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: the run folder (or something else) lives there now
        self._created_dirs = []


#: claims this process holds, by claim-file path: a nested claim (vlsm sweep, then train) reuses them
_HELD: dict = {}


@contextlib.contextmanager
def claim_run(run_dir: PathLike, *, stale_minutes: float = DEFAULT_STALE_MINUTES) -> Iterator[RunClaim]:
    """Hold the claim on ``run_dir`` for the ``with`` block (raises :class:`RunClaimedError` when another
    live process holds it; replaces a stale one, saying so in ``claim.took_over``). Nested claims on the
    same folder in one process share the outer one. While it is held in the main thread, SIGTERM raises
    ``SystemExit(143)`` so that the claim is released."""
    key = str(claim_path(run_dir))
    if key in _HELD:
        yield _HELD[key]
        return
    claim = RunClaim(run_dir, stale_minutes).acquire()
    _HELD[key] = claim
    previous_token = os.environ.get(_TOKEN_ENV)
    os.environ[_TOKEN_ENV] = claim.info.token  # inherited by the DDP workers Lightning starts
    try:
        with _exit_on_sigterm():
            yield claim
    finally:
        del _HELD[key]
        if previous_token is None:
            os.environ.pop(_TOKEN_ENV, None)
        else:
            os.environ[_TOKEN_ENV] = previous_token
        claim.release()


def wait_until_ready(run_dir: PathLike, *, timeout: float = 3600.0, poll: float = 1.0) -> ClaimInfo:
    """Block until this DDP job's rank 0 has claimed and prepared ``run_dir`` (for the other ranks, which
    srun or torchrun start at the same moment). The claim must belong to this job: the token Lightning's
    launcher passes on, or the same SLURM/torchrun job ids."""
    token, job = os.environ.get(_TOKEN_ENV), ddp_job_key()
    deadline = time.monotonic() + timeout
    while True:
        info = read_claim(run_dir)
        if info is not None and info.ready and (info.token == token if token else
                                                (info.job == job if job else True)):
            return info
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 of this job did not prepare {run_dir} within {timeout / 60:g} minutes "
                               f"(no ready claim {claim_path(run_dir)}); see rank 0's error")
        time.sleep(poll)


def ddp_job_key(environ=None) -> Optional[str]:
    """An id shared by the processes of one DDP launch (srun step or torchrun run, restarts counted)."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_ID") and env.get("SLURM_STEP_ID") is not None:
        return f"slurm:{env['SLURM_JOB_ID']}.{env['SLURM_STEP_ID']}.{env.get('SLURM_RESTART_COUNT', '0')}"
    if env.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun:{env['TORCHELASTIC_RUN_ID']}.{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    return None


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _parse(raw: bytes) -> Optional[ClaimInfo]:
    try:
        data = json.loads(raw)
        return ClaimInfo(**data) if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None


def _slurm_job() -> Optional[str]:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def _process_start(pid: int) -> Optional[str]:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True  # no /proc: the pid exists, trust it
    if fields[0] == "Z":
        return False  # exited, not yet reaped
    return start is None or fields[19] == start  # another start time: the pid was reused


def _last_activity(path: Path, run_dir: Path) -> float:
    """The newest modification time of the claim file and the files training writes."""
    run = RunFolder(run_dir)
    candidates = [path, run_dir, run.log_file, run.metrics_file, run.checkpoints_dir]
    with contextlib.suppress(OSError):
        candidates += list(run.checkpoints_dir.iterdir())
    times = []
    for p in candidates:
        with contextlib.suppress(OSError):
            times.append(p.stat().st_mtime)
    return max(times, default=0.0)


def _stale_reason(path: Path, info: Optional[ClaimInfo], run_dir: Path, stale_minutes: float) -> Optional[str]:
    """Why the claim in ``path`` is stale, or None when its holder may still be working."""
    idle = time.time() - _last_activity(path, run_dir)
    if info is None:
        # never a half-written file (claims appear complete), so a damaged one: give it a minute anyway
        return "the claim file is unreadable" if idle > _TAKEOVER_LOCK_SECONDS else None
    if info.host == socket.gethostname():
        return None if _alive(info.pid, info.pid_start) else f"process {info.pid} no longer runs"
    if idle > stale_minutes * 60:
        return f"no activity for {idle / 60:.0f} minutes, over the {stale_minutes:g} allowed"
    return None


def _take_over(path: Path, seen: bytes) -> bool:
    """Remove the stale claim ``seen``, unless it changed meanwhile; False when another worker is doing it."""
    lock = path.with_name(path.name + ".takeover")
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        with contextlib.suppress(OSError):
            if time.time() - lock.stat().st_mtime > _TAKEOVER_LOCK_SECONDS:
                lock.unlink()  # left by a worker that died while taking over
        return False
    try:
        with contextlib.suppress(FileNotFoundError):
            if path.read_bytes() == seen:
                path.unlink()
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


@contextlib.contextmanager
def _exit_on_sigterm():
    """SIGTERM raises ``SystemExit(143)`` in this process (``finally`` blocks run); forked children such
    as DataLoader workers keep the default (they never held the claim)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["ClaimInfo", "RunClaim", "RunClaimedError", "claim_run", "claim_path", "claim_state", "read_claim",
           "wait_until_ready", "ddp_job_key", "CLAIM_SUFFIX", "DEFAULT_STALE_MINUTES", "HEARTBEAT_SECONDS",
           "FREE", "MINE", "HELD", "STALE"]
