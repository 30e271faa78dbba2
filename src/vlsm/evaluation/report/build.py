"""Building a table from run folders (:func:`build_table`) and choosing its file format."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from vlsm.evaluation import stats
from vlsm.evaluation.metrics import mean_std
from vlsm.evaluation.report import policy
from vlsm.evaluation.report.groups import SEED_NOTE, SeedGroup
from vlsm.evaluation.report.paper import (
    DATASET_NAMES,
    METRIC_CHOICES,
    METRICS,
    PAPER_MODEL_ORDER,
    SPLIT_ORDER,
    metric_scale,
    paper_model,
)
from vlsm.evaluation.report.results import RunSummary, collect_scores, load_summaries
from vlsm.evaluation.report.table import Cell, Column, Row, Table


def _dataset_key(dataset: str) -> tuple:
    order = list(DATASET_NAMES)
    return (order.index(dataset), "") if dataset in DATASET_NAMES else (len(order), dataset.lower())


def _split_key(split: str) -> tuple:
    return (SPLIT_ORDER.index(split), "") if split in SPLIT_ORDER else (len(SPLIT_ORDER), split)


def _model_key(row: Row) -> tuple:
    if row.paper_name:
        return (PAPER_MODEL_ORDER.index(row.paper_name), row.label.casefold())
    return (len(PAPER_MODEL_ORDER), row.label.casefold())


def build_table(summaries: Iterable[Union[str, Path, RunSummary]], metric: str = "dice", ci: bool = True,
                compare: Optional[tuple] = None, gains: bool = True, *, n_resamples: int = 10000,
                confidence: float = 0.95, seed: int = 0, ci_method: str = "percentile",
                digits: int = 2) -> Table:
    """Build the results table; see the module docstring for every convention.

    Args:
        summaries: run folders, evaluation folders, summary.json paths or :class:`RunSummary`.
        metric: ``"dice"``, ``"iou"``, ``"hd95"``, ``"nsd"``, ``"both"`` (a Dice and an IoU column per dataset) or
            ``"all"`` (Dice, IoU, HD95 and NSD; HD95 and NSD need evaluations with the boundary metrics).
        ci: add a bootstrap confidence interval of the mean to each cell.
        compare: ``(model_a, model_b)`` labels (or names) for a paired Wilcoxon test per dataset.
        gains: show each ensemble's gain over its VLSM.
        n_resamples, confidence, seed, ci_method: bootstrap settings (see :func:`stats.bootstrap_ci`).
        digits: decimals of the percentages shown.
    """
    if metric not in METRIC_CHOICES:
        raise ValueError(f"unknown metric {metric!r} (--metric); use {', '.join(METRIC_CHOICES)}")
    metrics = list(METRIC_CHOICES[metric])
    loaded = load_summaries(summaries)
    if not loaded:
        raise ValueError("no results given: pass at least one run folder or evaluation folder")
    scores = collect_scores(loaded)
    _check_metrics(scores, metrics)

    rows: dict = {}
    for (label, _dataset, _split), sc in scores.items():
        if label not in rows:
            rows[label] = Row(label=label, name=sc.model.name,
                              paper_name=paper_model(sc.model.label, sc.model.name))
    data_keys = sorted({(d, s) for (_, d, s) in scores}, key=lambda k: (_dataset_key(k[0]), _split_key(k[1])))
    columns = [Column(d, s, m) for (d, s) in data_keys for m in metrics]

    bootstrap = dict(n_resamples=n_resamples, confidence=confidence, seed=seed, method=ci_method) if ci else None
    for (label, dataset, split), sc in scores.items():
        for m in metrics:
            if sc.has(m):  # (a run evaluated without the boundary metrics: its cell stays empty, a note says so)
                rows[label].cells[Column(dataset, split, m)] = _cell(sc, m, bootstrap)
    ordered = sorted(rows.values(), key=_model_key)

    notes = []
    for col in columns:
        policy.mark_best(ordered, col, digits)
    if gains:
        notes += policy.add_gains(ordered, columns)
    notes += policy.consistency_notes(scores, data_keys)
    notes += policy.boundary_notes(scores, metrics)
    notes += policy.leakage_notes(loaded)

    comparisons = []
    if compare:
        comparisons, cnotes = policy.compare(ordered, scores, data_keys, metrics, compare)
        notes += cnotes

    units = {sc.distance_unit for sc in scores.values() if sc.has("hd95")}
    head = [policy.describe(metrics, ci, n_resamples, confidence, seed, ci_method, gains, ordered, units)]
    if any(isinstance(sc, SeedGroup) for sc in scores.values()):
        head.append(SEED_NOTE)
    sizes = policy.sizes(scores, data_keys)
    if sizes:
        head.append(sizes)
    return Table(columns=columns, rows=ordered, comparisons=comparisons, notes=head + notes, metric=metric,
                 digits=digits)


def _cell(sc, m: str, bootstrap: Optional[dict]) -> Cell:
    """The cell of one model's ``m`` scores: mean ± std over the images and their bootstrap CI; for a
    :class:`SeedGroup`, mean ± std across its seeds' means and the hierarchical bootstrap's CI."""
    unit = (sc.distance_unit or "pixels") if m == "hd95" else "%"
    interval = None
    if isinstance(sc, SeedGroup):
        matrix = sc.matrix(m) * metric_scale(m)
        means = matrix.mean(axis=1)
        if bootstrap:
            interval = stats.hierarchical_bootstrap_ci(matrix, bootstrap["n_resamples"], bootstrap["confidence"],
                                                       bootstrap["seed"])
        return Cell(float(means.mean()), float(means.std()), sc.n, interval, source=sc.summary_path, unit=unit,
                    n_seeds=sc.n_seeds)
    values = sc.values(m) * metric_scale(m)
    mean, std = mean_std(values)
    if bootstrap:
        interval = stats.bootstrap_ci(values, np.mean, **bootstrap)
    return Cell(mean, std, sc.n, interval, source=sc.summary_path, unit=unit)


def _check_metrics(scores: dict, metrics: list) -> None:
    """Refuse a metric that no result has (one line naming --metric and the fix)."""
    for m in metrics:
        if not any(sc.has(m) for sc in scores.values()):
            raise ValueError(f"--metric {m if len(metrics) == 1 else 'all'}: no result has {METRICS[m]} scores; "
                             f"evaluate with the boundary metrics (`vlsm evaluate RUN --boundary`, or train with "
                             f"--boundary), or use --metric dice, iou or both")


FORMATS = {".md": "md", ".markdown": "md", ".tex": "tex", ".csv": "csv"}


def format_for_path(path: Union[str, Path], fmt: Optional[str] = None) -> str:
    """The table format for an output path: explicit ``fmt`` or by extension."""
    if fmt:
        if fmt not in ("md", "tex", "csv"):
            raise ValueError(f"unknown table format {fmt!r}; use md, tex or csv")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the table format from {path}: use a .md, .tex or .csv name, "
                         f"or pass --format md|tex|csv")
    return FORMATS[suffix]


__all__ = ["FORMATS", "build_table", "format_for_path"]
