"""``vlsm table`` and ``vlsm figure`` as functions: paper-style result tables and qualitative figures."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from vlsm.api._common import call_scope, check_at_least, check_threshold
from vlsm.errors import UserError

PathLike = Union[str, Path]


@dataclass
class TableResult:
    """A results table (:class:`vlsm.evaluation.report.Table`: ``to_markdown()``, ``render(fmt)``) and the file
    :func:`table` wrote it to (None when it wrote none)."""

    table: object
    path: Optional[Path] = None

    def to_markdown(self) -> str:
        return self.table.to_markdown()


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; choose another name or pass --overwrite")
    if not path.parent.is_dir():
        raise UserError(f"the folder {path.parent} of {path} does not exist; create it first")


def table(runs: Sequence[PathLike], *, output: Optional[PathLike] = None, format: Optional[str] = None,
          metric: str = "dice", ci: bool = True, bootstrap: int = 10000, confidence: float = 0.95,
          ci_method: str = "percentile", seed: int = 0, compare: Optional[Sequence[str]] = None,
          gains: bool = True, digits: int = 2, overwrite: bool = False) -> TableResult:
    """The results table of run folders, evaluation folders or summary.json files: mean ± std per model and
    dataset (``metric``: dice, iou, hd95, nsd, both (Dice and IoU) or all (the four; HD95 and NSD from evaluations
    with the boundary metrics)), best in bold (HD95: the lowest), the ensembles' ``gains``, bootstrap confidence
    intervals (``ci``: ``bootstrap`` resamples at ``confidence``, ``ci_method`` percentile or bca, ``seed``)
    and, with ``compare=(A, B)``, a paired Wilcoxon test per dataset. Numbers are recomputed from each
    per_case.csv and checked against summary.json. ``output`` (.md, .tex, .csv, or ``format``) also writes it;
    an existing file is replaced only with ``overwrite``."""
    from vlsm.evaluation.report import build_table, format_for_path
    from vlsm.utils import write_text_atomic

    fmt = None
    out = Path(output) if output is not None else None
    if out is not None:
        fmt = format_for_path(out, format)
        _refuse_existing(out, overwrite)
    elif format:
        raise UserError("--format needs -o OUTPUT (the Markdown table is printed either way)")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 1:
        raise UserError(f"--bootstrap must be at least 1 (got {bootstrap}); use --no-ci for no intervals")
    if not 0 < confidence < 1:
        raise ValueError(f"--confidence must be between 0 and 1 (exclusive), got {confidence}")
    built = build_table(runs, metric=metric, ci=ci, compare=tuple(compare or ()) or None, gains=gains,
                        n_resamples=bootstrap, confidence=confidence, seed=seed, ci_method=ci_method, digits=digits)
    if out is not None:
        write_text_atomic(out, built.render(fmt))
    return TableResult(built, out)


def figure(runs: Sequence[PathLike], images: Sequence[str], output: PathLike, *,
           data: Optional[Sequence[PathLike]] = None, threshold: Optional[float] = None, device: str = "auto",
           batch_size: int = 4, dpi: int = 150, panel_inches: float = 1.8, names: bool = True,
           overwrite: bool = False, trust_checkpoint: bool = False):
    """The qualitative figure (``output``: .png, .pdf or .svg): rows = ``images`` (names as in per_case.csv, or
    image file names, looked up in the test split first, in ``data`` or the runs' datasets), columns = image,
    ground truth and each run's TP/FP/FN overlay titled by the image's Dice. Each run predicts with its
    evaluation prompt and threshold (``threshold`` overrides it). Returns the
    :class:`vlsm.evaluation.figures.FigureInfo` (path, size in pixels, per-image Dice of each run)."""
    from vlsm.evaluation.figures import figure_format, qualitative_from_runs

    out = Path(output)
    figure_format(out)
    _refuse_existing(out, overwrite)
    if threshold is not None:
        check_threshold(threshold)
    check_at_least("--batch-size", batch_size)
    check_at_least("--dpi", dpi)
    if not panel_inches > 0:
        raise ValueError(f"--panel-inches must be positive, got {panel_inches}")
    with call_scope(trust_checkpoint):
        return qualitative_from_runs(runs, images, out, data=data, threshold=threshold, device=device,
                                     batch_size=batch_size, overwrite=overwrite, dpi=dpi, panel_inches=panel_inches,
                                     show_names=names)


def learning_curve(runs: Sequence[PathLike], output: PathLike, *, metric: str = "dice", dpi: int = 150,
                   overwrite: bool = False):
    """The learning curve (``vlsm figure --curve``): ``metric`` against the fraction of the training split
    (``data.train_fraction``) per model, mean ± std over seeds, one panel per dataset, into ``output`` (.png, .pdf
    or .svg). Returns the :class:`vlsm.evaluation.curves.CurveInfo` (its points by model, dataset and fraction)."""
    from vlsm.evaluation.curves import learning_curve as draw
    from vlsm.evaluation.figures import figure_format

    out = Path(output)
    figure_format(out)
    _refuse_existing(out, overwrite)
    check_at_least("--dpi", dpi)
    return draw(runs, out, metric=metric, dpi=dpi, overwrite=overwrite)


__all__ = ["TableResult", "figure", "learning_curve", "table"]
