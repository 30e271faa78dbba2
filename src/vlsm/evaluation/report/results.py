"""Loading results for tables: summary.json files (read by :mod:`vlsm.runs`) with their per-case
scores, checked against each other, and grouped into one set of scores per table row and column."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from vlsm import runs
from vlsm.evaluation.metrics import mean_std
from vlsm.evaluation.report.paper import METRICS

#: per_case.csv and summary.json must agree to this absolute tolerance (scores in [0, 1]): half the
#: last digit of a two-decimal percentage, so any disagreement that could change a table is caught.
AGREEMENT_TOL = 5e-5


@dataclass
class ModelInfo:
    name: str
    label: str
    preset: Optional[str] = None
    variant: Optional[str] = None


@dataclass
class CaseScores:
    """Per-image scores of one model on one dataset split, read from ``per_case.csv``."""

    model: ModelInfo
    dataset: str
    split: str
    names: list
    dice: np.ndarray
    iou: np.ndarray
    threshold: Optional[float]
    prompt: Optional[str]
    summary_path: Path
    per_case_path: Path
    hd95: Optional[np.ndarray] = None  # when the evaluation computed the boundary metrics
    nsd: Optional[np.ndarray] = None
    distance_unit: Optional[str] = None  # HD95's (and the NSD tolerance's) unit: pixels, mm or mixed
    nsd_tolerance: Optional[float] = None

    @property
    def n(self) -> int:
        return len(self.names)

    def has(self, metric: str) -> bool:
        return getattr(self, metric, None) is not None

    def values(self, metric: str) -> np.ndarray:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        if not self.has(metric):
            raise ValueError(f"{self.per_case_path} has no {METRICS[metric]} scores: evaluate with the boundary "
                             f"metrics (`vlsm evaluate RUN --boundary`), or leave {METRICS[metric]} out of --metric")
        return getattr(self, metric)

    def by_name(self, metric: str) -> dict:
        return dict(zip(self.names, self.values(metric).tolist()))


@dataclass
class RunSummary:
    """One ``summary.json`` with its per-case scores loaded and checked."""

    path: Path
    model: ModelInfo
    results: list
    #: images the run's datasets list in two splits: {dataset: {"train/test": [names]}} (RUN/summary.json)
    leakage: dict = field(default_factory=dict)


def load_summaries(paths: Iterable[Union[str, Path, RunSummary]]) -> list[RunSummary]:
    """Load run folders, evaluation folders or ``summary.json`` files (already-loaded ones pass through)."""
    out = []
    for p in paths:
        if isinstance(p, RunSummary):
            out.append(p)
            continue
        runs.refuse_debug_run(p)  # (a fast-dev-run or overfit run is no result)
        for f in runs.summary_files(Path(p)):
            out.append(load_summary(f))
    return out


def load_summary(path: Union[str, Path]) -> RunSummary:
    """Read one ``summary.json`` (or a folder holding one) and its ``per_case.csv`` files."""
    path = Path(path)
    if path.is_dir():
        path = runs.summary_files(path)[0]
    data = runs.read_summary(path)
    m = data["model"]
    if not m.get("name") and not m.get("label"):
        raise ValueError(f"{path}: \"model\" has neither \"name\" nor \"label\"")
    model = ModelInfo(name=str(m.get("name") or m.get("label")), label=str(m.get("label") or m.get("name")),
                      preset=m.get("preset"), variant=m.get("variant"))
    if not data["results"]:
        raise ValueError(f"{path} has an empty \"results\" list: evaluate the model on a dataset first")
    results = [_load_result(path, model, i, r) for i, r in enumerate(data["results"])]
    leakage = data.get("leakage") or {}
    if not isinstance(leakage, dict):
        raise ValueError(f"{path}: \"leakage\" must be an object {{dataset: {{\"train/test\": [names]}}}}")
    return RunSummary(path=path, model=model, results=results, leakage=leakage)


_RESULT_KEYS = ("dataset", "split", "n", "dice_mean", "dice_std", "iou_mean", "iou_std", "per_case")


def _load_result(summary_path: Path, model: ModelInfo, index: int, r) -> CaseScores:
    where = f"{summary_path} results[{index}]"
    if not isinstance(r, dict):
        raise ValueError(f"{where} is not an object")
    missing = [k for k in _RESULT_KEYS if k not in r]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}; re-run the evaluation with this vlsm version")
    per_case_path = summary_path.parent / r["per_case"]
    read = runs.read_per_case(per_case_path)
    boundary = {m: None if getattr(read, m) is None else np.asarray(getattr(read, m), dtype=np.float64)
                for m in ("hd95", "nsd")}
    scores = CaseScores(model=model, dataset=str(r["dataset"]), split=str(r["split"]), names=read.names,
                        dice=np.asarray(read.dice, dtype=np.float64), iou=np.asarray(read.iou, dtype=np.float64),
                        threshold=r.get("threshold"), prompt=r.get("prompt"), summary_path=summary_path,
                        per_case_path=per_case_path, **boundary, distance_unit=r.get("distance_unit"),
                        nsd_tolerance=r.get("nsd_tolerance"))
    _check_agreement(scores, r)
    return scores


def read_per_case(path: Path) -> tuple[list, np.ndarray, np.ndarray]:
    """``(names, dice, iou)`` from a ``per_case.csv``; any malformed line is an error naming it."""
    scores = runs.read_per_case(path)
    return scores.names, np.asarray(scores.dice, dtype=np.float64), np.asarray(scores.iou, dtype=np.float64)





def _check_agreement(scores: CaseScores, r: dict) -> None:
    problems = []
    n = r["n"]
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not float(n).is_integer():
        problems.append(f"n is {n!r} in the summary, not a whole number")
    elif int(n) != scores.n:
        problems.append(f"n is {r['n']} in the summary but per_case.csv has {scores.n} images")
    else:
        for metric in METRICS:
            if not scores.has(metric):
                if f"{metric}_mean" in r:
                    problems.append(f"{metric}_mean is in the summary but per_case.csv has no {metric} column")
                continue
            if f"{metric}_mean" not in r:
                continue  # (a summary of an older version, without the boundary metrics' means)
            mean, std = mean_std(scores.values(metric))
            for what, mine in (("mean", mean), ("std", std)):
                key = f"{metric}_{what}"
                theirs = r[key]
                if isinstance(theirs, bool) or not isinstance(theirs, (int, float)) \
                        or not abs(float(theirs) - mine) <= AGREEMENT_TOL:
                    problems.append(f"{key} is {theirs} in the summary but {mine:.6f} from the per-case "
                                    f"values")
    if problems:
        raise ValueError(f"{scores.summary_path} and {scores.per_case_path} disagree for "
                         f"{scores.dataset}/{scores.split}: " + "; ".join(problems)
                         + ". One of them was edited or is stale: re-run the evaluation to rewrite both.")


def collect_scores(summaries: Sequence[RunSummary]) -> dict:
    """``{(row label, dataset, split): CaseScores or SeedGroup}`` from loaded summaries.

    The row label is the model's label, with the run's fold or training fraction when it has one
    (:mod:`.groups`); when one model was evaluated with several prompts (a prompt sweep of ``vlsm evaluate``),
    each prompt gets its own row, labelled ``"<label> (<prompt>)"``. Runs that differ only in their training seed
    are one :class:`~vlsm.evaluation.report.groups.SeedGroup`. The same model, dataset, split and prompt twice
    otherwise is an error naming both files.
    """
    from vlsm.evaluation.report.groups import joins, make_group, run_facts

    seen: dict = {}
    names: dict = {}
    for s in summaries:
        facts = run_facts(s.path)
        for r in s.results:
            label = r.model.label + facts.tag
            if label in names and names[label][0] != r.model.name:
                raise ValueError(f"label {label!r} is used by two different models: {names[label][0]!r} in "
                                 f"{names[label][1]} and {r.model.name!r} in {s.path}; give them distinct labels")
            names.setdefault(label, (r.model.name, s.path))
            key = (label, r.dataset, r.split, r.prompt)
            if key in seen and not joins(seen[key], facts):
                _refuse_twice(seen[key][-1][1], r, s.path, label)
            seen.setdefault(key, []).append((facts, r))
    prompts: dict = {}
    for (label, _, _, prompt) in seen:
        prompts.setdefault(label, set()).add(prompt)
    out = {}
    for (label, dataset, split, prompt), entries in seen.items():
        row = label if len(prompts[label]) == 1 else f"{label} ({prompt})"
        out[(row, dataset, split)] = make_group(entries)
    return out


def _refuse_twice(prev: CaseScores, r: CaseScores, path: Path, label: str) -> None:
    if prev.summary_path.resolve() == path.resolve():
        where = f"{path} was given twice"
    else:
        where = f"both {prev.summary_path} and {path} have them"
    raise ValueError(f"two results for model {label!r} on {r.dataset}/{r.split}"
                     + (f" with prompt {r.prompt!r}" if r.prompt else "") + f": {where} "
                     f"(per-case files {prev.per_case_path} and {r.per_case_path}). Pass only "
                     f"one of them (a run folder already includes its eval/ folders; runs that differ only in "
                     f"train.seed are one row).")


__all__ = ["AGREEMENT_TOL", "CaseScores", "ModelInfo", "RunSummary", "collect_scores", "load_summaries", "load_summary",
           "read_per_case"]
