"""Result tables from run folders and evaluation folders, like Table 1 of the VLSM-Ensemble paper.

Inputs are the ``summary.json`` files that ``vlsm train`` and ``vlsm evaluate`` write (a run folder,
``RUN/eval/<dataset>-<split>/`` or the JSON file itself). Every number in a table is recomputed
from the per-image scores in ``per_case.csv`` and checked against ``summary.json``; a disagreement
is an error naming both files.

Table conventions (also printed under every table):

* rows are models, in the paper's order (UNet-D, CLIPSeg, BiomedCLIPSeg, CRIS, BiomedCLIPSeg-A,
  CLIPSeg-B, Ensemble-C), then any other model alphabetically; a row is named by
  ``model.label`` of the summary (or ``model.name`` when there is no label);
* columns are datasets (and splits other than ``test``), in the paper's order, then alphabetically;
* a cell is ``mean ± std`` of the per-image score in percent, std being the population std over
  the test images (``ddof=0``, like ``summary.json``);
* the best mean of a column (at the displayed precision, ties all marked) is bold when a column
  has at least two models;
* an ensemble's gain is its mean minus that of the VLSM it builds on, in percentage points:
  BiomedCLIPSeg-A over BiomedCLIPSeg, CLIPSeg-B over CLIPSeg, and Ensemble-C (which combines both
  VLSMs) over the *better* of BiomedCLIPSeg and CLIPSeg on that dataset, the conservative choice;
* the confidence interval is a bootstrap CI of the mean over test images (see
  :mod:`vlsm.evaluation.stats`);
* ``compare=(A, B)`` adds a two-sided paired Wilcoxon signed-rank test of A vs B on the images both
  were evaluated on, per dataset.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from vlsm.evaluation import stats

#: Row order of the paper's tables.
PAPER_MODEL_ORDER = ("UNet-D", "CLIPSeg", "BiomedCLIPSeg", "CRIS", "BiomedCLIPSeg-A", "CLIPSeg-B",
                     "Ensemble-C")

#: Which VLSM(s) each ensemble's gain is measured against (the better one when there are two).
ENSEMBLE_REFERENCES = {
    "BiomedCLIPSeg-A": ("BiomedCLIPSeg",),
    "CLIPSeg-B": ("CLIPSeg",),
    "Ensemble-C": ("BiomedCLIPSeg", "CLIPSeg"),
}

#: Dataset folder names of the medvlsm testbench -> names used in the papers, in column order.
DATASET_NAMES = {
    "kvasir_polyp": "Kvasir-SEG",
    "clinicdb_polyp": "ClinicDB",
    "bkai_polyp": "BKAI",
    "busi": "BUSI",
    "chexlocalize": "CheXlocalize",
    "colondb_polyp": "ColonDB",
    "etis_polyp": "ETIS",
    "isic": "ISIC",
    "dfu": "DFU",
    "camus": "CAMUS",
}

METRICS = {"dice": "Dice", "iou": "IoU"}
SPLIT_ORDER = ("test", "val", "train")

#: per_case.csv and summary.json must agree to this absolute tolerance (scores in [0, 1]): half the
#: last digit of a two-decimal percentage, so any disagreement that could change a table is caught.
AGREEMENT_TOL = 5e-5

PER_CASE_REQUIRED = ("name", "dice", "iou")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


_PAPER_BY_NORM = {_norm(n): n for n in PAPER_MODEL_ORDER}


def paper_model(label: str, name: str = "") -> Optional[str]:
    """The paper's model name for a row (matched on label, then registry name), else ``None``."""
    for candidate in (label, name):
        if candidate and _norm(candidate) in _PAPER_BY_NORM:
            return _PAPER_BY_NORM[_norm(candidate)]
    return None


def dataset_title(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
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

    @property
    def n(self) -> int:
        return len(self.names)

    def values(self, metric: str) -> np.ndarray:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        return getattr(self, metric)

    def by_name(self, metric: str) -> dict:
        return dict(zip(self.names, self.values(metric).tolist()))


@dataclass
class RunSummary:
    """One ``summary.json`` with its per-case scores loaded and checked."""

    path: Path
    model: ModelInfo
    results: list


def _find_summary_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: pass run folders written by `vlsm train`, "
                                f"evaluation folders written by `vlsm evaluate`, or their summary.json")
    if (path / "summary.json").is_file():
        return [path / "summary.json"]
    found = sorted((path / "eval").glob("*/summary.json"))
    if found:
        return found
    raise FileNotFoundError(f"{path} has no summary.json (nor eval/*/summary.json): pass a run folder "
                            f"written by `vlsm train` or an evaluation folder written by `vlsm evaluate`, "
                            f"or evaluate the run first with `vlsm evaluate`")


