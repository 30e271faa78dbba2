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

from vlsm.data import load_mask
from vlsm.evaluation.metrics import MetricAccumulator, case_from_counts, overlap_counts
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
                     threshold: float = 0.5, device="auto", batch_size: int = EVAL_BATCH_SIZE) -> MetricAccumulator:
    """Score every record (its mask is required) at the mask's original size.

    Predictions stay on the model's device: the resize to the original size, sigmoid, threshold and
    overlap counts run there for each group of equal-sized images; each mask file is read once and
    only the counts come back.
    """
    records = list(records)
    missing = [r.name for r in records if r.mask_path is None]
    if missing:
        raise ValueError(f"{len(missing)} image(s) have no ground-truth mask (e.g. {missing[:3]}); "
                         f"use `vlsm predict` for images without masks")
    predictor = _predictor(model, device, batch_size)
    cases: list = [None] * len(records)
    for group in predictor.predict_record_groups(records, prompt=prompt, threshold=threshold):
        size = tuple(group.mask.shape[1:])
        masks = [_ground_truth(records[i], size) for i in group.indices]
        gt = torch.from_numpy(np.stack(masks)).to(group.mask.device)
        counts = overlap_counts(group.mask, gt).T.tolist()
        for index, prompt_text, (inter, pred_area, gt_area) in zip(group.indices, group.prompts, counts):
            cases[index] = case_from_counts(records[index].name, inter, pred_area, gt_area, size, prompt_text)
    return MetricAccumulator(cases)


def _ground_truth(record, size_hw: tuple) -> np.ndarray:
    gt = load_mask(record.mask_path)
    if gt.shape != size_hw:
        raise ValueError(f"image and mask sizes differ for {record.name!r}: {record.image_path} is "
                         f"{size_hw[1]}x{size_hw[0]}, {record.mask_path} is "
                         f"{gt.shape[1]}x{gt.shape[0]}. Fix the pair (`vlsm data check` lists all such cases)")
    return gt


def write_results(out_dir: Path, acc: MetricAccumulator, *, model: dict, dataset: str, split: str,
                  prompt: str, threshold: float, extra: Optional[dict] = None) -> EvalResult:
    """Write per_case.csv + summary.json into ``out_dir``; returns the result entry."""
    result = acc.result(dataset=dataset, split=split, threshold=threshold, prompt=prompt)
    return write_evaluation(out_dir, acc.cases, result, model=model, extra=extra)


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


def evaluate_targets(predictor: Union[Predictor, SegmentationModel], targets: Sequence[EvalTarget], *,
                     device="auto", batch_size: int = EVAL_BATCH_SIZE) -> list[EvalResult]:
    """Score every target, then write their evaluation folders; returns one result per target.

    Nothing is written until every target is scored, and the files go through a staging folder beside
    each ``out_dir`` (:mod:`vlsm.runs.staging`): a failure leaves no folder behind and keeps the files of
    an earlier evaluation in place. ``device``/``batch_size`` apply when ``predictor`` is a bare model."""
    predictor = _predictor(predictor, device, batch_size)
    scored = [(t, evaluate_records(predictor, t.records, prompt=t.prompt, threshold=t.threshold)) for t in targets]
    info = model_info(predictor.model)
    results = []
    with staged([t.out_dir for t in targets]) as folders:
        for (target, acc), folder in zip(scored, folders):
            results.append(write_results(folder.path, acc, model=info, dataset=target.dataset, split=target.split,
                                         prompt=target.prompt, threshold=target.threshold, extra=target.extra))
    return results


def evaluate_split(model: Union[SegmentationModel, Predictor], records: Sequence, out_dir: Path, *, dataset: str,
                   split: str, prompt: str = "p1", threshold: float = 0.5, device="auto", batch_size: int = EVAL_BATCH_SIZE,
                   extra: Optional[dict] = None) -> EvalResult:
    """Evaluate ``records`` (one dataset split) and write the evaluation folder ``out_dir``: one
    :class:`EvalTarget` through :func:`evaluate_targets`."""
    target = EvalTarget(dataset, split, records, prompt, threshold, Path(out_dir), extra)
    return evaluate_targets(model, [target], device=device, batch_size=batch_size)[0]


def format_results(rows: Sequence[Union[dict, EvalResult]], label: str = "") -> str:
    """A small fixed-width table: dataset/split, n, Dice and IoU as mean ± std (in %)."""
    head = f"{'model':<28} {'dataset':<24} {'split':<6} {'n':>5}  {'Dice (%)':>16}  {'IoU (%)':>16}"
    lines = [head, "-" * len(head)]
    for r in rows:
        r = r.to_dict() if isinstance(r, EvalResult) else r
        lines.append(f"{r.get('label', label):<28} {r['dataset']:<24} {r['split']:<6} {r['n']:>5}  "
                     f"{100 * r['dice_mean']:>7.2f} ± {100 * r['dice_std']:<6.2f}  "
                     f"{100 * r['iou_mean']:>7.2f} ± {100 * r['iou_std']:<6.2f}")
    return "\n".join(lines)


__all__ = ["EVAL_BATCH_SIZE", "EVAL_PRECISION", "PER_CASE_FIELDS", "EvalTarget", "evaluate_records", "evaluate_split",
           "evaluate_targets", "format_results", "model_info", "model_label", "write_results"]
