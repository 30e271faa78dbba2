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

EMPTY_BOTH_SCORE = 1.0


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


def dice_score(pred, gt) -> float:
    """Dice = 2|P∩G| / (|P|+|G|) on boolean masks; both empty -> 1.0."""
    inter, p, g = _overlap(pred, gt)
    if p + g == 0:
        return EMPTY_BOTH_SCORE
    return 2.0 * inter / (p + g)


def iou_score(pred, gt) -> float:
    """IoU = |P∩G| / |P∪G| on boolean masks; both empty -> 1.0."""
    inter, p, g = _overlap(pred, gt)
    union = p + g - inter
    if union == 0:
        return EMPTY_BOTH_SCORE
    return inter / union


@dataclass
class CaseResult:
    name: str
    dice: float
    iou: float
    gt_area: int
    pred_area: int
    height: int
    width: int
    prompt: str = ""


def score_case(name: str, pred, gt, prompt: str = "") -> CaseResult:
    pred_b, gt_b = _as_bool(pred), _as_bool(gt)
    h, w = gt_b.shape[-2:]
    return CaseResult(name, dice_score(pred_b, gt_b), iou_score(pred_b, gt_b), int(gt_b.sum()),
                      int(pred_b.sum()), int(h), int(w), prompt)


def mean_std(values) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0), as reported per test set."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std())


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
