import math

import numpy as np
import pytest
import torch

from vlsm.evaluation.metrics import MetricAccumulator, dice_score, iou_score, mean_std, score_case


def masks(*rows):
    return np.array(rows, dtype=bool)


def test_dice_and_iou_hand_computed():
    pred = masks([1, 1, 0, 0], [1, 1, 0, 0])
    gt = masks([0, 1, 1, 0], [0, 1, 1, 0])
    # |P|=4, |G|=4, |P∩G|=2 -> Dice 4/8, IoU 2/6
    assert dice_score(pred, gt) == pytest.approx(0.5)
    assert iou_score(pred, gt) == pytest.approx(1 / 3)


def test_perfect_and_disjoint():
    gt = masks([1, 0], [0, 1])
    assert dice_score(gt, gt) == 1.0 and iou_score(gt, gt) == 1.0
    assert dice_score(~gt, gt) == 0.0 and iou_score(~gt, gt) == 0.0


def test_empty_mask_policy():
    empty = np.zeros((3, 3), bool)
    some = empty.copy()
    some[1, 1] = True
    assert dice_score(empty, empty) == 1.0 and iou_score(empty, empty) == 1.0
    assert dice_score(some, empty) == 0.0 and iou_score(some, empty) == 0.0
    assert dice_score(empty, some) == 0.0 and iou_score(empty, some) == 0.0


def test_rejects_probabilities_and_shape_mismatch():
    with pytest.raises(TypeError, match="threshold"):
        dice_score(np.full((2, 2), 0.7), np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="shape"):
        dice_score(np.ones((2, 2), bool), np.ones((2, 3), bool))


def test_accepts_torch_bool():
    t = torch.tensor([[True, False]])
    assert dice_score(t, t) == 1.0


def test_accumulator_mean_std_population():
    acc = MetricAccumulator()
    gt = masks([1, 1], [0, 0])
    acc.add(score_case("a", gt, gt))                     # dice 1
    acc.add(score_case("b", masks([1, 0], [0, 0]), gt))  # dice 2/3
    s = acc.summary()
    assert s["n"] == 2
    assert s["dice_mean"] == pytest.approx((1 + 2 / 3) / 2)
    assert s["dice_std"] == pytest.approx(np.std([1, 2 / 3]))
    case = acc.cases[1]
    assert (case.gt_area, case.pred_area, case.height, case.width) == (2, 1, 2, 2)


def test_mean_std_empty_is_nan():
    m, s = mean_std([])
    assert math.isnan(m) and math.isnan(s)


def test_counts_on_tensors_give_the_numpy_scores():
    from vlsm.evaluation.metrics import case_from_counts, overlap_counts

    rng = np.random.default_rng(0)
    pred, gt = rng.random((3, 5, 7)) > 0.5, rng.random((3, 5, 7)) > 0.6
    gt[2] = pred[2] = False                                       # both empty: the policy's 1.0
    counts = overlap_counts(torch.from_numpy(pred), torch.from_numpy(gt))
    assert counts.shape == (3, 3) and counts.dtype == torch.int64
    for i, (inter, p_area, g_area) in enumerate(counts.T.tolist()):
        assert case_from_counts(f"c{i}", inter, p_area, g_area, (5, 7), "x") == score_case(f"c{i}", pred[i], gt[i], "x")
    with pytest.raises(TypeError, match="threshold"):
        overlap_counts(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        overlap_counts(torch.zeros(1, 2, 2, dtype=torch.bool), torch.zeros(1, 2, 3, dtype=torch.bool))
