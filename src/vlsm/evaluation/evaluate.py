"""Evaluate a model on dataset splits at each image's original resolution.

:func:`evaluate_targets` is the one evaluation path (``vlsm evaluate``, :func:`vlsm.api.evaluate` and the
end of ``vlsm train``): for each :class:`EvalTarget` predict with :class:`vlsm.Predictor`, score each
image against its mask (:func:`evaluate_records`), then write every evaluation folder (``per_case.csv`` +
``summary.json``, see :mod:`vlsm.runs.results`) once all are scored, so a failure writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from vlsm.data import load_mask, read_spacing
from vlsm.evaluation.metrics import (
    BOUNDARY_EMPTY_RULE,
    NSD_TOLERANCE,
    MetricAccumulator,
    case_from_counts,
    hd95,
    nsd,
    overlap_counts,
)
from vlsm.models import SegmentationModel
from vlsm.predictor import Predictor
from vlsm.runs import PER_CASE_FIELDS, EvalResult, model_info, model_label, write_evaluation
from vlsm.runs.staging import staged

#: Scores are computed in fp32 whatever the device, so they do not depend on mixed precision.
EVAL_PRECISION = "32-true"


#: Images per forward pass when evaluating (outputs do not depend on it; memory does).
EVAL_BATCH_SIZE = 16


def _predictor(model: Union[SegmentationModel, Predictor], device, batch_size: int) -> Predictor:
    if isinstance(model, Predictor):
        return model
    return Predictor(model, device=device, precision=EVAL_PRECISION, batch_size=batch_size)


def evaluate_records(model: Union[SegmentationModel, Predictor], records: Sequence, *, prompt: str = "p1",
                     threshold: Optional[float] = None, device="auto", batch_size: int = EVAL_BATCH_SIZE,
                     boundary: bool = False, nsd_tolerance: float = NSD_TOLERANCE) -> MetricAccumulator:
    """Score every record (its mask is required) at the mask's original size; ``threshold`` None is the
    predictor's (0.5 for a bare model).

    Predictions stay on the model's device: the resize to the original size, sigmoid, threshold and
    overlap counts run there for each group of equal-sized images; each mask file is read once and
    only the counts come back. ``boundary``: also HD95 and NSD (at ``nsd_tolerance``) per image, on the
    CPU, in mm where the mask (or image) file gives a pixel spacing, else in pixels.
    """
    records = list(records)
    missing = [r.name for r in records if r.mask_path is None]
    if missing:
        raise ValueError(f"{len(missing)} image(s) have no ground-truth mask (e.g. {missing[:3]}); "
                         f"use `vlsm predict` for images without masks")
    predictor = _predictor(model, device, batch_size)
    cases: list = [None] * len(records)
    units: set = set()
    for group in predictor.predict_record_groups(records, prompt=prompt, threshold=threshold):
        size = tuple(group.mask.shape[1:])
        masks = [ground_truth(records[i], size) for i in group.indices]
        gt = torch.from_numpy(np.stack(masks)).to(group.mask.device)
        counts = overlap_counts(group.mask, gt).T.tolist()
        predicted = group.mask.cpu().numpy() if boundary else None
        for j, (index, prompt_text, (inter, pred_area, gt_area)) in enumerate(zip(group.indices, group.prompts, counts)):
            case = case_from_counts(records[index].name, inter, pred_area, gt_area, size, prompt_text)
            if boundary:
                spacing = pixel_spacing(records[index])
                units.add("mm" if spacing else "pixels")
                case.hd95 = hd95(predicted[j], masks[j], spacing)
                case.nsd = nsd(predicted[j], masks[j], nsd_tolerance, spacing)
            cases[index] = case
    described = {"nsd_tolerance": float(nsd_tolerance), "distance_unit": units.pop() if len(units) == 1 else "mixed"}
    return MetricAccumulator(cases, described if boundary else {})


def pixel_spacing(record) -> Optional[tuple]:
    """(row_mm, col_mm) of a record's mask file, else of its image file (DICOM, NIfTI, MHD); None for formats
    without one (PNG, JPEG...): the boundary metrics are then in pixels."""
    for path in (record.mask_path, record.image_path):
        spacing = read_spacing(path) if path is not None else None
        if spacing:
            return tuple(float(s) for s in spacing)
    return None


def ground_truth(record, size_hw: tuple) -> np.ndarray:
    """A record's boolean mask, refused (one line naming both files) when its size is not the image's."""
    gt = load_mask(record.mask_path)
    if gt.shape != size_hw:
        raise ValueError(f"image and mask sizes differ for {record.name!r}: {record.image_path} is "
                         f"{size_hw[1]}x{size_hw[0]}, {record.mask_path} is "
                         f"{gt.shape[1]}x{gt.shape[0]}. Fix the pair (`vlsm data check` lists all such cases)")
    return gt


def write_results(out_dir: Path, acc: MetricAccumulator, *, model: dict, dataset: str, split: str,
                  prompt: str, threshold: float, extra: Optional[dict] = None, **inference) -> EvalResult:
    """Write per_case.csv + summary.json into ``out_dir``; returns the result entry (``inference``: ``tta``,
    ``postprocessing``, recorded when used)."""
    result = acc.result(dataset=dataset, split=split, threshold=threshold, prompt=prompt, **inference)
    if acc.boundary and result.hd95_mean is not None:
        extra = {**(extra or {}), "boundary_metrics": boundary_record(acc.boundary)}
    return write_evaluation(out_dir, acc.cases, result, model=model, extra=extra)


def boundary_record(boundary: dict) -> dict:
    """How HD95 and NSD were computed, as the summary.json of an evaluation states it."""
    import monai

    return {"implementation": f"MONAI {monai.__version__}: compute_hausdorff_distance(percentile=95), "
                              f"compute_surface_dice (edge pixels)", **boundary,
            "empty_masks": BOUNDARY_EMPTY_RULE}


@dataclass
class EvalTarget:
    """One evaluation to make: ``records`` of ``dataset``/``split`` scored with ``prompt`` at ``threshold``,
    written to ``out_dir`` (``per_case.csv`` + ``summary.json``; ``extra`` adds keys to the summary)."""

    dataset: str
    split: str
    records: Sequence
    prompt: str
    threshold: float
    out_dir: Path
    extra: Optional[dict] = None
    boundary: bool = False  # also HD95 and NSD (at nsd_tolerance)
    nsd_tolerance: float = NSD_TOLERANCE


def evaluate_targets(predictor: Union[Predictor, SegmentationModel], targets: Sequence[EvalTarget], *,
                     device="auto", batch_size: int = EVAL_BATCH_SIZE) -> list[EvalResult]:
    """Score every target, then write their evaluation folders; returns one result per target.

    Nothing is written until every target is scored, and the files go through a staging folder beside
    each ``out_dir`` (:mod:`vlsm.runs.staging`): a failure leaves no folder behind and keeps the files of
    an earlier evaluation in place. ``device``/``batch_size`` apply when ``predictor`` is a bare model."""
    predictor = _predictor(predictor, device, batch_size)
    scored = [(t, evaluate_records(predictor, t.records, prompt=t.prompt, threshold=t.threshold, boundary=t.boundary,
                                   nsd_tolerance=t.nsd_tolerance)) for t in targets]
    info = model_info(predictor.model)
    if getattr(predictor, "sources", None):  # an ensemble: its own row of a table, naming its runs
        info.update(label=predictor.label, ensemble=list(predictor.sources))
    inference = {"tta": True if predictor.tta else None,
                 "postprocessing": predictor.postprocessing.describe() if predictor.postprocessing.active else None}
    results = []
    with staged([t.out_dir for t in targets]) as folders:
        for (target, acc), folder in zip(scored, folders):
            results.append(write_results(folder.path, acc, model=info, dataset=target.dataset, split=target.split,
                                         prompt=target.prompt, threshold=target.threshold, extra=target.extra,
                                         **inference))
    return results


def evaluate_split(model: Union[SegmentationModel, Predictor], records: Sequence, out_dir: Path, *, dataset: str,
                   split: str, prompt: str = "p1", threshold: float = 0.5, device="auto", batch_size: int = EVAL_BATCH_SIZE,
                   extra: Optional[dict] = None, boundary: bool = False,
                   nsd_tolerance: float = NSD_TOLERANCE) -> EvalResult:
    """Evaluate ``records`` (one dataset split) and write the evaluation folder ``out_dir``: one
    :class:`EvalTarget` through :func:`evaluate_targets`."""
    target = EvalTarget(dataset, split, records, prompt, threshold, Path(out_dir), extra, boundary, nsd_tolerance)
    return evaluate_targets(model, [target], device=device, batch_size=batch_size)[0]


def format_results(rows: Sequence[Union[dict, EvalResult]], label: str = "") -> str:
    """A small fixed-width table: dataset/split, n, Dice and IoU as mean ± std (in %), and HD95 (in its unit) and
    NSD (in %) when a row has them."""
    rows = [r.to_dict() if isinstance(r, EvalResult) else r for r in rows]
    boundary = any(r.get("hd95_mean") is not None for r in rows)
    head = f"{'model':<28} {'dataset':<24} {'split':<6} {'n':>5}  {'Dice (%)':>16}  {'IoU (%)':>16}"
    if boundary:
        units = {r.get("distance_unit") for r in rows if r.get("hd95_mean") is not None}
        head += f"  {'HD95 (' + ('mm' if units == {'mm'} else 'px' if units == {'pixels'} else 'px/mm') + ')':>16}"
        head += f"  {'NSD (%)':>16}"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (f"{r.get('label', label):<28} {r['dataset']:<24} {r['split']:<6} {r['n']:>5}  "
                f"{100 * r['dice_mean']:>7.2f} ± {100 * r['dice_std']:<6.2f}  "
                f"{100 * r['iou_mean']:>7.2f} ± {100 * r['iou_std']:<6.2f}")
        if boundary and r.get("hd95_mean") is not None:
            line += (f"  {r['hd95_mean']:>7.2f} ± {r['hd95_std']:<6.2f}  "
                     f"{100 * r['nsd_mean']:>7.2f} ± {100 * r['nsd_std']:<6.2f}")
        lines.append(line)
    return "\n".join(lines)


__all__ = ["EVAL_BATCH_SIZE", "EVAL_PRECISION", "PER_CASE_FIELDS", "EvalTarget", "boundary_record", "evaluate_records",
           "evaluate_split", "evaluate_targets", "format_results", "ground_truth", "model_info", "model_label",
           "pixel_spacing", "write_results"]
