"""The study's report, rewritten by every worker when it stops (each file is written whole and renamed into place,
and each worker reads the whole study from the database, so the last writer's report is complete)::

    STUDY/report.md        the study, its best trials as a table, the figures, the parameter importances
    STUDY/trials.csv       every trial: number, state, score, parameters, run folder, pruned epoch, error
    STUDY/history.png      the optimisation history (each finished trial's score, the best so far)
    STUDY/importances.png  the parameters' importances (PED-ANOVA, Optuna's evaluator that needs no scikit-learn)
    STUDY/best.yaml        the best trial's experiment: `vlsm train -c STUDY/best.yaml` trains it again

The importances need two completed trials whose scores differ and a parameter whose value differs between them;
otherwise the report says which is missing, in one line, and draws no importance figure.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from vlsm.tuning.space import Param
from vlsm.tuning.study import Setup, count
from vlsm.utils import atomic_file, write_text_atomic

#: how many of the best trials report.md lists
BEST_TRIALS = 10
REPORT, TRIALS_CSV, HISTORY, IMPORTANCES, BEST_YAML = ("report.md", "trials.csv", "history.png", "importances.png",
                                                      "best.yaml")


@dataclass
class Report:
    """The files written and what they say: the best trial (None before one completes), the importances (or the
    line saying why there are none)."""

    folder: Path
    best: Optional[object] = None  # optuna FrozenTrial
    best_yaml: Optional[Path] = None
    importances: dict = field(default_factory=dict)
    importance_note: str = ""
    files: list = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.folder / REPORT


def completed(study) -> list:
    from optuna.trial import TrialState

    return list(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def ranked(study, setup: Setup) -> list:
    """The completed trials, best first (ties: the earlier trial first)."""
    sign = -1.0 if setup.direction == "maximize" else 1.0
    return sorted(completed(study), key=lambda t: (sign * t.value, t.number))


def importances(study, params: Sequence[Param]) -> tuple[dict, str]:
    """``({key: importance}, "")``, or ``({}, the line saying why there are none)``."""
    import optuna

    done = completed(study)
    if len(done) < 2:
        return {}, f"parameter importances need at least 2 completed trials ({len(done)} so far)"
    varying = [p.key for p in params if len({repr(t.params.get(p.key)) for t in done}) > 1]
    if not varying:
        return {}, "parameter importances need a parameter whose value differs between completed trials (all used " \
                   "the same values)"
    if len({t.value for t in done}) < 2:
        return {}, f"parameter importances need scores that differ (every completed trial scored {done[0].value:.6g})"
    found = optuna.importance.get_param_importances(study, evaluator=evaluator(), params=varying)
    return {key: float(value) for key, value in found.items()}, ""


def evaluator():
    """PED-ANOVA: deterministic, and without scikit-learn (which fANOVA needs)."""
    from optuna.importance import PedAnovaImportanceEvaluator

    return PedAnovaImportanceEvaluator()


def write_best_yaml(setup: Setup, trial) -> Optional[Path]:
    """STUDY/best.yaml: the best trial's run config.yaml (the values it trained with, its seed), with ``out`` set to
    STUDY/best and its own name, so that ``vlsm train -c STUDY/best.yaml`` trains it again."""
    import yaml

    from vlsm.runs import RunFolder

    cfg = RunFolder(setup.folder / trial.user_attrs.get("run", "")).read_config()
    if cfg is None:
        return None
    values = cfg.to_dict()
    values.update(name=f"{setup.name}-best", out=str(setup.folder / "best"))
    header = (f"# the best trial of study {setup.name}: trial {trial.number} ({trial.user_attrs.get('run')}), "
              f"{setup.monitor} {trial.value:.6g}\n# train it again with: vlsm train -c {setup.folder / BEST_YAML}\n")
    path = setup.folder / BEST_YAML
    write_text_atomic(path, header + yaml.safe_dump(values, sort_keys=False))
    return path


def _rows(study, params: Sequence[Param]) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        row = {"trial": t.number, "state": t.state.name.lower(), "score": "" if t.value is None else f"{t.value:.6g}"}
        row.update({p.key: t.params.get(p.key, "") for p in params})
        row.update(run=t.user_attrs.get("run", ""), pruned_at_epoch=t.user_attrs.get("pruned_at_epoch", ""),
                   retry_of=t.user_attrs.get("retry_of", ""), error=t.user_attrs.get("error", ""))
        rows.append(row)
    return rows


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def _table(rows: list[dict], keys: Sequence[str]) -> list[str]:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return lines + ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]


def _save(figure, path: Path) -> None:
    """Save a matplotlib figure as PNG through a temporary file renamed into place."""
    with atomic_file(path) as fh:
        figure.savefig(fh, format="png", dpi=100, bbox_inches="tight")


def draw_figures(study, setup: Setup, report: Report) -> None:
    """history.png once a trial completed; importances.png when there are importances."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    if report.best is not None:
        axes = plots.plot_optimization_history(study, target_name=setup.monitor)
        _save(axes.figure, setup.folder / HISTORY)
        plt.close(axes.figure)
        report.files.append(setup.folder / HISTORY)
    if report.importances:
        axes = plots.plot_param_importances(study, evaluator=evaluator(),
                                            params=list(report.importances), target_name=setup.monitor)
        _save(axes.figure, setup.folder / IMPORTANCES)
        plt.close(axes.figure)
        report.files.append(setup.folder / IMPORTANCES)


