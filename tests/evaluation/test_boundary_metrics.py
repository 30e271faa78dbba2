"""HD95 and NSD (issue 18): MONAI's values on random shapes, the known answers on constructed cases, one
empty-mask rule, and their columns in per_case.csv after the old ones (which keep their bytes)."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

import vlsm
from vlsm.evaluation.evaluate import EvalTarget, evaluate_records, evaluate_targets, pixel_spacing
from vlsm.evaluation.metrics import BOUNDARY_EMPTY_RULE, NSD_TOLERANCE, hd95, image_diagonal, nsd
from vlsm.runs import read_per_case, read_summary


def _blobs(rng, shape=(48, 56), n=3) -> np.ndarray:
    """A random shape: a few smoothed noise blobs (several components, holes, ragged edges)."""
    field = ndimage.gaussian_filter(rng.random(shape), sigma=rng.uniform(1.5, 4))
    return field > np.quantile(field, rng.uniform(0.5, 0.9))


def _monai(pred, gt, spacing=None, tolerance=NSD_TOLERANCE):
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    p, g = torch.from_numpy(pred)[None, None].float(), torch.from_numpy(gt)[None, None].float()
    with warnings.catch_warnings():  # (MONAI's notice about an argument its own helpers pass)
        warnings.simplefilter("ignore", FutureWarning)
        return (float(compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=spacing)[0, 0]),
                float(compute_surface_dice(p, g, [tolerance], include_background=True, spacing=spacing)[0, 0]))


@pytest.mark.parametrize("seed", range(6))
def test_hd95_and_nsd_are_monais_on_random_shapes(seed):
    rng = np.random.default_rng(seed)
    pred, gt = _blobs(rng), _blobs(rng)
    spacing = None if seed % 2 else (float(rng.uniform(0.3, 2)), float(rng.uniform(0.3, 2)))
    tolerance = float(rng.uniform(0.5, 4))
    want_hd, want_nsd = _monai(pred, gt, spacing, tolerance)
    assert hd95(pred, gt, spacing) == want_hd and nsd(pred, gt, tolerance, spacing) == want_nsd
    assert hd95(torch.from_numpy(pred), torch.from_numpy(gt), spacing) == want_hd  # tensors too


def test_known_answers_of_a_shifted_square():
    square = np.zeros((40, 40), dtype=bool)
    square[10:26, 10:26] = True
    by3, by1 = np.roll(square, 3, axis=1), np.roll(square, 1, axis=0)
    assert hd95(by3, square) == 3.0 and hd95(by1, square) == 1.0
    assert nsd(by3, square, tolerance=2) < 1 and nsd(by1, square, tolerance=2) == 1.0
    assert hd95(square, square) == 0.0 and nsd(square, square) == 1.0
    assert hd95(by3, square, spacing=(0.5, 0.5)) == 1.5  # mm: 3 pixels of 0.5 mm
    assert nsd(by3, square, tolerance=2, spacing=(0.5, 0.5)) == 1.0  # 1.5 mm is within 2 mm


def test_one_empty_mask_rule():
    empty, some = np.zeros((30, 40), dtype=bool), np.zeros((30, 40), dtype=bool)
    some[5:9, 5:9] = True
    assert (hd95(empty, empty), nsd(empty, empty)) == (0.0, 1.0)  # both empty: the best values
    for pred, gt in ((empty, some), (some, empty)):  # one empty: the worst
        assert hd95(pred, gt) == image_diagonal((30, 40)) == 50.0 and nsd(pred, gt) == 0.0
    assert hd95(empty, some, spacing=(2.0, 0.5)) == math.hypot(60, 20)
    assert "both masks empty: HD95 0, NSD 1" in BOUNDARY_EMPTY_RULE


def test_bad_inputs_are_one_line():
    a = np.ones((4, 4), dtype=bool)
    for call, match in ((lambda: hd95(a, np.ones((4, 5), bool)), "one shape"),
                        (lambda: hd95(a.astype(float), a), "threshold"),
                        (lambda: hd95(a, a, spacing=(1, -1)), "spacing"),
                        (lambda: nsd(a, a, tolerance=-1), "tolerance")):
        with pytest.raises((ValueError, TypeError), match=match) as err:
            call()
        assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from vlsm.data.synthetic import make_synthetic_dataset

    folder = tmp_path_factory.mktemp("data") / "synth"
    make_synthetic_dataset(folder, n_train=2, n_val=2, n_test=5, image_size=40)
    torch.manual_seed(0)
    model = vlsm.create_model("unet-d", preset="tiny", image_size=32)
    return folder, model


def test_evaluation_adds_the_columns_after_the_old_ones(synthetic, tmp_path):
    from vlsm.data import load_split

    folder, model = synthetic
    records = load_split(folder, "test")
    targets = [EvalTarget("synth", "test", records, "p1", 0.5, tmp_path / name, boundary=boundary)
               for name, boundary in (("plain", False), ("boundary", True))]
    plain, with_boundary = evaluate_targets(model, targets, device="cpu")
    old = (tmp_path / "plain" / "per_case.csv").read_text().splitlines()
    new = (tmp_path / "boundary" / "per_case.csv").read_text().splitlines()
    assert new[0] == old[0] + ",hd95,nsd"
    assert all(n.startswith(o + ",") for o, n in zip(old[1:], new[1:]))  # the old columns keep their bytes
    scores = read_per_case(tmp_path / "boundary" / "per_case.csv")
    assert read_per_case(tmp_path / "plain" / "per_case.csv").hd95 is None
    preds = vlsm.Predictor(model, device="cpu").predict_records(records)
    from vlsm.data import load_mask

    for pred, record, h, s in zip(preds, records, scores.hd95, scores.nsd):
        gt = load_mask(record.mask_path)
        assert (h, s) == (hd95(pred.mask, gt), nsd(pred.mask, gt))
    assert plain.hd95_mean is None and "hd95_mean" not in plain.to_dict()
    assert with_boundary.hd95_mean == pytest.approx(np.mean(scores.hd95))
    assert (with_boundary.dice_mean, with_boundary.nsd_tolerance, with_boundary.distance_unit) == \
        (plain.dice_mean, 2.0, "pixels")
    summary = read_summary(tmp_path / "boundary")
    assert summary["boundary_metrics"]["empty_masks"] == BOUNDARY_EMPTY_RULE
    assert "MONAI" in summary["boundary_metrics"]["implementation"]


def test_a_file_with_a_pixel_spacing_gives_mm(synthetic, tmp_path):
    """A NIfTI mask gives its voxel size: HD95 and NSD in mm for it, in pixels for the PNG beside it."""
    import dataclasses

    from medical_samples import write_nifti
    from vlsm.data import load_mask, load_split, read_spacing

    folder, model = synthetic
    png = load_split(folder, "test")[:2]
    gt = load_mask(png[0].mask_path)
    nifti = dataclasses.replace(png[0], mask_path=write_nifti(tmp_path / "gt.nii.gz", gt.T.astype(np.uint8),
                                                              zooms=(0.25, 0.5)))
    spacing = read_spacing(nifti.mask_path)
    assert pixel_spacing(nifti) == spacing == (0.5, 0.25) and pixel_spacing(png[1]) is None
    acc = evaluate_records(model, [nifti, png[1]], device="cpu", boundary=True, nsd_tolerance=1.0)
    assert acc.boundary == {"nsd_tolerance": 1.0, "distance_unit": "mixed"}
    [pred] = vlsm.Predictor(model, device="cpu").predict_records([nifti])
    assert acc.cases[0].hd95 == hd95(pred.mask, gt, spacing) and acc.cases[0].nsd == nsd(pred.mask, gt, 1.0, spacing)


def test_evaluate_command_flags(synthetic, tmp_path, capsys):
    from vlsm.cli import main

    folder, model = synthetic
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "ev"
    assert main(["evaluate", str(tmp_path / "model"), "--data", str(folder), "--boundary", "--nsd-tolerance", "3",
                 "-o", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "HD95 (px)" in printed and "NSD (%)" in printed
    [result] = json.loads((out / "summary.json").read_text())["results"]
    assert result["nsd_tolerance"] == 3.0 and "hd95_mean" in result
    assert main(["evaluate", str(tmp_path / "model"), "--data", str(folder), "--nsd-tolerance", "-1",
                 "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--nsd-tolerance" in err and "\n" not in err and not (tmp_path / "x").exists()
