"""Overlap and boundary metrics as pure functions, plus an accumulator for per-case results.

Empty-mask policy (one place, used everywhere): when the ground truth AND the prediction are both
empty, Dice and IoU are 1.0 (the model correctly found nothing); when exactly one of them is empty
they are 0.0. This matters for datasets with normal cases (BUSI "normal" images have empty masks).

The boundary metrics follow the same rule (:data:`BOUNDARY_EMPTY_RULE`): both empty scores the best value
(HD95 0, NSD 1); exactly one empty scores the worst (HD95 the image's diagonal, the largest distance in it;
NSD 0). Otherwise :func:`hd95` and :func:`nsd` are MONAI's ``compute_hausdorff_distance`` (95th percentile)
and ``compute_surface_dice`` on the two masks, in pixels or, given a ``spacing``, in mm.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from vlsm.runs import CaseResult, EvalResult

EMPTY_BOTH_SCORE = 1.0
#: NSD's default tolerance: 2 pixels, or 2 mm when the image file gives a pixel spacing.
NSD_TOLERANCE = 2.0
#: The boundary metrics' empty-mask rule, as summary.json and the docs state it.
BOUNDARY_EMPTY_RULE = ("both masks empty: HD95 0, NSD 1; exactly one empty: HD95 the image's diagonal (the largest "
                       "distance in the image), NSD 0")
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


def _boundary_pair(pred, gt, spacing) -> tuple:
    """The masks as boolean arrays of one shape, and the spacing as (row, col) floats or None."""
    pred, gt = _as_bool(pred), _as_bool(gt)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"boundary metrics take two (H, W) masks of one shape, got {pred.shape} and {gt.shape}")
    if spacing is not None:
        spacing = tuple(float(s) for s in (spacing if np.ndim(spacing) else (spacing, spacing)))
        if len(spacing) != 2 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing must be two positive numbers (row, col), got {spacing}")
    return pred, gt, spacing


def image_diagonal(shape_hw, spacing=None) -> float:
    """The image's diagonal, ``sqrt((H * row)^2 + (W * col)^2)``: the HD95 of an image where only one mask
    is empty (the largest distance within the image)."""
    row, col = spacing or (1.0, 1.0)
    return float(math.hypot(shape_hw[0] * row, shape_hw[1] * col))


def _monai(metric, pred: np.ndarray, gt: np.ndarray, *args, **kwargs) -> float:
    """One MONAI metric of one mask pair, as a float (MONAI's notice about an argument its own helpers still
    pass is silenced)."""
    inputs = (torch.from_numpy(pred)[None, None].float(), torch.from_numpy(gt)[None, None].float())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
        return float(metric(*inputs, *args, include_background=True, **kwargs)[0, 0])


def hd95(pred, gt, spacing=None) -> float:
    """The 95th-percentile Hausdorff distance of two boolean (H, W) masks, in pixels or, with ``spacing``
    (row_mm, col_mm), in mm: MONAI's ``compute_hausdorff_distance(percentile=95)``, the larger of the two
    directed 95th percentiles of the edge-to-edge distances. Lower is better. Empty masks:
    :data:`BOUNDARY_EMPTY_RULE`."""
    from monai.metrics import compute_hausdorff_distance

    pred, gt, spacing = _boundary_pair(pred, gt, spacing)
    p_any, g_any = bool(pred.any()), bool(gt.any())
    if not (p_any and g_any):
        return 0.0 if p_any == g_any else image_diagonal(gt.shape, spacing)
    return _monai(compute_hausdorff_distance, pred, gt, percentile=95, spacing=spacing)


def nsd(pred, gt, tolerance: float = NSD_TOLERANCE, spacing=None) -> float:
    """The normalised surface Dice of two boolean (H, W) masks: the fraction of both masks' edge pixels that
    lie within ``tolerance`` (pixels, or mm with ``spacing`` (row_mm, col_mm)) of the other mask's edge, in
    [0, 1], higher is better: MONAI's ``compute_surface_dice`` (edge pixels counted, no sub-pixel areas).
    Empty masks: :data:`BOUNDARY_EMPTY_RULE`."""
    from monai.metrics import compute_surface_dice

    pred, gt, spacing = _boundary_pair(pred, gt, spacing)
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"the NSD tolerance must be a number of at least 0, got {tolerance!r}")
    p_any, g_any = bool(pred.any()), bool(gt.any())
    if not (p_any and g_any):
        return 1.0 if p_any == g_any else 0.0
    return _monai(compute_surface_dice, pred, gt, [float(tolerance)], spacing=spacing)


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
    """Collects per-case results; ``summary()`` gives mean ± std of Dice and IoU (and of HD95 and NSD when every
    case has them). ``boundary``: how those were computed (``nsd_tolerance``, ``distance_unit``)."""

    cases: list = field(default_factory=list)
    boundary: dict = field(default_factory=dict)

    def add(self, case: CaseResult) -> None:
        self.cases.append(case)

    def __len__(self) -> int:
        return len(self.cases)

    def summary(self) -> dict:
        dice_mean, dice_std = mean_std(c.dice for c in self.cases)
        iou_mean, iou_std = mean_std(c.iou for c in self.cases)
        summary = {"n": len(self.cases), "dice_mean": dice_mean, "dice_std": dice_std,
                   "iou_mean": iou_mean, "iou_std": iou_std,
                   "empty_gt": sum(1 for c in self.cases if c.gt_area == 0)}
        if self.cases and all(c.hd95 is not None and c.nsd is not None for c in self.cases):
            for metric in ("hd95", "nsd"):
                summary[f"{metric}_mean"], summary[f"{metric}_std"] = mean_std(getattr(c, metric) for c in self.cases)
        return summary

    def result(self, *, dataset: str, split: str, threshold: float, prompt: str, **inference) -> EvalResult:
        """The summary.json entry of these cases (``inference``: ``tta``, ``postprocessing`` when used)."""
        summary = self.summary()
        boundary = self.boundary if "hd95_mean" in summary else {}
        return EvalResult(dataset=dataset, split=split, **summary, threshold=threshold, prompt=prompt, **boundary,
                          **inference)


__all__ = ["BOUNDARY_EMPTY_RULE", "CaseResult", "EMPTY_BOTH_SCORE", "MetricAccumulator", "NSD_TOLERANCE", "STD_DDOF",
           "case_from_counts", "dice_from_counts", "dice_score", "hd95", "image_diagonal", "iou_from_counts", "iou_score",
           "mean_std", "nsd", "overlap_counts", "score_case"]
