"""Renderers of a :class:`~vlsm.evaluation.report.table.Table`: Markdown, LaTeX (booktabs) and CSV."""
from __future__ import annotations

import csv
import io
import math
from typing import Sequence

from vlsm.evaluation import stats
from vlsm.evaluation.report.paper import METRICS, column_title

#: the CSV's columns; the *_pct and gain_points values are in the row's unit: % but for HD95, whose unit is pixels
#: or mm (a table with rows over several seeds adds n_seeds after unit; their std is across the seeds)
CSV_COLUMNS = ("model", "label", "dataset", "split", "metric", "n", "mean_pct", "std_pct",
               "ci_low_pct", "ci_high_pct", "best", "gain_points", "gain_over", "compare_with",
               "wilcoxon_statistic", "wilcoxon_p", "unit")


def _unit(metric: str) -> str:
    """How a comparison's heading states a metric's unit."""
    return "lower is better" if metric == "hd95" else "%"


def to_markdown(table) -> str:
    both = len({c.metric for c in table.columns}) > 1
    head = ["Model"] + [f"{c.dataset_title} {c.metric_title}" if both else c.dataset_title
                        for c in table.columns]
    lines = [_md_row(head), "|" + "|".join(["---"] + [":---:"] * len(table.columns)) + "|"]
    for row in table.rows:
        cells = [_md_escape(row.label)]
        for col in table.columns:
            cell = row.cells.get(col)
            cells.append("–" if cell is None else _cell_text(table, cell, "md"))
        lines.append(_md_row(cells))
    out = "\n".join(lines) + "\n"
    if table.notes:
        out += "\n" + "\n".join(f"- {_md_escape(n)}" for n in table.notes) + "\n"
    if table.comparisons:
        out += "\n" + _comparisons_markdown(table)
    return out

def _comparisons_markdown(table) -> str:
    out = []
    for (a, b, metric), comps in _group_comparisons(table.comparisons).items():
        out.append(f"Paired Wilcoxon signed-rank test (two-sided), {_md_escape(a)} vs {_md_escape(b)}, "
                   f"{METRICS[metric]} ({_unit(metric)}) on the same images:\n")
        out.append(_md_row(["Dataset", "n", _md_escape(a), _md_escape(b), "Difference", "W", "p"]))
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for c in comps:
            out.append(_md_row(_comparison_cells(table, c)))
        out.append("")
    return "\n".join(out)

def to_latex(table) -> str:
    both = len({c.metric for c in table.columns}) > 1
    ncol = len(table.columns)
    lines = ["% vlsm table; needs \\usepackage{booktabs}", "\\begin{table}[t]", "\\centering",
             f"\\caption{{{_tex_escape(' '.join(table.notes))}}}",
             f"\\begin{{tabular}}{{l{'c' * ncol}}}", "\\toprule"]
    if both:
        groups = _group_consecutive(table.columns)
        top, rules, start = ["Model"], [], 2
        for (title, span) in groups:
            top.append(f"\\multicolumn{{{span}}}{{c}}{{{_tex_escape(title)}}}")
            rules.append(f"\\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        lines.append(" & ".join(top) + " \\\\")
        lines.append(" ".join(rules))
        lines.append(" & ".join([""] + [c.metric_title for c in table.columns]) + " \\\\")
    else:
        lines.append(" & ".join(["Model"] + [_tex_escape(c.dataset_title) for c in table.columns]) + " \\\\")
    lines.append("\\midrule")
    for row in table.rows:
        cells = [_tex_escape(row.label)]
        for col in table.columns:
            cell = row.cells.get(col)
            cells.append("--" if cell is None else _cell_text(table, cell, "tex"))
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    for (a, b, metric), comps in _group_comparisons(table.comparisons).items():
        lines += ["", "\\begin{table}[t]", "\\centering",
                  f"\\caption{{Paired two-sided Wilcoxon signed-rank test, {_tex_escape(a)} vs "
                  f"{_tex_escape(b)}, {METRICS[metric]} ({_tex_escape(_unit(metric))}) on the same images.}}",
                  "\\begin{tabular}{lrrrrrr}", "\\toprule",
                  f"Dataset & $n$ & {_tex_escape(a)} & {_tex_escape(b)} & Difference & $W$ & $p$ \\\\",
                  "\\midrule"]
        for c in comps:
            cells = _comparison_cells(table, c)
            lines.append(" & ".join([_tex_escape(cells[0])] + cells[1:]) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table) -> str:
    """One line per (model, dataset, split, metric), full precision, in the unit of the last column (% but for
    HD95)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    seeds = any(c.n_seeds for r in table.rows for c in r.cells.values())  # (rows over several seeds: n_seeds too)
    writer.writerow(CSV_COLUMNS + (("n_seeds",) if seeds else ()))
    comp_index = {}
    for c in table.comparisons:
        comp_index[(c.model_a, c.dataset, c.split, c.metric)] = (c.model_b, c)
        comp_index[(c.model_b, c.dataset, c.split, c.metric)] = (c.model_a, c)
    for row in table.rows:
        for col in table.columns:
            cell = row.cells.get(col)
            if cell is None:
                continue
            other, comp = comp_index.get((row.label, col.dataset, col.split, col.metric), ("", None))
            writer.writerow([
                row.name, row.label, col.dataset, col.split, col.metric, cell.n, _num(cell.mean),
                _num(cell.std), _num(cell.ci[0]) if cell.ci else "", _num(cell.ci[1]) if cell.ci else "",
                int(cell.best), _num(cell.gain) if cell.gain is not None else "", cell.gain_over or "",
                other, _num(comp.statistic) if comp else "", f"{comp.pvalue:.6g}" if comp else "", cell.unit,
                *([cell.n_seeds or 1] if seeds else [])])
    return buf.getvalue()

def _comparison_cells(table, c) -> list:
    d = table.digits
    return [column_title(c.dataset, c.split), str(c.n), stats.format_number(c.mean_a, d),
            stats.format_number(c.mean_b, d), stats.format_gain(c.mean_diff, d), f"{c.statistic:g}",
            stats.format_pvalue(c.pvalue)]

def _cell_text(table, cell, fmt: str) -> str:
    d = table.digits
    core = stats.format_mean_std(cell.mean, cell.std, d, " $\\pm$ " if fmt == "tex" else " ± ")
    if cell.best:
        core = f"\\textbf{{{core}}}" if fmt == "tex" else f"**{core}**"
    parts = [core]
    if cell.n_seeds:
        parts.append(f"({cell.n_seeds} seeds)")
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


__all__ = ["CSV_COLUMNS", "to_csv", "to_latex", "to_markdown"]