def load_summaries(paths: Iterable[Union[str, Path, RunSummary]]) -> list[RunSummary]:
    """Load run folders, evaluation folders or ``summary.json`` files (already-loaded ones pass through)."""
    out = []
    for p in paths:
        if isinstance(p, RunSummary):
            out.append(p)
            continue
        for f in _find_summary_files(Path(p)):
            out.append(load_summary(f))
    return out


def load_summary(path: Union[str, Path]) -> RunSummary:
    """Read one ``summary.json`` (or a folder holding one) and its ``per_case.csv`` files."""
    path = Path(path)
    if path.is_dir():
        path = _find_summary_files(path)[0]
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run the evaluation to rewrite it") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict) \
            or not isinstance(data.get("results"), list):
        raise ValueError(f"{path} is not a vlsm summary: it needs a \"model\" object and a \"results\" "
                         f"list (written by `vlsm train` or `vlsm evaluate`)")
    m = data["model"]
    if not m.get("name") and not m.get("label"):
        raise ValueError(f"{path}: \"model\" has neither \"name\" nor \"label\"")
    model = ModelInfo(name=str(m.get("name") or m.get("label")), label=str(m.get("label") or m.get("name")),
                      preset=m.get("preset"), variant=m.get("variant"))
    if not data["results"]:
        raise ValueError(f"{path} has an empty \"results\" list: evaluate the model on a dataset first")
    results = [_load_result(path, model, i, r) for i, r in enumerate(data["results"])]
    return RunSummary(path=path, model=model, results=results)


_RESULT_KEYS = ("dataset", "split", "n", "dice_mean", "dice_std", "iou_mean", "iou_std", "per_case")


def _load_result(summary_path: Path, model: ModelInfo, index: int, r) -> CaseScores:
    where = f"{summary_path} results[{index}]"
    if not isinstance(r, dict):
        raise ValueError(f"{where} is not an object")
    missing = [k for k in _RESULT_KEYS if k not in r]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}; re-run the evaluation with this vlsm version")
    per_case_path = summary_path.parent / r["per_case"]
    names, dice, iou = read_per_case(per_case_path)
    scores = CaseScores(model=model, dataset=str(r["dataset"]), split=str(r["split"]), names=names,
                        dice=dice, iou=iou, threshold=r.get("threshold"), prompt=r.get("prompt"),
                        summary_path=summary_path, per_case_path=per_case_path)
    _check_agreement(scores, r)
    return scores


