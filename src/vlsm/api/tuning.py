"""``vlsm tune`` as functions: a hyperparameter search on an Optuna study whose trials are ordinary run folders
(:mod:`vlsm.tuning`; docs/tuning.md).

The objective is the experiment's ``train.monitor`` (its best validation score, Dice up, losses down), drawn by
Optuna's TPE sampler (seeded) and pruned by its median pruner after each validation. The study lives in a
database (SQLite in the study's folder by default, or ``search.storage``), so a killed search resumes where it
stopped and several workers (GPUs, SLURM array tasks) share one study, running the requested number of trials
between them, none twice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from vlsm.api._common import Echo, call_scope, quiet
from vlsm.errors import UserError
from vlsm.runs.claims import DEFAULT_STALE_MINUTES

PathLike = Union[str, Path]


@dataclass
class TunePlan:
    """A search before it runs: the experiment every trial starts from (``base``, its ``out`` and ``name`` unset),
    the study's place and objective (``setup``), the space and the settings the study records."""

    base: object  # vlsm.config.ExperimentConfig
    setup: object  # vlsm.tuning.study.Setup
    space: list
    settings: dict

    @property
    def search(self):
        return self.base.search


@dataclass
class TuneResult:
    """What :func:`tune` did: its plan, the study's state lines, this worker's trials and the report (None for a
    dry run)."""

    plan: TunePlan
    lines: list = field(default_factory=list)
    worker: Optional[object] = None  # vlsm.tuning.worker.WorkerResult
    report: Optional[object] = None  # vlsm.tuning.report.Report

    @property
    def best(self):
        """The best completed trial (an Optuna FrozenTrial), or None."""
        return self.report.best if self.report is not None else None


def _require_optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise UserError('vlsm tune needs Optuna: pip install "vlsm-ensemble[tune]" (or pip install optuna)') from None


def plan_tune(config=None, *, space: Sequence[str] = (), overrides: Sequence = ()) -> TunePlan:
    """The plan of a search: ``config`` (an experiment file, ExperimentConfig, dict or None) with ``overrides``
    (``"section.key=value"`` or pairs; ``search.*`` keys set the search) and the ``space`` entries
    (``"KEY=SPEC"``) over the file's ``search.space``. Everything is checked here, in one line each."""
    from vlsm.api.training import experiment
    from vlsm.config import apply_overrides, parse_override
    from vlsm.training.trainer import monitor_mode
    from vlsm.tuning.space import space_of
    from vlsm.tuning.study import Setup, default_storage

    pairs = [parse_override(o) if isinstance(o, str) else tuple(o) for o in overrides]
    cfg = experiment(config)
    cfg = apply_overrides(cfg, pairs, where="--set") if pairs else cfg
    _check_trainable(cfg)
    params = space_of(cfg.search.space, cfg.source, space)
    search = cfg.search
    name = search.study or cfg.name or (Path(cfg.source).stem if cfg.source else None)
    if not name:
        raise UserError("the study needs a name: give --study NAME (or name: in the experiment file)")
    if not re.fullmatch(r"[\w.\-]+", name):
        raise UserError(f"--study {name!r}: use letters, digits, '.', '-' and '_' only (it names the study's folder)")
    folder = Path(search.out) if search.out else Path("runs") / "tune" / name
    monitor = cfg.train.monitor
    setup = Setup(name=name, folder=folder, storage=search.storage or default_storage(folder), monitor=monitor,
                  direction="maximize" if monitor_mode(monitor) == "max" else "minimize", heartbeat=search.heartbeat)
    base = cfg.model_copy(deep=True)
    base.out, base.name = None, None
    base._source = cfg.source
    experiment_dict = base.to_dict()
    settings = {"monitor": monitor, "space": {p.key: p.spec for p in params}, "experiment": experiment_dict}
    return TunePlan(base, setup, params, settings)


def _check_trainable(cfg) -> None:
    named = f"{cfg.source}: " if cfg.source else ""
    if not cfg.data.paths:
        raise UserError(f"{named}no training data: give data.paths in the experiment file (or --set "
                        f"data.paths=[DIR])")
    t = cfg.train
    if t.devices != 1 or t.num_nodes != 1:
        raise UserError(f"vlsm tune trains each trial in one process on one device, but train.devices is {t.devices} "
                        f"and train.num_nodes {t.num_nodes}: set both to 1 and start one worker per GPU instead "
                        f"(CUDA_VISIBLE_DEVICES=K vlsm tune ...; see docs/tuning.md)")
    if t.fast_dev_run or t.overfit_batches:
        raise UserError("a debug run (train.fast_dev_run, train.overfit_batches) has no score to search "
                        "on; turn them off in the experiment")


