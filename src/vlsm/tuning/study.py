"""The study of ``vlsm tune`` in a real Optuna database, shared by every worker.

* **Storage.** SQLite in the study's folder by default (``STUDY/study.db``), or any URL Optuna's
  ``RDBStorage`` accepts (``--storage``). The storage records a heartbeat for each running trial; a trial whose
  heartbeat stops for twice the interval (its worker was killed) is marked failed by the next worker that looks,
  and a copy of it (same parameters, same run folder) waits for a worker to resume it (:func:`retry_stale_trial`).
* **Settings.** The study records its objective, space and experiment when it is created; a worker with other
  settings is refused in one line (two searches never mix in one study).
* **Trials.** :func:`next_trial` hands out trials until the study has its number: under a lock beside a SQLite
  database, so that two workers never start one too many; with another storage a trial asked beyond the number is
  marked failed at once (``surplus``) and never run. The TPE sampler draws trial N with seed + N.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from vlsm.errors import UserError

log = logging.getLogger("vlsm")
STUDY_DB = "study.db"
LOCK_FILE = ".study.lock"
#: a trial whose worker died is retried this many times at most (then it stays failed)
MAX_ATTEMPTS = 3
#: the study's user attribute holding its settings
SETTINGS_ATTR = "vlsm"


@dataclass(frozen=True)
class Setup:
    """Where a study lives and what it optimises."""

    name: str
    folder: Path
    storage: str  # the URL
    monitor: str
    direction: str  # maximize | minimize
    heartbeat: int  # seconds

    @property
    def sqlite_file(self) -> Optional[Path]:
        return sqlite_file(self.storage)

    @property
    def lock_file(self) -> Optional[Path]:
        db = self.sqlite_file
        return None if db is None else db.parent / LOCK_FILE


def default_storage(folder: Path) -> str:
    return f"sqlite:///{Path(os.path.abspath(folder)) / STUDY_DB}"


def sqlite_file(url: str) -> Optional[Path]:
    """The database file of a ``sqlite:///PATH`` URL (None for other storages and in-memory SQLite)."""
    if not url.startswith("sqlite:///") or url.rstrip("/") == "sqlite:" or ":memory:" in url:
        return None
    return Path(url[len("sqlite:///"):].split("?", 1)[0])


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's experimental-feature warnings and per-trial log lines off (vlsm reports trials itself)."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
            # (vlsm runs its own heartbeat thread around each trial it asks for)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            yield
    finally:
        optuna.logging.set_verbosity(level)


def open_storage(setup: Setup, *, create: bool = True):
    """Optuna's RDBStorage for the setup's URL, with heartbeats and the retry of stale trials; a URL Optuna
    cannot open is one line naming ``--storage``."""
    from optuna.storages import RDBStorage

    if setup.sqlite_file is not None and create:
        setup.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    engine = {"connect_args": {"timeout": 60}} if setup.storage.startswith("sqlite") else {}
    # (the stale-trial callback's keyword was renamed in Optuna 4.9)
    callback = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback"
                in inspect.signature(RDBStorage).parameters else "failed_trial_callback")
    try:
        return RDBStorage(setup.storage, engine_kwargs=engine, heartbeat_interval=setup.heartbeat,
                          grace_period=2 * setup.heartbeat, skip_table_creation=not create,
                          **{callback: retry_stale_trial})
    except Exception as err:  # noqa: BLE001 - SQLAlchemy's and Optuna's errors for a bad URL or database
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--storage {setup.storage!r}: Optuna cannot open it ({first}); give a database URL such as "
                        f"sqlite:///PATH/study.db or postgresql://USER@HOST/DB") from None


def sampler(seed: int, startup_trials: int):
    from optuna.samplers import TPESampler

    return TPESampler(seed=seed, n_startup_trials=startup_trials, constant_liar=True)


def pruner(kind: str, warmup: int):
    from optuna.pruners import MedianPruner, NopPruner

    return MedianPruner(n_warmup_steps=warmup) if kind == "median" else NopPruner()


def open_study(setup: Setup, storage, settings: dict, *, search):
    """The study (created when new) checked against this worker's ``settings`` (objective, space, experiment)."""
    import optuna

    study = optuna.create_study(study_name=setup.name, storage=storage, direction=setup.direction,
                                load_if_exists=True, sampler=sampler(_seed(search, settings), search.startup_trials),
                                pruner=pruner(search.pruner, search.pruner_warmup))
    recorded = study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
    else:
        check_same_settings(setup, recorded, settings)
    return study


def _seed(search, settings: dict) -> int:
    return search.sampler_seed if search.sampler_seed is not None else settings["experiment"]["train"]["seed"]


