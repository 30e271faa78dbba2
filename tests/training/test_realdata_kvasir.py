"""Real-data checks on Kvasir-SEG (../shared/data/kvasir_polyp): bounded in time, run in CI.

They print learning curves and Dice so CI logs show what was reached (pytest -s shows them live;
the summary also lands in the test report via the `record_property` fixture).
"""
import csv
import json
import time

import pytest

from vlsm.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

COMMON = ["--num-workers", "0", "--no-progress", "--cache", "--seed", "0"]


def curve(run):
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def report(run, title, capsys=None):
    s = json.loads((run / "summary.json").read_text())
    r = s["results"][0]
    lines = [f"== {title}: test Dice {100 * r['dice_mean']:.2f} ± {100 * r['dice_std']:.2f} "
             f"IoU {100 * r['iou_mean']:.2f} ± {100 * r['iou_std']:.2f} (n={r['n']}, "
             f"{s['train']['epochs_run']} epochs, {s['train']['seconds']:.0f} s)",
             "epoch  train_loss  val_loss  val_dice  seconds"]
    lines += [f"{row['epoch']:>5}  {row['train_loss']:>10}  {row['val_loss']:>8}  {row['val_dice']:>8}  "
              f"{row['seconds']:>7}" for row in curve(run)]
    text = "\n".join(lines)
    if capsys is not None:
        with capsys.disabled():
            print("\n" + text, flush=True)
    return r


# UNet-D's architecture at a quarter of the paper's widths (0.74 M parameters): the paper widths
# (11.8 M) manage only ~2 epochs of Kvasir in 12 minutes on 2 CPU cores.
QUARTER_WIDTH = ["--set", "encoder_channels=[16,32,64,128]", "--set", "bottleneck_channels=310",
                 "--set", "decoder_channels=[136,45,22,11]"]


def test_unet_d_learns_kvasir(kvasir_root, tmp_path, capsys):
    """UNet-D at 128 px, trained for at most 10 minutes on 2 CPU cores, reaches test Dice >= 0.5 at
    the original resolution (predicting all foreground scores 0.24)."""
    run = tmp_path / "unetd"
    started = time.time()
    assert main(["train", "--model", "unet-d", *QUARTER_WIDTH, "--data", str(kvasir_root), "--out", str(run),
                 "--img-size", "128", "--batch-size", "8", "--lr", "1e-3", "--epochs", "60",
                 "--max-minutes", "10", "--patience", "60", *COMMON]) == 0
    r = report(run, "UNet-D on Kvasir-SEG, 128 px", capsys)
    assert r["n"] == 100
    assert r["dice_mean"] >= 0.5, f"UNet-D reached only Dice {r['dice_mean']:.3f} in {time.time() - started:.0f} s"


def test_tiny_vlsm_trains_with_prompts_on_kvasir(kvasir_root, tmp_path, capsys):
    """A tiny CLIPSeg trains on Kvasir with its p1..p9 prompts through the same CLI (proves the path;
    random init cannot match pretrained quality)."""
    run = tmp_path / "clipseg"
    assert main(["train", "--model", "clipseg", "--preset", "tiny", "--data", str(kvasir_root),
                 "--out", str(run), "--img-size", "64", "--batch-size", "16", "--lr", "2e-3",
                 "--epochs", "4", "--prompt", "random", "--max-minutes", "3", *COMMON]) == 0
    r = report(run, "CLIPSeg [tiny] on Kvasir-SEG, 64 px, random prompts", capsys)
    assert r["n"] == 100 and r["prompt"] == "p1"
    rows = curve(run)
    assert rows and all(row["val_dice"] for row in rows)
    with open(run / r["per_case"], newline="") as fh:
        assert {row["prompt"] for row in csv.DictReader(fh)} == {"polyp"}


ENSEMBLE_CASES = [("unet-d", None)] + [(m, v) for m in ("biomedclipseg-a", "clipseg-b", "ensemble-c")
                                         for v in ("fixed", "reference")]


@pytest.mark.parametrize("model,variant", ENSEMBLE_CASES)
def test_tiny_ensembles_train_on_kvasir(model, variant, kvasir_root, tmp_path, capsys):
    """Each ensemble (tiny, both variants) trains on Kvasir through the CLI; tiny UNet-D alone under
    the same budget is the row to compare with."""
    run = tmp_path / f"{model}-{variant}"
    args = ["train", "--model", model, "--preset", "tiny", "--data", str(kvasir_root), "--out", str(run),
            "--img-size", "64", "--batch-size", "16", "--lr", "2e-3", "--epochs", "4", "--prompt", "p1", *COMMON]
    if variant:
        args += ["--variant", variant]
    assert main(args) == 0
    r = report(run, f"{model} ({variant or 'CNN alone'}) [tiny] on Kvasir-SEG, 64 px, 4 epochs", capsys)
    assert r["n"] == 100 and 0.0 <= r["dice_mean"] <= 1.0
    assert len(curve(run)) == 4