def read_per_case(path: Path) -> tuple[list, np.ndarray, np.ndarray]:
    """``(names, dice, iou)`` from a ``per_case.csv``; any malformed line is an error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (named by the summary.json beside it); "
                                f"re-run the evaluation or keep the eval folder with its summary")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in PER_CASE_REQUIRED if c not in header]
        if missing:
            raise ValueError(f"{path} lacks column(s) {', '.join(missing)}; expected columns "
                             f"name,dice,iou,gt_area,pred_area,height,width,prompt")
        names, dice, iou, seen = [], [], [], {}
        for line_no, row in enumerate(reader, start=2):
            name = (row.get("name") or "").strip()
            if not name:
                raise ValueError(f"{path} line {line_no}: empty image name")
            if name in seen:
                raise ValueError(f"{path}: image {name!r} appears twice (lines {seen[name]} and {line_no})")
            seen[name] = line_no
            try:
                d, j = float(row["dice"]), float(row["iou"])
            except (TypeError, ValueError):
                raise ValueError(f"{path} line {line_no}: dice/iou of {name!r} are not numbers "
                                 f"({row.get('dice')!r}, {row.get('iou')!r})") from None
            if not (math.isfinite(d) and math.isfinite(j)) or not (0 <= d <= 1 and 0 <= j <= 1):
                raise ValueError(f"{path} line {line_no}: dice/iou of {name!r} must be in [0, 1], "
                                 f"got {d}, {j}")
            names.append(name)
            dice.append(d)
            iou.append(j)
    if not names:
        raise ValueError(f"{path} has no images: re-run the evaluation")
    return names, np.asarray(dice, dtype=np.float64), np.asarray(iou, dtype=np.float64)


def _check_agreement(scores: CaseScores, r: dict) -> None:
    problems = []
    n = r["n"]
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not float(n).is_integer():
        problems.append(f"n is {n!r} in the summary, not a whole number")
    elif int(n) != scores.n:
        problems.append(f"n is {r['n']} in the summary but per_case.csv has {scores.n} images")
    else:
        for metric in METRICS:
            mean, std = stats.mean_std(scores.values(metric))
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


# ---------------------------------------------------------------------------------------------
# Table model
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    dataset: str
    split: str
    metric: str

    @property
    def dataset_title(self) -> str:
        t = dataset_title(self.dataset)
        return t if self.split == "test" else f"{t} ({self.split})"

    @property
    def metric_title(self) -> str:
        return METRICS[self.metric]


@dataclass
class Cell:
    mean: float  # percent
    std: float  # percent, ddof=0
    n: int
    ci: Optional[tuple] = None  # percent
    gain: Optional[float] = None  # points
    gain_over: Optional[str] = None
    best: bool = False
    source: Optional[Path] = None


@dataclass
class Row:
    label: str
    name: str
    paper_name: Optional[str]
    cells: dict = field(default_factory=dict)  # Column -> Cell


@dataclass
class Comparison:
    dataset: str
    split: str
    metric: str
    model_a: str
    model_b: str
    n: int
    mean_a: float  # percent
    mean_b: float
    statistic: float
    pvalue: float

    @property
    def mean_diff(self) -> float:
        return self.mean_a - self.mean_b


@dataclass
class Table:
    columns: list
    rows: list
    comparisons: list
    notes: list
    metric: str
    digits: int = 2

    def row(self, model: str) -> Row:
        return _find_row(self.rows, model)

    def cell(self, model: str, dataset: str, metric: Optional[str] = None, split: str = "test") -> Optional[Cell]:
        metric = metric or (self.metric if self.metric != "both" else "dice")
        return self.row(model).cells.get(Column(dataset, split, metric))

    def render(self, fmt: str) -> str:
        renderers = {"md": self.to_markdown, "tex": self.to_latex, "csv": self.to_csv}
        if fmt not in renderers:
            raise ValueError(f"unknown table format {fmt!r}; use one of {', '.join(renderers)}")
        return renderers[fmt]()

    # -- Markdown ------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        both = len({c.metric for c in self.columns}) > 1
        head = ["Model"] + [f"{c.dataset_title} {c.metric_title}" if both else c.dataset_title
                            for c in self.columns]
        lines = [_md_row(head), "|" + "|".join(["---"] + [":---:"] * len(self.columns)) + "|"]
        for row in self.rows:
            cells = [_md_escape(row.label)]
            for col in self.columns:
                cell = row.cells.get(col)
                cells.append("–" if cell is None else self._cell_text(cell, "md"))
            lines.append(_md_row(cells))
        out = "\n".join(lines) + "\n"
        if self.notes:
            out += "\n" + "\n".join(f"- {_md_escape(n)}" for n in self.notes) + "\n"
        if self.comparisons:
            out += "\n" + self._comparisons_markdown()
        return out

    def _comparisons_markdown(self) -> str:
        out = []
        for (a, b, metric), comps in _group_comparisons(self.comparisons).items():
            out.append(f"Paired Wilcoxon signed-rank test (two-sided), {_md_escape(a)} vs {_md_escape(b)}, "
                       f"{METRICS[metric]} (%) on the same images:\n")
            out.append(_md_row(["Dataset", "n", _md_escape(a), _md_escape(b), "Difference", "W", "p"]))
            out.append("|---|---:|---:|---:|---:|---:|---:|")
            for c in comps:
                out.append(_md_row(self._comparison_cells(c)))
            out.append("")
        return "\n".join(out)

    # -- LaTeX ---------------------------------------------------------------------------------
    def to_latex(self) -> str:
        both = len({c.metric for c in self.columns}) > 1
        ncol = len(self.columns)
        lines = ["% vlsm table; needs \\usepackage{booktabs}", "\\begin{table}[t]", "\\centering",
                 f"\\caption{{{_tex_escape(' '.join(self.notes))}}}",
                 f"\\begin{{tabular}}{{l{'c' * ncol}}}", "\\toprule"]
        if both:
            groups = _group_consecutive(self.columns)
            top, rules, start = ["Model"], [], 2
            for (title, span) in groups:
                top.append(f"\\multicolumn{{{span}}}{{c}}{{{_tex_escape(title)}}}")
                rules.append(f"\\cmidrule(lr){{{start}-{start + span - 1}}}")
                start += span
            lines.append(" & ".join(top) + " \\\\")
            lines.append(" ".join(rules))
            lines.append(" & ".join([""] + [c.metric_title for c in self.columns]) + " \\\\")
        else:
            lines.append(" & ".join(["Model"] + [_tex_escape(c.dataset_title) for c in self.columns]) + " \\\\")
        lines.append("\\midrule")
        for row in self.rows:
            cells = [_tex_escape(row.label)]
            for col in self.columns:
                cell = row.cells.get(col)
                cells.append("--" if cell is None else self._cell_text(cell, "tex"))
            lines.append(" & ".join(cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        for (a, b, metric), comps in _group_comparisons(self.comparisons).items():
            lines += ["", "\\begin{table}[t]", "\\centering",
                      f"\\caption{{Paired two-sided Wilcoxon signed-rank test, {_tex_escape(a)} vs "
                      f"{_tex_escape(b)}, {METRICS[metric]} (\\%) on the same images.}}",
                      "\\begin{tabular}{lrrrrrr}", "\\toprule",
                      f"Dataset & $n$ & {_tex_escape(a)} & {_tex_escape(b)} & Difference & $W$ & $p$ \\\\",
                      "\\midrule"]
            for c in comps:
                cells = self._comparison_cells(c)
                lines.append(" & ".join([_tex_escape(cells[0])] + cells[1:]) + " \\\\")
            lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        return "\n".join(lines) + "\n"

    # -- CSV -----------------------------------------------------------------------------------
    CSV_COLUMNS = ("model", "label", "dataset", "split", "metric", "n", "mean_pct", "std_pct",
                   "ci_low_pct", "ci_high_pct", "best", "gain_points", "gain_over", "compare_with",
                   "wilcoxon_statistic", "wilcoxon_p")

    def to_csv(self) -> str:
        """One line per (model, dataset, split, metric), full precision, percent units."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.CSV_COLUMNS)
        comp_index = {}
        for c in self.comparisons:
            comp_index[(c.model_a, c.dataset, c.split, c.metric)] = (c.model_b, c)
            comp_index[(c.model_b, c.dataset, c.split, c.metric)] = (c.model_a, c)
        for row in self.rows:
            for col in self.columns:
                cell = row.cells.get(col)
                if cell is None:
                    continue
                other, comp = comp_index.get((row.label, col.dataset, col.split, col.metric), ("", None))
                writer.writerow([
                    row.name, row.label, col.dataset, col.split, col.metric, cell.n, _num(cell.mean),
                    _num(cell.std), _num(cell.ci[0]) if cell.ci else "", _num(cell.ci[1]) if cell.ci else "",
                    int(cell.best), _num(cell.gain) if cell.gain is not None else "", cell.gain_over or "",
                    other, _num(comp.statistic) if comp else "", f"{comp.pvalue:.6g}" if comp else ""])
        return buf.getvalue()

    # -- shared --------------------------------------------------------------------------------
    def _comparison_cells(self, c: Comparison) -> list:
        d = self.digits
        return [Column(c.dataset, c.split, c.metric).dataset_title, str(c.n), stats.format_number(c.mean_a, d),
                stats.format_number(c.mean_b, d), stats.format_gain(c.mean_diff, d), f"{c.statistic:g}",
                stats.format_pvalue(c.pvalue)]

    def _cell_text(self, cell: Cell, fmt: str) -> str:
        d = self.digits
        core = stats.format_mean_std(cell.mean, cell.std, d, " $\\pm$ " if fmt == "tex" else " ± ")
        if cell.best:
            core = f"\\textbf{{{core}}}" if fmt == "tex" else f"**{core}**"
        parts = [core]
        if cell.gain is not None:
            g = f"({stats.format_gain(cell.gain, d)})"
            parts.append(f"{{\\scriptsize {g}}}" if fmt == "tex" else g)
        if cell.ci is not None:
            ci = stats.format_ci(cell.ci[0], cell.ci[1], d)
            parts.append(f"{{\\scriptsize {ci}}}" if fmt == "tex" else ci)
        return " ".join(parts)


