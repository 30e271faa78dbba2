"""Real-data checks on Kvasir-SEG (../shared/data/kvasir_polyp): the models learn, scored on all 100 test
images at their original resolution against the all-foreground prediction on the same images.

Each model kind is trained once per session (tests/kvasir_runs.py, budgets bounded by epochs) and shared with
the other real-data tests (tests/evaluation/test_report_e2e.py). Learning curves and Dice are printed (live,
with or without -s) so that CI logs show what was reached.
"""
import pytest

from kvasir_runs import ENSEMBLE_CASES, curve, per_case, report

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_unet_d_learns_kvasir(kvasir_runs, capsys):
    """UNet-D (its architecture at tiny widths, 48 px, 12 epochs) reaches test Dice >= 0.5 at the original
    resolution, twice the all-foreground prediction's ~0.24."""
    run = kvasir_runs.unet_d()
    names = [row["name"] for row in per_case(run)]
    floor = kvasir_runs.all_foreground_dice(names)
    r = report(run, "UNet-D [tiny widths] on Kvasir-SEG, 48 px, 12 epochs", floor, capsys)
    assert r["n"] == 100 and len(names) == 100
    assert 0.2 < floor < 0.3  # predicting all foreground
    assert len(curve(run)) == 12  # bounded by epochs, not by the clock
    assert r["dice_mean"] >= 0.5, f"UNet-D reached only Dice {r['dice_mean']:.3f} (all foreground: {floor:.3f})"


def test_tiny_vlsm_trains_with_prompts_on_kvasir(kvasir_runs, capsys):
    """A tiny CLIPSeg trains on Kvasir with a random prompt type (p1..p9) per image, and learns (random init
    cannot match pretrained quality, but it beats predicting all foreground); evaluation uses p1."""
    run = kvasir_runs.clipseg_prompts()
    rows = per_case(run)
    floor = kvasir_runs.all_foreground_dice([row["name"] for row in rows])
    r = report(run, "CLIPSeg [tiny] on Kvasir-SEG, 48 px, random prompts", floor, capsys)
    assert r["n"] == 100 and r["prompt"] == "p1"
    assert {row["prompt"] for row in rows} == {"polyp"}  # p1's text
    assert curve(run) and all(row["val_dice"] for row in curve(run))
    assert r["dice_mean"] > floor, f"CLIPSeg did not learn: Dice {r['dice_mean']:.3f}, all foreground {floor:.3f}"


@pytest.mark.parametrize("model,variant", ENSEMBLE_CASES)
def test_tiny_ensembles_learn_on_kvasir(model, variant, kvasir_runs, capsys):
    """Each ensemble (tiny, both variants) learns on Kvasir: its test Dice beats the all-foreground prediction's
    on the same images. Tiny UNet-D alone under the same budget is the row to compare with."""
    run = kvasir_runs.ensemble(model, variant)
    floor = kvasir_runs.all_foreground_dice([row["name"] for row in per_case(run)])
    r = report(run, f"{model} ({variant or 'CNN alone'}) [tiny] on Kvasir-SEG, 48 px", floor, capsys)
    assert r["n"] == 100 and len(curve(run)) == 3
    assert r["dice_mean"] > floor, f"{model} ({variant}) did not learn: Dice {r['dice_mean']:.3f}, " \
                                   f"all foreground {floor:.3f}"
