"""The table model: columns (dataset, split, metric), rows (models) and cells (mean ± std, CI, gain),
plus the paired comparisons under it. :mod:`.render` turns it into Markdown, LaTeX or CSV."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from vlsm.evaluation.report import render
from vlsm.evaluation.report.paper import METRICS, column_title, norm


@dataclass(frozen=True)
class Column:
    dataset: str
    split: str
    metric: str

    @property
    def dataset_title(self) -> str:
        return column_title(self.dataset, self.split)

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
    unit: str = "%"  # HD95: pixels or mm
    n_seeds: Optional[int] = None  # a row over several seeds: mean ± std across them (report.groups)


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

    CSV_COLUMNS = render.CSV_COLUMNS

    def row(self, model: str) -> Row:
        return find_row(self.rows, model)

    def cell(self, model: str, dataset: str, metric: Optional[str] = None, split: str = "test") -> Optional[Cell]:
        metric = metric or (self.metric if self.metric not in ("both", "all") else "dice")
        return self.row(model).cells.get(Column(dataset, split, metric))

    def render(self, fmt: str) -> str:
        renderers = {"md": self.to_markdown, "tex": self.to_latex, "csv": self.to_csv}
        if fmt not in renderers:
            raise ValueError(f"unknown table format {fmt!r}; use one of {', '.join(renderers)}")
        return renderers[fmt]()

    def to_markdown(self) -> str:
        return render.to_markdown(self)

    def to_latex(self) -> str:
        return render.to_latex(self)

    def to_csv(self) -> str:
        """One line per (model, dataset, split, metric), full precision, percent units."""
        return render.to_csv(self)


def find_row(rows: list, model: str) -> Row:
    exact = [r for r in rows if r.label == model]
    if len(exact) == 1:
        return exact[0]
    matches = [r for r in rows if norm(model) in (norm(r.label), norm(r.name))
               or (r.paper_name and norm(model) == norm(r.paper_name))]
    labels = ", ".join(r.label for r in rows)
    if not matches:
        raise ValueError(f"no model {model!r} in the table (--compare); use one of its models: {labels}")
    if len(matches) > 1:
        raise ValueError(f"{model!r} matches several models ({', '.join(r.label for r in matches)}); "
                         f"use the exact label")
    return matches[0]


__all__ = ["Cell", "Column", "Comparison", "Row", "Table", "find_row"]