def _num(v: float, digits: int = 6) -> str:
    return f"{round(float(v), digits):.{digits}f}".rstrip("0").rstrip(".") if math.isfinite(v) else "nan"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "±": r"$\pm$", "–": "--"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def _group_consecutive(columns: list) -> list:
    groups = []
    for c in columns:
        if groups and groups[-1][0] == c.dataset_title:
            groups[-1][1] += 1
        else:
            groups.append([c.dataset_title, 1])
    return [tuple(g) for g in groups]


def _group_comparisons(comparisons: list) -> dict:
    out: dict = {}
    for c in comparisons:
        out.setdefault((c.model_a, c.model_b, c.metric), []).append(c)
    return out


def _find_row(rows: list, model: str) -> Row:
    exact = [r for r in rows if r.label == model]
    if len(exact) == 1:
        return exact[0]
    matches = [r for r in rows if _norm(model) in (_norm(r.label), _norm(r.name))
               or (r.paper_name and _norm(model) == _norm(r.paper_name))]
    labels = ", ".join(r.label for r in rows)
    if not matches:
        raise ValueError(f"no model {model!r} in the table; models: {labels}")
    if len(matches) > 1:
        raise ValueError(f"{model!r} matches several models ({', '.join(r.label for r in matches)}); "
                         f"use the exact label")
    return matches[0]


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------
def _dataset_key(dataset: str) -> tuple:
    order = list(DATASET_NAMES)
    return (order.index(dataset), "") if dataset in DATASET_NAMES else (len(order), dataset.lower())