def write_report(study, setup: Setup, params: Sequence[Param], *, trials: int) -> Report:
    """Write the report files of the study as it stands (see the module's docstring)."""
    from vlsm.tuning.study import quiet_optuna

    setup.folder.mkdir(parents=True, exist_ok=True)
    with quiet_optuna():
        best = ranked(study, setup)
        report = Report(setup.folder, best=best[0] if best else None)
        report.importances, report.importance_note = importances(study, params)
        if report.best is not None:
            report.best_yaml = write_best_yaml(setup, report.best)
        draw_figures(study, setup, report)
        rows = _rows(study, params)
    write_text_atomic(setup.folder / TRIALS_CSV, _csv(rows))
    write_text_atomic(report.path, _markdown(study, setup, params, report, rows, trials))
    report.files[:0] = [report.path, setup.folder / TRIALS_CSV] + ([report.best_yaml] if report.best_yaml else [])
    return report


def _markdown(study, setup: Setup, params: Sequence[Param], report: Report, rows: list[dict], trials: int) -> str:
    counts = count(study.get_trials(deepcopy=False))
    lines = [f"# Study {setup.name}", "",
             f"- objective: {setup.monitor} ({setup.direction}); storage: `{setup.storage}`",
             f"- trials: {counts.done} of {trials} done ({counts.describe()})",
             "- space: " + "; ".join(f"`{p.key}` {p.spec}" for p in params), ""]
    if report.best is None:
        lines += ["No trial has completed yet.", ""]
    else:
        best = report.best
        lines += [f"Best: trial {best.number} (`{best.user_attrs.get('run')}`), {setup.monitor} {best.value:.6g}; "
                  f"its experiment: `{report.best_yaml}` (`vlsm train -c {report.best_yaml}` trains it again).", "",
                  f"## The best trials ({setup.monitor}, best first)", ""]
        order = {t.number: i for i, t in enumerate(ranked(study, setup))}
        best_rows = sorted((r for r in rows if r["trial"] in order), key=lambda r: order[r["trial"]])[:BEST_TRIALS]
        lines += _table(best_rows, ["trial", "score", *[p.key for p in params], "run"]) + [""]
        lines += ["## Optimisation history", "", f"![optimisation history]({HISTORY})", ""]
    lines += ["## Parameter importances", ""]
    if report.importances:
        lines += _table([{"parameter": k, "importance": f"{v:.3f}"} for k, v in report.importances.items()],
                        ["parameter", "importance"])
        lines += ["", f"![parameter importances]({IMPORTANCES})", ""]
    else:
        lines += [report.importance_note + ".", ""]
    lines += [f"Every trial: `{TRIALS_CSV}`. Each trial is a run folder (`{setup.folder}/trial-NNNN`): `vlsm table` "
              "compares the test results of finished ones.", ""]
    return "\n".join(lines)


__all__ = ["BEST_TRIALS", "Report", "completed", "importances", "ranked", "write_best_yaml", "write_report"]
