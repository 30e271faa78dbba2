"""One ``vlsm tune`` worker: it takes the study's next trial, trains it as an ordinary run folder
(``STUDY/trial-NNNN``, claimed, resumable, with its model card and results) through
:func:`vlsm.training.run.train`, and reports the run's best ``train.monitor`` score to the study, until the
study has its trials.

A trial interrupted here (Ctrl-C, SIGTERM at a SLURM time limit) is marked failed and a copy of it waits for the
next worker, which resumes its run folder from the last checkpoint; a worker killed outright (SIGKILL, a dead node)
leaves the trial running until its heartbeat goes stale, and then the same happens
(:func:`vlsm.tuning.study.retry_stale_trial`). A trial whose training fails is marked failed with its error, and
stops the worker unless ``keep_going`` (three failures in a row stop it anyway).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from vlsm.errors import UserError
from vlsm.tuning.space import Param
from vlsm.tuning.study import Setup, heartbeat, next_trial, sampler

log = logging.getLogger("vlsm")
#: a worker with keep_going stops after this many failed trials in a row (the search itself is broken)
FAILURES_IN_A_ROW = 3


def run_name(number: int) -> str:
    return f"trial-{number:04d}"


@dataclass
class WorkerResult:
    """What this worker did: the trials it finished (``(number, state, value)``) and those that failed."""

    finished: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # [(trial number, error text)]
    stopped: str = ""  # why it stopped, in words


def trial_config(base, setup: Setup, trial, params: Sequence[Param]):
    """The trial's experiment: the base with the trial's values, its run folder and name."""
    from vlsm.config import apply_overrides

    name = trial.user_attrs.get("run") or run_name(trial.number)
    trial.set_user_attr("run", name)
    trial.set_user_attr("worker", f"{socket.gethostname()} pid {os.getpid()}")
    values = [(p.key, p.suggest(trial)) for p in params]
    pairs = [*values, ("out", str(setup.folder / name)), ("name", f"{setup.name}-{name}")]
    return apply_overrides(base, pairs, where=f"trial {trial.number} ({', '.join(f'{k}={v}' for k, v in values)})")


def train_trial(cfg, trial, *, pruning: bool, stale_minutes: float):
    """Train (or resume, or find finished) the trial's run folder; returns ``(score, pruned epoch or None)``."""
    from vlsm.runs import DONE, RESUME, RunFolder
    from vlsm.training.run import train
    from vlsm.tuning.pruning import OptunaPruning

    run = RunFolder(cfg.out)
    status = run.status
    callback = OptunaPruning(trial, cfg.train.monitor)
    if status != DONE:
        if status == RESUME:
            log.info("trial %d resumes %s", trial.number, run.path)
        train(cfg, resume=status == RESUME, stale_minutes=stale_minutes, callbacks=[callback] if pruning else [])
    summary = run.read_summary()
    score = (summary.get("train") or {}).get("best_score")
    if score is None:
        raise UserError(f"{run.path} finished without a {cfg.train.monitor} score (summary.json's train.best_score)")
    pruned = callback.pruned_epoch
    if pruned is None and status == DONE:  # a retried trial whose run had finished: pruned before its worker died?
        pruned = trial.user_attrs.get("pruned_at_epoch")
    return float(score), pruned


def run_trial(study, storage, setup: Setup, trial, base, params: Sequence[Param], *, search, seed: int,
              stale_minutes: float, echo: Callable[[str], None]) -> tuple[str, Optional[float]]:
    """Run one trial and tell the study how it ended; returns ``(state, score)``. An interruption marks it failed,
    queues its copy and is raised again; another error marks it failed (its message kept) and is raised again."""
    from optuna.trial import TrialState

    from vlsm.tuning.study import retry_stale_trial

    study.sampler = sampler(seed + trial.number, search.startup_trials)  # trial N draws with seed + N
    with heartbeat(storage, trial):
        try:
            cfg = trial_config(base, setup, trial, params)
            echo(f"trial {trial.number} ({trial.user_attrs['run']}): "
                 + ", ".join(f"{k}={v}" for k, v in trial.params.items()))
            score, pruned = train_trial(cfg, trial, pruning=search.pruner != "none", stale_minutes=stale_minutes)
        except (KeyboardInterrupt, SystemExit):
            retry_stale_trial(study, storage.get_trial(trial._trial_id))
            trial.set_user_attr("error", "interrupted")
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:2000])
            study.tell(trial, state=TrialState.FAIL)
            raise
    if pruned is not None:
        study.tell(trial, state=TrialState.PRUNED)
        return "pruned", score
    study.tell(trial, score)
    return "complete", score


def run_worker(study, storage, setup: Setup, base, params: Sequence[Param], *, search, seed: int,
               stale_minutes: float, keep_going: bool, echo: Callable[[str], None],
               warn: Callable[[str], None]) -> WorkerResult:
    """Take and run the study's trials until it has ``search.trials`` of them, ``search.timeout`` minutes have
    passed, or (without ``keep_going``) a trial fails."""
    result = WorkerResult()
    started, in_a_row = time.time(), 0
    while True:
        if search.timeout and time.time() - started > 60 * search.timeout:
            result.stopped = f"--timeout: {search.timeout:g} minutes passed; no new trial started"
            break
        trial = next_trial(study, storage, setup, search.trials, echo)
        if trial is None:
            result.stopped = "the study has its trials"
            break
        try:
            state, score = run_trial(study, storage, setup, trial, base, params, search=search, seed=seed,
                                     stale_minutes=stale_minutes, echo=echo)
        except Exception as err:  # (an interruption is not an Exception: it ends the worker)
            result.failed.append((trial.number, str(err)))
            in_a_row += 1
            warn(f"vlsm tune: trial {trial.number} failed: {err}")
            if not keep_going or in_a_row >= FAILURES_IN_A_ROW:
                result.stopped = f"trial {trial.number} failed"
                if keep_going:
                    result.stopped += f" ({FAILURES_IN_A_ROW} failures in a row)"
                raise
            continue
        in_a_row = 0
        result.finished.append((trial.number, state, score))
        echo(f"trial {trial.number}: {state}, {setup.monitor} {score:.6g}")
    return result


__all__ = ["FAILURES_IN_A_ROW", "WorkerResult", "run_name", "run_trial", "run_worker", "train_trial",
           "trial_config"]