def _split_key(split: str) -> tuple:
    return (SPLIT_ORDER.index(split), "") if split in SPLIT_ORDER else (len(SPLIT_ORDER), split)


def _model_key(row: Row) -> tuple:
    if row.paper_name:
        return (PAPER_MODEL_ORDER.index(row.paper_name), row.label.casefold())
    return (len(PAPER_MODEL_ORDER), row.label.casefold())


def collect_scores(summaries: Sequence[RunSummary]) -> dict:
    """``{(row label, dataset, split): CaseScores}`` from loaded summaries.

    The row label is the model's label; when one model was evaluated with several prompts (a prompt
    sweep of ``vlsm evaluate``), each prompt gets its own row, labelled ``"<label> (<prompt>)"``.
    The same model, dataset, split and prompt twice is an error naming both files.
    """
    seen: dict = {}
    names: dict = {}
    for s in summaries:
        for r in s.results:
            label = r.model.label
            if label in names and names[label][0] != r.model.name:
                raise ValueError(f"label {label!r} is used by two different models: {names[label][0]!r} in "
                                 f"{names[label][1]} and {r.model.name!r} in {s.path}; give them distinct labels")
            names.setdefault(label, (r.model.name, s.path))
            key = (label, r.dataset, r.split, r.prompt)
            if key in seen:
                prev = seen[key]
                if prev.summary_path.resolve() == s.path.resolve():
                    where = f"{s.path} was given twice"
                else:
                    where = f"both {prev.summary_path} and {s.path} have them"
                raise ValueError(f"two results for model {label!r} on {r.dataset}/{r.split}"
                                 + (f" with prompt {r.prompt!r}" if r.prompt else "") + f": {where} "
                                 f"(per-case files {prev.per_case_path} and {r.per_case_path}). Pass only "
                                 f"one of them (a run folder already includes its eval/ folders).")
            seen[key] = r
    prompts: dict = {}
    for (label, _, _, prompt) in seen:
        prompts.setdefault(label, set()).add(prompt)
    out = {}
    for (label, dataset, split, prompt), r in seen.items():
        row = label if len(prompts[label]) == 1 else f"{label} ({prompt})"
        out[(row, dataset, split)] = r
    return out