def study_lines(plan: TunePlan) -> list[str]:
    """What ``--dry-run`` prints: the study, its objective, sampler and pruner, the space and the study's state
    (read without creating anything)."""
    setup, search = plan.setup, plan.search
    seed = search.sampler_seed if search.sampler_seed is not None else plan.base.train.seed
    pruner = (f"median (not before epoch {search.pruner_warmup})" if search.pruner == "median" else "none")
    width = max(len(p.key) for p in plan.space)
    lines = [f"study {setup.name}: {setup.storage}",
             f"  folder: {setup.folder} (one run folder per trial: trial-NNNN; best.yaml, report.md)",
             f"  objective: {setup.monitor} ({setup.direction}); TPE sampler, seed {seed} (trial N draws with seed + N), "
             f"the first {search.startup_trials} trial(s) at random; pruner: {pruner}", "  space:"]
    lines += [f"    {p.key:<{width}}  {p.spec:<28} {p.describe()}" for p in plan.space]
    lines.append(f"  trials: {search.trials} in all; " + _state(plan))
    return lines


def _state(plan: TunePlan) -> str:
    from vlsm.tuning.study import check_same_settings, count, open_storage, quiet_optuna

    setup = plan.setup
    if setup.sqlite_file is not None and not setup.sqlite_file.is_file():
        return "no study yet (its database does not exist)"
    import optuna

    with quiet_optuna():
        try:
            study = optuna.load_study(study_name=setup.name, storage=open_storage(setup, create=False))
        except KeyError:
            return f"no study {setup.name!r} in this storage yet"
        counts = count(study.get_trials(deepcopy=False))
        text = f"state: {counts.describe()}"
        from vlsm.tuning.report import ranked

        best = ranked(study, setup)
        if best:
            text += (f"; best: trial {best[0].number}, {setup.monitor} {best[0].value:.6g} ("
                     + ", ".join(f"{k}={v}" for k, v in best[0].params.items()) + ")")
        recorded = study.user_attrs.get("vlsm")
        if recorded is not None:
            try:
                check_same_settings(setup, recorded, plan.settings)
            except UserError as err:
                text += f"; NOT this search's: {err}"
    return text


def tune(config=None, *, space: Sequence[str] = (), overrides: Sequence = (), dry_run: bool = False,
         keep_going: bool = False, stale_after: float = DEFAULT_STALE_MINUTES, trust_checkpoint: bool = False,
         echo: Optional[Echo] = None, warn: Optional[Echo] = None) -> TuneResult:
    """Run this worker's share of a hyperparameter search (see :func:`plan_tune` for ``config``, ``space`` and
    ``overrides``): take the study's next trial, train it as the run folder ``STUDY/trial-NNNN`` (claimed, resumed
    after a kill), report its best ``train.monitor`` score, until the study has ``search.trials`` trials; then write
    the report (``STUDY/report.md``, ``trials.csv``, ``history.png``, ``importances.png``) and the best trial's
    experiment (``STUDY/best.yaml``). ``dry_run`` prints the space and the study's state and runs nothing.
    ``keep_going``: a failed trial does not stop the worker. ``stale_after``: minutes after which a run folder
    claimed from another host is taken over. Progress goes to ``echo``, failures to ``warn``."""
    import logging

    echo, warn = echo or quiet, warn or logging.getLogger("vlsm").warning
    _require_optuna()
    plan = plan_tune(config, space=space, overrides=overrides)
    lines = study_lines(plan)
    for line in lines:
        echo(line)
    result = TuneResult(plan, lines)
    if dry_run:
        return result
    if stale_after <= 0:
        raise UserError(f"--stale-after must be a positive number of minutes, got {stale_after:g}")
    _run(plan, result, keep_going=keep_going, stale_after=stale_after, trust_checkpoint=trust_checkpoint,
         echo=echo, warn=warn)
    return result


def _run(plan: TunePlan, result: TuneResult, *, keep_going: bool, stale_after: float, trust_checkpoint: bool,
         echo: Echo, warn: Echo) -> None:
    from vlsm.runs import require_writable
    from vlsm.tuning.report import write_report
    from vlsm.tuning.study import ask_lock, open_storage, open_study, quiet_optuna
    from vlsm.tuning.worker import run_worker

    setup, search = plan.setup, plan.search
    require_writable(setup.folder, flag="--out")
    seed = search.sampler_seed if search.sampler_seed is not None else plan.base.train.seed
    with call_scope(trust_checkpoint), quiet_optuna():
        with ask_lock(setup.lock_file):  # (two workers starting together create the database once)
            storage = open_storage(setup)
            study = open_study(setup, storage, plan.settings, search=search)
        try:
            result.worker = run_worker(study, storage, setup, plan.base, plan.space, search=search, seed=seed,
                                       stale_minutes=stale_after, keep_going=keep_going, echo=echo, warn=warn)
        finally:
            result.report = write_report(study, setup, plan.space, trials=search.trials)
    best = result.report.best
    echo(f"study {setup.name}: {result.worker.stopped}; report: {result.report.path}")
    if best is not None:
        echo(f"best: trial {best.number} ({best.user_attrs.get('run')}), {setup.monitor} {best.value:.6g}; "
             f"train it again with `vlsm train -c {result.report.best_yaml}`")
    if result.report.importance_note:
        echo(result.report.importance_note)


__all__ = ["TunePlan", "TuneResult", "plan_tune", "study_lines", "tune"]
