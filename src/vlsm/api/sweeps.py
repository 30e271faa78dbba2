"""``vlsm sweep`` as functions: run several experiment files one after another (finished runs skipped,
unfinished ones resumed).

Several workers (GPUs, SLURM array tasks) share a grid in either of two ways:

* ``shard="K/N"``: worker K of N (K from 0) takes every N-th run folder of the grid sorted by path,
  a fixed split that does not depend on the order of the files on the command line;
* the same list everywhere, no shard: each worker takes the next run nobody is training.

Either way a run folder is claimed before it is trained (:mod:`vlsm.runs.claims`), so two workers never
train the same run; a run claimed by a live worker is skipped, a stale claim is taken over.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Union

from vlsm.api._common import Echo, call_scope, quiet
from vlsm.errors import UserError
from vlsm.runs.claims import DEFAULT_STALE_MINUTES

PathLike = Union[str, Path]


class SweepItem(NamedTuple):
    """One run of a sweep: its experiment file, the resolved config, its run folder and its status when
    planned (new | resume | done, :attr:`vlsm.runs.RunFolder.status`)."""

    experiment: Path
    config: object  # vlsm.config.ExperimentConfig
    out: Path
    status: str


@dataclass
class SweepResult:
    """What :func:`sweep` did with this worker's ``items``: the runs it trained, those it found finished,
    those other workers hold (``skipped``) and the failures with their errors (``failed``)."""

    items: list = field(default_factory=list)
    trained: list = field(default_factory=list)
    finished: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # [(experiment file, exception)]

    @property
    def ok(self) -> bool:
        return not self.failed


def plan_sweep(experiments: Sequence[PathLike], out_root: PathLike = "runs", overrides: Sequence[str] = (),
               expand: Optional[dict] = None) -> list[SweepItem]:
    """The runs of ``experiments`` (YAML files) with ``overrides`` (``"section.key=value"``) applied to each:
    run folder ``out_root/<experiment name>`` unless the file sets ``out``. An experiment whose ``sweep`` section
    (or ``expand``: ``{"seeds": [0, 1, 2], "folds": 5, "fractions": [0.1, 0.5]}``, the command line's ``--seeds``,
    ``--folds``, ``--fractions``, which replace it) lists seeds, folds or training fractions is one run per
    combination (:func:`expand_runs`)."""
    from vlsm.config import COMMAND_LINE, apply_overrides, load_config, parse_override
    from vlsm.runs import RunFolder

    try:
        pairs = [parse_override(text) for text in overrides]
    except ValueError as err:
        raise ValueError(f"--set: {err} (e.g. --set train.epochs=5)") from None
    flags = [(f"sweep.{key}", value) for key, value in (expand or {}).items() if value not in (None, [], ())]
    items = []
    for path in experiments:
        cfg = apply_overrides(load_config(path), pairs, where="--set")
        cfg = apply_overrides(cfg, flags, where=COMMAND_LINE) if flags else cfg
        base = Path(cfg.out) if cfg.out else Path(out_root) / (cfg.name or Path(path).stem)
        for run in expand_runs(cfg, cfg.name or Path(path).stem, base):
            items.append(SweepItem(Path(path), run, Path(run.out), RunFolder(run.out).status))
    _check_distinct(items)
    return items


def expand_runs(cfg, name: str, out: Path) -> list:
    """The runs of one experiment: one per combination of its ``sweep`` section's training fractions, folds
    (0..K-1 of K) and seeds, each with ``data.train_fraction``, ``data.folds``/``data.fold`` and ``train.seed`` set,
    named and put in ``out`` with the suffix ``-frac0.25-fold2-seed1`` (the parts it has); the experiment itself,
    in ``out``, when the section is empty."""
    from vlsm.config import apply_overrides

    plan = cfg.sweep
    runs = []
    for fraction in plan.fractions or [None]:
        for fold in (range(plan.folds) if plan.folds else [None]):
            for seed in plan.seeds or [None]:
                pairs, suffix = [], ""
                if fraction is not None:
                    pairs.append(("data.train_fraction", fraction))
                    suffix += f"-frac{fraction:g}"
                if fold is not None:
                    pairs += [("data.folds", plan.folds), ("data.fold", fold)]
                    suffix += f"-fold{fold}"
                if seed is not None:
                    pairs.append(("train.seed", seed))
                    suffix += f"-seed{seed}"
                if suffix:  # (each run is one run: its own sweep section is empty)
                    pairs += [("name", name + suffix), ("sweep.seeds", []), ("sweep.folds", None),
                              ("sweep.fractions", [])]
                run = apply_overrides(cfg, pairs, where="sweep") if pairs else cfg
                run.out = str(out.with_name(out.name + suffix) if suffix else out)
                runs.append(run)
    return runs


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with 0 <= K < N; anything else is one line saying what to pass."""
    k, sep, n = (text or "").partition("/")
    try:
        shard, count = int(k), int(n)
    except ValueError:
        shard = count = -1
    if not sep or count < 1:
        raise UserError(f"--shard {text!r}: expected K/N with N >= 1 workers and K = 0..N-1, e.g. --shard 0/4 "
                        f"(in a SLURM array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
    if not 0 <= shard < count:
        raise UserError(f"--shard {text}: K must be 0..{count - 1} (shards count from 0; a SLURM array for "
                        f"{count} workers is --array=0-{count - 1})")
    return shard, count


def shard_of(items: Sequence[SweepItem], shard: int, count: int) -> list[SweepItem]:
    """The items of shard ``shard`` of ``count``: every ``count``-th run folder in sorted order, starting
    at the ``shard``-th. Workers with the same grid agree whatever order their files were listed in, and
    neighbouring runs (the same model on other datasets) go to different workers."""
    ranks = {out: i for i, out in enumerate(sorted(str(item[2]) for item in items))}
    return [item for item in items if ranks[str(item[2])] % count == shard]


def shard_note(items: Sequence[SweepItem], shard: int, count: int) -> str:
    """The line saying which runs a shard takes (``vlsm sweep --shard`` prints it)."""
    mine = shard_of(items, shard, count)
    positions = ", ".join(str(i + 1) for i in range(shard, len(items), count)[:3])
    return (f"shard {shard}/{count}: {len(mine)} of {len(items)} runs (run folders no. {positions or '-'}"
            f"{', ...' if len(mine) > 3 else ''} of the {len(items)} in sorted order)")


def plan_lines(items: Sequence[SweepItem], stale_after: float = DEFAULT_STALE_MINUTES,
               dry_run: bool = False) -> list[str]:
    """One line per run: status, experiment, run folder, model and data, and its claim when it matters."""
    from vlsm.runs.claims import FREE, claim_state
    from vlsm.runs.layout import DONE

    width = max((len(str(item.experiment)) for item in items), default=0)
    lines = []
    for path, cfg, out, status in items:
        state, words = claim_state(out, stale_after)
        claim = f"  [{words}]" if status != DONE and (state != FREE or dry_run) else ""
        lines.append(f"{status:<7} {str(path):<{width}} -> {out}  ({cfg.model.name}, {', '.join(cfg.data.paths)})"
                     f"{claim}")
    return lines


def count_line(items: Sequence[SweepItem], experiments: int) -> str:
    """``6 runs (3 new, 1 resume, 2 done) from 2 experiment files``."""
    states = {}
    for item in items:
        states[item.status] = states.get(item.status, 0) + 1
    parts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    return f"{len(items)} run(s) ({parts or 'none'}) from {experiments} experiment file(s)"


def _check_distinct(items) -> None:
    seen: dict = {}
    for path, _cfg, out, _ in items:
        if str(out) in seen:
            raise UserError(f"{seen[str(out)]} and {path} both write {out}: give them different `name:` (or "
                            f"`out:`) values, or list one of them only")
        seen[str(out)] = path


def _check_same_settings(path, cfg, out) -> None:
    """Refuse to count a finished run as done when its config.yaml differs from the experiment (e.g. the
    paper and fixed grids, whose runs share names, sent to one --out-root)."""
    from vlsm.config import RESUMABLE_KEYS, config_changes
    from vlsm.runs import RunFolder

    stored = RunFolder(out).read_config()
    changes = config_changes(stored, cfg, ignore=RESUMABLE_KEYS) if stored is not None else []
    if changes:
        raise UserError(f"{out} holds a finished run of other settings than {path} ({len(changes)} differ: "
                        f"{'; '.join(changes[:3])}{'; ...' if len(changes) > 3 else ''}); give this grid its own "
                        f"--out-root (the paper and fixed grids use the same run names)")


def sweep(experiments: Sequence[PathLike], *, out_root: PathLike = "runs", overrides: Sequence[str] = (),
          shard: Optional[str] = None, stale_after: float = DEFAULT_STALE_MINUTES, keep_going: bool = False,
          dry_run: bool = False, trust_checkpoint: bool = False, echo: Optional[Echo] = None,
          warn: Optional[Echo] = None, seeds: Optional[Sequence[int]] = None, folds: Optional[int] = None,
          fractions: Optional[Sequence[float]] = None, bench: Optional[PathLike] = None, bench_now: bool = False,
          estimate_epochs: Optional[int] = None) -> SweepResult:
    """Train each experiment's run in turn (this worker's ``shard`` of them, ``"K/N"``), claiming each run
    folder first: a finished run is skipped (refused if its settings differ), an unfinished one resumed, one
    a live worker holds skipped, a stale claim (``stale_after`` minutes) taken over. A failed experiment
    stops the sweep unless ``keep_going``. ``dry_run`` plans and reports only: the runs, their count and, with
    ``bench`` (a JSON file of ``vlsm bench --json``) or ``bench_now`` (``vlsm bench`` run here on each model of the
    grid), the hours they take (:mod:`vlsm.api.estimates`; ``estimate_epochs``: the epochs assumed per run, else
    each run's ``train.epochs``). ``seeds``, ``folds`` and ``fractions`` replace every experiment's ``sweep``
    section (:func:`plan_sweep`). Progress goes to ``echo``, errors and takeovers to ``warn`` (default: the
    ``vlsm`` logger)."""
    echo, warn = echo or quiet, warn or logging.getLogger("vlsm").warning
    if stale_after <= 0:
        raise UserError(f"--stale-after must be a positive number of minutes, got {stale_after:g}")
    if bench is not None and bench_now:
        raise UserError("--bench FILE and --bench-now both give the figures of the estimate: pass one of them")
    if estimate_epochs is not None and not (bench is not None or bench_now):
        raise UserError("--estimate-epochs needs the measured figures: add --bench FILE or --bench-now")
    items = plan_sweep(experiments, out_root, overrides, {"seeds": seeds, "folds": folds, "fractions": fractions})
    if shard is not None:
        k, n = parse_shard(shard)
        echo(shard_note(items, k, n))
        items = shard_of(items, k, n)
    for line in plan_lines(items, stale_after, dry_run):
        echo(line)
    if dry_run:
        echo(count_line(items, len(experiments)))
    if bench is not None or bench_now:
        from vlsm.api.estimates import estimate_sweep

        for line in estimate_sweep(items, bench=bench, bench_now=bench_now, epochs=estimate_epochs, echo=echo):
            echo(line)
    result = SweepResult(items=list(items))
    if dry_run:
        return result
    with call_scope(trust_checkpoint):
        for item in items:
            if not _run_one(item, result, stale_after, echo, warn) and not keep_going:
                break
    return result


def _run_one(item: SweepItem, result: SweepResult, stale_after: float, echo: Echo, warn: Echo) -> bool:
    """Claim and train one run (or skip it); False when it failed."""
    from vlsm.runs import DONE, RESUME, RunFolder
    from vlsm.runs.claims import RunClaimedError, claim_run
    from vlsm.training.run import train

    path, cfg, out, _ = item
    try:
        with claim_run(out, stale_minutes=stale_after) as claim:
            if claim.took_over:
                warn(f"vlsm sweep: {claim.took_over}")
            status = RunFolder(out).status  # now, not at planning time: another worker may have run it
            if status == DONE:
                _check_same_settings(path, cfg, out)  # a finished run of other settings is not this one
                result.finished.append(out)
                return True
            echo(f"\n=== {path} ({status}) ===")
            # a run that failed before its first checkpoint is "new" again: train() starts it afresh
            train(cfg, resume=status == RESUME, stale_minutes=stale_after)
            result.trained.append(out)
    except RunClaimedError as err:  # another worker trains it: not a failure
        result.skipped.append(path)
        echo(f"skipped {path}: {err}")
    except Exception as err:  # one broken experiment must not hide the others' results
        result.failed.append((path, err))
        if isinstance(err, (UserError, ValueError, OSError)):
            warn(f"vlsm sweep: {path}: error: {err}")
        else:  # not a user error: the traceback is what a bug report needs
            warn(traceback.format_exc().rstrip("\n"))
        return False
    return True


__all__ = ["SweepItem", "SweepResult", "count_line", "expand_runs", "parse_shard", "plan_lines", "plan_sweep",
           "shard_note", "shard_of", "sweep"]