def build_table(summaries: Iterable[Union[str, Path, RunSummary]], metric: str = "dice", ci: bool = True,
                compare: Optional[tuple] = None, gains: bool = True, *, n_resamples: int = 10000,
                confidence: float = 0.95, seed: int = 0, ci_method: str = "percentile",
                digits: int = 2) -> Table:
    """Build the results table; see the module docstring for every convention.

    Args:
        summaries: run folders, evaluation folders, summary.json paths or :class:`RunSummary`.
        metric: ``"dice"``, ``"iou"`` or ``"both"`` (a Dice and an IoU column per dataset).
        ci: add a bootstrap confidence interval of the mean to each cell.
        compare: ``(model_a, model_b)`` labels (or names) for a paired Wilcoxon test per dataset.
        gains: show each ensemble's gain over its VLSM.
        n_resamples, confidence, seed, ci_method: bootstrap settings (see :func:`stats.bootstrap_ci`).
        digits: decimals of the percentages shown.
    """
    if metric not in (*METRICS, "both"):
        raise ValueError(f"unknown metric {metric!r}; use dice, iou or both")
    metrics = list(METRICS) if metric == "both" else [metric]
    loaded = load_summaries(summaries)
    if not loaded:
        raise ValueError("no results given: pass at least one run folder or evaluation folder")
    scores = collect_scores(loaded)

    rows: dict = {}
    for (label, _dataset, _split), sc in scores.items():
        if label not in rows:
            rows[label] = Row(label=label, name=sc.model.name,
                              paper_name=paper_model(sc.model.label, sc.model.name))
    data_keys = sorted({(d, s) for (_, d, s) in scores}, key=lambda k: (_dataset_key(k[0]), _split_key(k[1])))
    columns = [Column(d, s, m) for (d, s) in data_keys for m in metrics]

    for (label, dataset, split), sc in scores.items():
        for m in metrics:
            values = sc.values(m) * 100.0
            mean, std = stats.mean_std(values)
            interval = None
            if ci:
                interval = stats.bootstrap_ci(values, np.mean, n_resamples=n_resamples, confidence=confidence,
                                              seed=seed, method=ci_method)
            rows[label].cells[Column(dataset, split, m)] = Cell(mean, std, sc.n, interval, source=sc.summary_path)
    ordered = sorted(rows.values(), key=_model_key)

    notes = []
    for col in columns:
        _mark_best(ordered, col, digits)
    if gains:
        notes += _add_gains(ordered, columns)
    notes += _consistency_notes(scores, data_keys)

    comparisons = []
    if compare:
        comparisons, cnotes = _compare(ordered, scores, data_keys, metrics, compare)
        notes += cnotes

    head = [_describe(metrics, ci, n_resamples, confidence, seed, ci_method, gains, ordered)]
    sizes = _sizes(scores, data_keys)
    if sizes:
        head.append(sizes)
    return Table(columns=columns, rows=ordered, comparisons=comparisons, notes=head + notes, metric=metric,
                 digits=digits)


def _mark_best(rows: list, col: Column, digits: int) -> None:
    cells = [r.cells[col] for r in rows if col in r.cells]
    if len(cells) < 2:
        return
    best = max(round(c.mean, digits) for c in cells)
    for c in cells:
        c.best = round(c.mean, digits) == best


def _add_gains(rows: list, columns: list) -> list:
    notes = []
    by_paper: dict = {}
    for r in rows:
        if r.paper_name:
            by_paper.setdefault(r.paper_name, []).append(r)
    for ens in rows:
        refs = ENSEMBLE_REFERENCES.get(ens.paper_name or "")
        if not refs:
            continue
        for col in columns:
            cell = ens.cells.get(col)
            if cell is None:
                continue
            candidates = []
            ambiguous = []
            for ref in refs:
                ref_rows = [r for r in by_paper.get(ref, []) if col in r.cells]
                if len(ref_rows) > 1:
                    ambiguous.append((ref, ref_rows))
                elif ref_rows:
                    candidates.append(ref_rows[0])
            if ambiguous:
                ref, ref_rows = ambiguous[0]
                notes.append(f"No gain for {ens.label} on {col.dataset_title}: several rows are {ref} "
                             f"({', '.join(r.label for r in ref_rows)}); pass only one of them.")
                continue
            if not candidates:
                continue
            ref_row = max(candidates, key=lambda r: r.cells[col].mean)
            cell.gain = cell.mean - ref_row.cells[col].mean
            cell.gain_over = ref_row.label
    return notes


