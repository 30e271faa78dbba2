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

The parts: :mod:`.results` (loading and checking results), :mod:`.table` (the table model),
:mod:`.render` (Markdown, LaTeX, CSV), :mod:`.policy` (best, gains, Wilcoxon, notes), :mod:`.paper`
(the paper's model order and dataset names) and :mod:`.build` (:func:`build_table`).
"""
from __future__ import annotations

from vlsm.evaluation.report.build import FORMATS, build_table, format_for_path
from vlsm.evaluation.report.paper import (
    DATASET_NAMES,
    ENSEMBLE_REFERENCES,
    METRICS,
    PAPER_MODEL_ORDER,
    SPLIT_ORDER,
    dataset_title,
    paper_model,
)
from vlsm.evaluation.report.results import (
    AGREEMENT_TOL,
    CaseScores,
    ModelInfo,
    RunSummary,
    collect_scores,
    load_summaries,
    load_summary,
    read_per_case,
)
from vlsm.evaluation.report.table import Cell, Column, Comparison, Row, Table

__all__ = ["AGREEMENT_TOL", "Cell", "CaseScores", "Column", "Comparison", "DATASET_NAMES",
           "ENSEMBLE_REFERENCES", "ModelInfo", "PAPER_MODEL_ORDER", "Row", "RunSummary", "Table",
           "FORMATS", "METRICS", "SPLIT_ORDER", "build_table", "collect_scores", "dataset_title", "format_for_path", "load_summaries",
           "load_summary", "paper_model", "read_per_case"]
