"""The learning curve (``vlsm figure --curve``): a score against the fraction of the training split a model was
trained on (``data.train_fraction``), one line per model, with error bars over its seeds.

Each point is one model (its label, with its fold when it has one) at one training fraction on one dataset split:
the mean across its runs (one per seed) of each run's mean score over the images, and the standard deviation
across them (population std, ``ddof=0``, as ``vlsm table``'s rows over several seeds); the number of seeds is
written beside the point when it varies. One panel per dataset split; the fractions on a log axis. Runs without
``data.train_fraction`` count as 1 (all of the training split). Scores are read from the runs' ``per_case.csv``,
checked against their ``summary.json`` (:func:`vlsm.evaluation.report.load_summaries`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from vlsm.evaluation.figures import _save_atomic, figure_format
from vlsm.evaluation.report.groups import run_facts
from vlsm.evaluation.report.paper import (
    LOWER_IS_BETTER,
    METRICS,
    PAPER_MODEL_ORDER,
    column_title,
    metric_scale,
    paper_model,
)
from vlsm.evaluation.report.results import load_summaries

PathLike = Union[str, Path]


@dataclass
class CurveInfo:
    """What :func:`learning_curve` drew: ``points[(model, dataset, split)][fraction]`` = the runs' means by seed."""

    path: Path
    metric: str
    points: dict = field(default_factory=dict)

    def summary(self, model: str, dataset: str, split: str = "test") -> dict:
        """``{fraction: (mean, std, seeds)}`` of one line (scores in the table's unit: % but HD95)."""
        line = self.points[(model, dataset, split)]
        return {f: (float(np.mean(list(v.values()))), float(np.std(list(v.values()))), len(v))
                for f, v in sorted(line.items())}


def curve_points(run_dirs: Sequence[PathLike], metric: str = "dice") -> dict:
    """``{(model, dataset, split): {fraction: {seed: mean}}}`` of the runs; a run twice (same model, fraction and
    seed) is refused in one line naming both."""
    if metric not in METRICS:
        raise ValueError(f"--metric {metric!r}: a curve shows one of {', '.join(METRICS)}")
    points: dict = {}
    where: dict = {}
    for summary in load_summaries(run_dirs):
        facts = run_facts(summary.path)
        fold = f" (fold {facts.fold} of {facts.folds})" if facts.folds else ""
        for r in summary.results:
            if not r.has(metric):
                raise ValueError(f"--metric {metric}: {r.per_case_path} has no {METRICS[metric]} scores; evaluate "
                                 f"with --boundary, or draw --metric dice")
            key = (r.model.label + fold, r.dataset, r.split)
            seed = facts.seed if facts.seed is not None else 0
            runs = points.setdefault(key, {}).setdefault(facts.fraction, {})
            if seed in runs:
                raise ValueError(f"vlsm figure --curve: {where[(key, facts.fraction, seed)]} and {summary.path} are "
                                 f"both {key[0]} on {r.dataset}/{r.split} at fraction {facts.fraction:g} with seed "
                                 f"{seed}; pass one of them")
            runs[seed] = float(np.mean(r.values(metric)) * metric_scale(metric))
            where[(key, facts.fraction, seed)] = summary.path
    if not any(len(line) > 1 for line in points.values()):
        raise ValueError("vlsm figure --curve: no model was trained on two or more fractions of its training split; "
                         "give the runs of a fraction grid (vlsm sweep EXP --fractions 0.1 0.25 0.5 1 --seeds 0 1 2)")
    return points


def learning_curve(run_dirs: Sequence[PathLike], out_path: PathLike, *, metric: str = "dice", dpi: int = 150,
                   overwrite: bool = False) -> CurveInfo:
    """Draw the learning curve of ``run_dirs`` into ``out_path`` (.png, .pdf or .svg; see the module docstring)."""
    out = Path(out_path)
    fmt = figure_format(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another name or pass --overwrite")
    points = curve_points(run_dirs, metric)
    fig = _draw(points, metric)
    _save_atomic(fig, out, fmt, dpi)
    return CurveInfo(out, metric, points)


def _paper_order(label: str) -> tuple:
    """The paper's model order (UNet-D, CLIPSeg, ..., Ensemble-C), then the others by name."""
    name = paper_model(label.split(" (")[0].split(" [")[0])
    return (PAPER_MODEL_ORDER.index(name), label) if name else (len(PAPER_MODEL_ORDER), label)


def _draw(points: dict, metric: str):
    from matplotlib.figure import Figure

    panels = sorted({(d, s) for _, d, s in points})
    models = sorted({m for m, _, _ in points}, key=_paper_order)
    fig = Figure(figsize=(4.2 * len(panels) + 0.6, 3.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = [f"C{i % 10}" for i in range(len(models))]
    unit = "%" if metric != "hd95" else "pixels or mm"
    for ax, (dataset, split) in zip(axes, panels):
        fractions = sorted({f for (m, d, s), line in points.items() if (d, s) == (dataset, split) for f in line})
        for i, model in enumerate(models):
            line = points.get((model, dataset, split))
            if not line:
                continue
            xs = sorted(line)
            means = [np.mean(list(line[f].values())) for f in xs]
            stds = [np.std(list(line[f].values())) for f in xs]
            shift = 1 + 0.025 * (i - (len(models) - 1) / 2)  # (models side by side: their error bars apart)
            ax.errorbar([x * shift for x in xs], means, yerr=stds, marker="o", ms=4, capsize=3, lw=1.4,
                        color=colours[i], label=model)
            seeds = {len(line[f]) for f in xs}
            if len(seeds) > 1:
                for x, y, f in zip(xs, means, xs):
                    ax.annotate(f"n={len(line[f])}", (x * shift, y), fontsize=6, xytext=(3, 3),
                                textcoords="offset points", color=colours[i])
        ax.set_xscale("log")
        ax.set_xticks(fractions, [f"{f * 100:g}%" for f in fractions])
        ax.minorticks_off()
        ax.set_xlabel("training data (fraction of the training split)")
        ax.set_ylabel(f"{METRICS[metric]} ({unit})" + (", lower is better" if metric in LOWER_IS_BETTER else ""))
        ax.set_title(column_title(dataset, split), fontsize=10)
        ax.grid(True, alpha=0.3)
    seeds = sorted({len(v) for line in points.values() for v in line.values()})
    axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{METRICS[metric]}: mean ± std over seeds ({'/'.join(map(str, seeds))} per point)", fontsize=9)
    return fig


__all__ = ["CurveInfo", "curve_points", "learning_curve"]
