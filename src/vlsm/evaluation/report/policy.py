"""The statistics policy of a table: best of a column, ensemble gains, the paired Wilcoxon test, and
the notes that say how the numbers were computed and where the results disagree."""
from __future__ import annotations

import numpy as np

from vlsm.evaluation import stats
from vlsm.evaluation.report.groups import check_pairable
from vlsm.evaluation.report.paper import ENSEMBLE_REFERENCES, LOWER_IS_BETTER, METRICS, metric_scale
from vlsm.evaluation.report.table import Column, Comparison, find_row


def mark_best(rows: list, col: Column, digits: int) -> None:
    """Bold the best mean of a column (the highest; for HD95 the lowest), ties all marked."""
    cells = [r.cells[col] for r in rows if col in r.cells]
    if len(cells) < 2:
        return
    best = (min if col.metric in LOWER_IS_BETTER else max)(round(c.mean, digits) for c in cells)
    for c in cells:
        c.best = round(c.mean, digits) == best


def add_gains(rows: list, columns: list) -> list:
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
            # the better reference: the higher mean, or the lower HD95
            pick = min if col.metric in LOWER_IS_BETTER else max
            ref_row = pick(candidates, key=lambda r: r.cells[col].mean)
            cell.gain = cell.mean - ref_row.cells[col].mean
            cell.gain_over = ref_row.label
    return notes


def consistency_notes(scores: dict, data_keys: list) -> list:
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


def boundary_notes(scores: dict, metrics: list) -> list:
    """Notes on HD95/NSD: results without them (empty cells), and different units or NSD tolerances in a table."""
    asked = [m for m in metrics if m in ("hd95", "nsd")]
    if not asked:
        return []
    notes = []
    missing = sorted({label for (label, _, _), sc in scores.items() if not all(sc.has(m) for m in asked)})
    if missing:
        notes.append(f"No {'/'.join(METRICS[m] for m in asked)} for {', '.join(missing)}: evaluated without the "
                     f"boundary metrics (`vlsm evaluate RUN --boundary` adds them).")
    units = {sc.distance_unit for sc in scores.values() if sc.has("hd95")}
    tolerances = {sc.nsd_tolerance for sc in scores.values() if sc.has("nsd")}
    if len(units) > 1 or "mixed" in units:
        notes.append(f"Warning: HD95 and NSD mix units ({', '.join(sorted(str(u) for u in units))}): some files "
                     f"gave a pixel spacing (mm), others did not (pixels).")
    if len(tolerances) > 1:
        notes.append(f"Warning: the NSD tolerances differ ({', '.join(f'{t:g}' for t in sorted(tolerances))}).")
    return notes


def leakage_notes(summaries: list) -> list:
    """One note per run whose datasets list images in two splits (from its summary.json's "leakage")."""
    notes = []
    for s in summaries:
        for dataset, pairs in sorted(s.leakage.items()):
            for pair, names in sorted(pairs.items()):
                a, _, b = str(pair).partition("/")
                shown = ", ".join(map(str, names[:5])) + (", ..." if len(names) > 5 else "")
                notes.append(f"Leakage: {s.model.label} on {dataset} was trained and scored with {len(names)} "
                             f"image(s) listed in both {a} and {b} ({shown}); see {s.path}.")
    return notes


def sizes(scores: dict, data_keys: list) -> str:
    parts = []
    for dataset, split in data_keys:
        ns = sorted({sc.n for (_, d, s), sc in scores.items() if (d, s) == (dataset, split)})
        parts.append(f"{Column(dataset, split, 'dice').dataset_title} {'/'.join(map(str, ns))}")
    return "Images per dataset: " + ", ".join(parts) + "."


def describe(metrics, ci, n_resamples, confidence, seed, ci_method, gains, rows, units=()) -> str:
    percent = [METRICS[m] for m in metrics if m != "hd95"]
    what = ", ".join(percent[:-1]) + (" and " if len(percent) > 1 else "") + percent[-1] + " (%)" if percent else ""
    if "hd95" in metrics:
        unit = "mm" if set(units) == {"mm"} else "pixels" if set(units) <= {"pixels"} else "pixels or mm"
        what += (", " if what else "") + f"HD95 ({unit})"
    lower = " (HD95: the lowest)" if "hd95" in metrics else ""
    text = (f"{what}: mean ± std over the test images (population std, ddof=0); "
            f"bold: best in its column{lower}.")
    if gains and any(c.gain is not None for r in rows for c in r.cells.values()):
        text += (" (+x): gain of an ensemble over its VLSM in points (BiomedCLIPSeg-A over BiomedCLIPSeg, "
                 "CLIPSeg-B over CLIPSeg, Ensemble-C over the better of BiomedCLIPSeg and CLIPSeg).")
        if "hd95" in metrics:
            text += " For HD95 the gain is the ensemble's minus its VLSM's distance: negative is better."
    if ci:
        method = "percentile" if ci_method == "percentile" else "BCa"
        text += (f" [low, high]: {confidence * 100:g}% {method} bootstrap CI of the mean "
                 f"({n_resamples} resamples of the images, seed {seed}).")
    return text


def compare(rows: list, scores: dict, data_keys: list, metrics: list, compare) -> tuple:
    if len(compare) != 2:
        raise ValueError(f"compare needs exactly two models, got {list(compare)}")
    a, b = (find_row(rows, m) for m in compare)
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
            if not (sa.has(m) and sb.has(m)):
                notes.append(f"No Wilcoxon test of {METRICS[m]} on {title}: "
                             f"{a.label if not sa.has(m) else b.label} has no {METRICS[m]} scores.")
                continue
            check_pairable(sa, sb, a.label, b.label, title)
            try:
                stat, p = stats.paired_wilcoxon(sa.by_name(m), sb.by_name(m),
                                                f"{a.label} ({sa.per_case_path})", f"{b.label} ({sb.per_case_path})")
            except ValueError as err:
                raise ValueError(f"cannot compare {a.label} and {b.label} on {title}: {err}") from None
            scale = metric_scale(m)
            comparisons.append(Comparison(dataset, split, m, a.label, b.label, len(sa.by_name(m)),
                                          float(np.mean(sa.values(m)) * scale), float(np.mean(sb.values(m)) * scale),
                                          stat, p))
    if not comparisons:
        raise ValueError(f"{a.label} and {b.label} share no dataset to compare on")
    return comparisons, notes


__all__ = ["add_gains", "boundary_notes", "compare", "consistency_notes", "describe", "leakage_notes", "mark_best", "sizes"]