def check_same_settings(setup: Setup, recorded: dict, settings: dict) -> None:
    """Refuse a worker whose objective, space or experiment differ from the study's."""
    from vlsm.config import config_changes, resumable_keys, validate_config

    changes = []
    for key in ("monitor", "space"):
        if recorded.get(key) != settings[key]:
            changes.append(f"{key}: {recorded.get(key)} -> {settings[key]}")
    ignore = set(resumable_keys()) - {"train.epochs", "train.max_minutes"}
    try:
        changes += config_changes(validate_config(recorded["experiment"]), validate_config(settings["experiment"]),
                                  ignore=ignore)
    except (KeyError, ValueError):
        changes.append("experiment: written by another version")
    if changes:
        raise UserError(f"study {setup.name!r} in {setup.storage} was started with other settings "
                        f"({len(changes)} differ: {'; '.join(changes[:3])}{'; ...' if len(changes) > 3 else ''}); "
                        f"run it with the same experiment and space, or give this search another --study")


def retry_stale_trial(study, trial) -> None:
    """The storage's callback for a trial whose worker died: a waiting copy with the same parameters, run folder and
    reported epochs, which the next worker resumes (at most :data:`MAX_ATTEMPTS` attempts in all)."""
    import optuna

    attempt = int(trial.user_attrs.get("attempt", 1))
    if attempt >= MAX_ATTEMPTS or trial.user_attrs.get("surplus"):
        return
    attrs = {**trial.user_attrs, "attempt": attempt + 1, "retry_of": trial.number}
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, params=trial.params,
                                              distributions=trial.distributions, user_attrs=attrs,
                                              intermediate_values=trial.intermediate_values))
    log.warning("trial %d stopped without a word from its worker (%s): it is failed, and a copy waits for a worker "
                "to resume its run folder %s", trial.number, trial.user_attrs.get("worker", "unknown"),
                trial.user_attrs.get("run", "(none yet)"))


@dataclass
class Counts:
    """The study's trials by state."""

    complete: int = 0
    pruned: int = 0
    running: int = 0
    waiting: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        return self.complete + self.pruned

    @property
    def live(self) -> int:
        return self.done + self.running + self.waiting

    def describe(self) -> str:
        return (f"{self.complete} complete, {self.pruned} pruned, {self.running} running, {self.waiting} waiting, "
                f"{self.failed} failed")


def count(trials) -> Counts:
    from optuna.trial import TrialState

    names = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.RUNNING: "running",
             TrialState.WAITING: "waiting", TrialState.FAIL: "failed"}
    counts = Counts()
    for trial in trials:
        if trial.state in names and not trial.user_attrs.get("surplus"):
            setattr(counts, names[trial.state], getattr(counts, names[trial.state]) + 1)
    return counts


@contextlib.contextmanager
def ask_lock(path: Optional[Path]) -> Iterator[None]:
    """An exclusive lock on ``path`` (beside a SQLite database) while a worker creates the database and the study,
    or counts and asks; nothing for other storages (their surplus trials are caught after asking)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Windows
        fcntl = None
    if path is None or fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def next_trial(study, storage, setup: Setup, trials: int, echo) -> Optional[object]:
    """The next trial for this worker, or None when the study has ``trials`` trials done or the rest are running
    elsewhere. A worker that finds the remaining trials running waits up to three heartbeats: a trial whose worker
    died turns stale within two, and its waiting copy then goes to this worker."""
    import optuna

    deadline = time.time() + 3 * setup.heartbeat
    while True:
        with ask_lock(setup.lock_file):
            optuna.storages.fail_stale_trials(study)
            counts = count(study.get_trials(deepcopy=False))
            if counts.done >= trials:
                return None
            if counts.waiting or counts.live < trials:
                trial = study.ask()
                storage.record_heartbeat(trial._trial_id)  # (stale, not forever running, if killed now)
                if _within(study, trial, trials):
                    return trial
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                return None
        if time.time() >= deadline:
            echo(f"{counts.running} trial(s) still run on other workers; this worker leaves them to finish")
            return None
        time.sleep(min(setup.heartbeat, max(0.1, deadline - time.time())))


def _within(study, trial, trials: int) -> bool:
    """Whether fewer than ``trials`` live or finished trials came before ``trial`` (another worker may have asked at
    the same moment where there is no lock)."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    earlier = [t for t in study.get_trials(deepcopy=False, states=states)
               if t.number < trial.number and not t.user_attrs.get("surplus")]
    return len(earlier) < trials


@contextlib.contextmanager
def heartbeat(storage, trial) -> Iterator[None]:
    """Record ``trial``'s heartbeat every interval while the block runs (the storage marks it stale otherwise)."""
    stop = threading.Event()
    trial_id = trial._trial_id  # (Optuna's own heartbeat thread uses the same id)

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception as err:  # noqa: BLE001 - a missed beat is not fatal; a dead database shows elsewhere
                log.debug("heartbeat of trial %d: %s", trial.number, err)
            if stop.wait(storage.heartbeat_interval):
                return

    thread = threading.Thread(target=beat, name=f"vlsm-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


__all__ = ["Counts", "MAX_ATTEMPTS", "STUDY_DB", "Setup", "ask_lock", "count", "default_storage", "heartbeat",
           "next_trial", "open_storage", "open_study", "pruner", "quiet_optuna", "retry_stale_trial", "sampler",
           "sqlite_file"]
