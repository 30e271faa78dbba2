"""Overlap metrics as pure functions, plus an accumulator for per-case results.

Empty-mask policy (one place, used everywhere): when the ground truth AND the prediction are both
empty, Dice and IoU are 1.0 (the model correctly found nothing); when exactly one of them is empty
they are 0.0. This matters for datasets with normal cases (BUSI "normal" images have empty masks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from vlsm.runs import CaseResult, EvalResult

EMPTY_BOTH_SCORE = 1.0
#: Delta degrees of freedom of every standard deviation ``vlsm`` reports (population std).
STD_DDOF = 0


def _as_bool(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype != bool:
        raise TypeError(f"metrics take boolean masks, got dtype {a.dtype}; threshold your prediction first")
    return a


def _overlap(pred, gt) -> tuple[int, int, int]:
    pred, gt = _as_bool(pred), _as_bool(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    inter = int(np.logical_and(pred, gt).sum())
    return inter, int(pred.sum()), int(gt.sum())


def dice_from_counts(inter, pred_area, gt_area):
    """Dice = 2|P∩G| / (|P|+|G|) from overlap counts: numbers, or tensors of one value per image.
    Both masks empty scores :data:`EMPTY_BOTH_SCORE` (the empty-mask policy, decided here only)."""
    denom = pred_area + gt_area
    if isinstance(denom, torch.Tensor):
        return torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.full_like(denom, EMPTY_BOTH_SCORE))
    return 2.0 * inter / denom if denom else EMPTY_BOTH_SCORE


def iou_from_counts(inter, pred_area, gt_area) -> float:
    """IoU = |P∩G| / |P∪G| from overlap counts; both masks empty scores :data:`EMPTY_BOTH_SCORE`."""
    union = pred_area + gt_area - inter
    return inter / union if union else EMPTY_BOTH_SCORE


def dice_score(pred, gt) -> float:
    """Dice = 2|P∩G| / (|P|+|G|) on boolean masks; both empty -> 1.0."""
    return dice_from_counts(*_overlap(pred, gt))


def iou_score(pred, gt) -> float:
    """IoU = |P∩G| / |P∪G| on boolean masks; both empty -> 1.0."""
    return iou_from_counts(*_overlap(pred, gt))


def score_case(name: str, pred, gt, prompt: str = "") -> CaseResult:
    pred_b, gt_b = _as_bool(pred), _as_bool(gt)
    h, w = gt_b.shape[-2:]
    return case_from_counts(name, *_overlap(pred_b, gt_b), (h, w), prompt)


def case_from_counts(name: str, inter: int, pred_area: int, gt_area: int, size_hw, prompt: str = "") -> CaseResult:
    """One image's :class:`CaseResult` from its overlap counts (as :func:`score_case` computes them)."""
    inter, pred_area, gt_area = int(inter), int(pred_area), int(gt_area)
    return CaseResult(name, dice_from_counts(inter, pred_area, gt_area), iou_from_counts(inter, pred_area, gt_area),
                      gt_area, pred_area, int(size_hw[0]), int(size_hw[1]), prompt)


def overlap_counts(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(3, n) int64 counts |P∩G|, |P|, |G| of n boolean mask pairs (n, H, W), computed where they are
    (e.g. on the GPU), for :func:`case_from_counts`."""
    if pred.dtype != torch.bool or gt.dtype != torch.bool:
        raise TypeError(f"metrics take boolean masks, got {pred.dtype} and {gt.dtype}; threshold your prediction first")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != ground-truth shape {tuple(gt.shape)}")
    dims = tuple(range(1, pred.ndim))
    if pred.device.type == "cpu":  # numpy counts boolean pixels ~10x faster than torch's CPU sums
        p, g = pred.numpy(), gt.numpy()
        counts = [np.count_nonzero(p & g, axis=dims), np.count_nonzero(p, axis=dims), np.count_nonzero(g, axis=dims)]
        return torch.from_numpy(np.stack(counts).astype(np.int64))
    return torch.stack([(pred & gt).sum(dims), pred.sum(dims), gt.sum(dims)])


def mean_std(values, scale: float = 1.0) -> tuple[float, float]:
    """Mean and population standard deviation (``ddof=STD_DDOF``) of ``values`` times ``scale``, as
    reported per test set; no values give NaNs."""
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64) * scale
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=STD_DDOF))


@dataclass
class MetricAccumulator:
    """Collects per-case results; ``summary()`` gives mean ± std of Dice and IoU."""

    cases: list = field(default_factory=list)

    def add(self, case: CaseResult) -> None:
        self.cases.append(case)

    def __len__(self) -> int:
        return len(self.cases)

    def summary(self) -> dict:
        dice_mean, dice_std = mean_std(c.dice for c in self.cases)
        iou_mean, iou_std = mean_std(c.iou for c in self.cases)
        return {"n": len(self.cases), "dice_mean": dice_mean, "dice_std": dice_std,
                "iou_mean": iou_mean, "iou_std": iou_std,
                "empty_gt": sum(1 for c in self.cases if c.gt_area == 0)}

    def result(self, *, dataset: str, split: str, threshold: float, prompt: str) -> EvalResult:
        """The summary.json entry of these cases."""
        return EvalResult(dataset=dataset, split=split, **self.summary(), threshold=threshold, prompt=prompt)


__all__ = ["CaseResult", "EMPTY_BOTH_SCORE", "MetricAccumulator", "STD_DDOF", "case_from_counts", "dice_from_counts",
           "dice_score", "iou_from_counts", "iou_score", "mean_std", "overlap_counts", "score_case"]