def _consistency_notes(scores: dict, data_keys: list) -> list:
    notes = []
    for dataset, split in data_keys:
        group = [(label, sc) for (label, d, s), sc in scores.items() if (d, s) == (dataset, split)]
        title = Column(dataset, split, "dice").dataset_title
        name_sets = {frozenset(sc.names) for _, sc in group}
        if len(name_sets) > 1:
            notes.append(f"Warning: on {title} the models were not evaluated on the same images ("
                         + ", ".join(f"{label}: {sc.n}" for label, sc in group) + ").")
        thresholds = {sc.threshold for _, sc in group}
        if len(thresholds) > 1:
            notes.append(f"Warning: on {title} the models used different thresholds ("
                         + ", ".join(f"{label}: {sc.threshold}" for label, sc in group) + ").")
        prompts = {sc.prompt for _, sc in group}
        if len(prompts) > 1:
            notes.append(f"Note: on {title} the models used different prompts ("
                         + ", ".join(f"{label}: {sc.prompt}" for label, sc in group) + ").")
    return notes


def _sizes(scores: dict, data_keys: list) -> str:
    parts = []
    for dataset, split in data_keys:
        ns = sorted({sc.n for (_, d, s), sc in scores.items() if (d, s) == (dataset, split)})
        parts.append(f"{Column(dataset, split, 'dice').dataset_title} {'/'.join(map(str, ns))}")
    return "Images per dataset: " + ", ".join(parts) + "."


def _describe(metrics, ci, n_resamples, confidence, seed, ci_method, gains, rows) -> str:
    what = " and ".join(METRICS[m] for m in metrics)
    text = (f"{what} (%): mean ± std over the test images (population std, ddof=0); "
            f"bold: best in its column.")
    if gains and any(c.gain is not None for r in rows for c in r.cells.values()):
        text += (" (+x): gain of an ensemble over its VLSM in points (BiomedCLIPSeg-A over BiomedCLIPSeg, "
                 "CLIPSeg-B over CLIPSeg, Ensemble-C over the better of BiomedCLIPSeg and CLIPSeg).")
    if ci:
        method = "percentile" if ci_method == "percentile" else "BCa"
        text += (f" [low, high]: {confidence * 100:g}% {method} bootstrap CI of the mean "
                 f"({n_resamples} resamples of the images, seed {seed}).")
    return text


def _compare(rows: list, scores: dict, data_keys: list, metrics: list, compare) -> tuple:
    if len(compare) != 2:
        raise ValueError(f"compare needs exactly two models, got {list(compare)}")
    a, b = (_find_row(rows, m) for m in compare)
    if a is b:
        raise ValueError(f"compare needs two different models, got {compare[0]!r} twice")
    comparisons, notes = [], []
    for dataset, split in data_keys:
        sa, sb = scores.get((a.label, dataset, split)), scores.get((b.label, dataset, split))
        title = Column(dataset, split, "dice").dataset_title
        if sa is None or sb is None:
            missing = a.label if sa is None else b.label
            if sa is not None or sb is not None:
                notes.append(f"No Wilcoxon test on {title}: {missing} has no result there.")
            continue
        for m in metrics:
            try:
                stat, p = stats.paired_wilcoxon(sa.by_name(m), sb.by_name(m),
                                                f"{a.label} ({sa.per_case_path})", f"{b.label} ({sb.per_case_path})")
            except ValueError as err:
                raise ValueError(f"cannot compare {a.label} and {b.label} on {title}: {err}") from None
            comparisons.append(Comparison(dataset, split, m, a.label, b.label, sa.n,
                                          float(np.mean(sa.values(m)) * 100), float(np.mean(sb.values(m)) * 100),
                                          stat, p))
    if not comparisons:
        raise ValueError(f"{a.label} and {b.label} share no dataset to compare on")
    return comparisons, notes


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


__all__ = ["AGREEMENT_TOL", "Cell", "CaseScores", "Column", "Comparison", "DATASET_NAMES",
           "ENSEMBLE_REFERENCES", "ModelInfo", "PAPER_MODEL_ORDER", "Row", "RunSummary", "Table",
           "build_table", "collect_scores", "dataset_title", "format_for_path", "load_summaries",
           "load_summary", "paper_model", "read_per_case"]
