"""The Kvasir-SEG trainings of the real-data checks: each model kind is trained once per session (through
``vlsm.api.train``) and shared by every test that needs it (tests/conftest.py's ``kvasir_runs``).

Every run is bounded by its epochs (and images per epoch), never by the clock: a busy machine trains the same
run, only later (``max_minutes`` is a safety net far above the budget). All runs read the images at
:data:`SIZE` px, so the session decodes Kvasir once (the decode cache) and the data check reads each file once.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

#: every Kvasir run's input size: one decode cache for the session
SIZE = 48

_COMMON = {"data.cache": True, "train.num_workers": 0, "train.progress_bar": False, "train.seed": 0,
           "model.overrides.image_size": SIZE}

#: UNet-D's learning check: its architecture at tiny widths (0.09 M parameters), 48 px, 12 epochs of the 800
#: training images, no early stopping. Measured on 2 CPU cores (one thread): test Dice 0.63 at the original
#: resolution in ~50 s (seeds 1 and 2: 0.66, 0.55); all foreground: 0.24.
UNET_D = {"model.name": "unet-d", "model.preset": "tiny", "train.epochs": 12, "train.batch_size": 8,
          "train.lr": 0.002, "train.early_stopping_patience": 12, "train.max_minutes": 8.0}

#: the ensembles (tiny presets, both variants) and tiny UNet-D alone beside them: a few epochs of part of the
#: training set, enough to beat the all-foreground prediction clearly
ENSEMBLE = {"model.preset": "tiny", "train.epochs": 3, "train.batch_size": 16, "train.lr": 0.003,
            "train.limit_train_batches": 25, "data.prompt": "p1", "train.max_minutes": 8.0}
ENSEMBLE_CASES = [("unet-d", None)] + [(m, v) for m in ("biomedclipseg-a", "clipseg-b", "ensemble-c")
                                         for v in ("fixed", "reference")]

#: tiny CLIPSeg trained with a random prompt type (p1..p9) per image and epoch
CLIPSEG_PROMPTS = {"model.name": "clipseg", "model.preset": "tiny", "train.epochs": 4, "train.batch_size": 16,
                   "train.lr": 0.003, "train.limit_train_batches": 25, "data.prompt": "random",
                   "train.max_minutes": 8.0}


class KvasirRuns:
    """Trained Kvasir runs, made on first use and kept for the session."""

    def __init__(self, root: Path, base: Path):
        self.root, self.base = Path(root), Path(base)
        self._runs: dict[str, Path] = {}
        self._all_foreground: dict[tuple, float] = {}

    def _train(self, name: str, settings: dict) -> Path:
        if name not in self._runs:
            from vlsm import api

            out = self.base / name
            overrides = {**_COMMON, **settings, "data.paths": [str(self.root)], "out": str(out)}
            api.train(overrides=list(overrides.items()))
            self._runs[name] = out
        return self._runs[name]

    def unet_d(self) -> Path:
        return self._train("unet-d-check", UNET_D)

    def ensemble(self, model: str, variant) -> Path:
        settings = {**ENSEMBLE, "model.name": model, **({"model.variant": variant} if variant else {})}
        return self._train(f"{model}-{variant or 'alone'}", settings)

    def clipseg_prompts(self) -> Path:
        return self._train("clipseg-prompts", CLIPSEG_PROMPTS)

    def all_foreground_dice(self, names) -> float:
        """The mean test Dice of predicting every pixel as polyp, on the test images ``names`` (at their
        original resolution, the masks read as the evaluation reads them)."""
        key = tuple(sorted(names))
        if key not in self._all_foreground:
            from vlsm.data import load_mask, load_split

            masks = {r.name: r.mask_path for r in load_split(self.root, "test")}
            scores = []
            for name in key:
                m = load_mask(masks[name])
                scores.append(2 * m.sum() / (m.sum() + m.size))
            self._all_foreground[key] = float(np.mean(scores))
        return self._all_foreground[key]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def curve(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def per_case(run: Path) -> list[dict]:
    s = summary(run)
    with open(run / s["results"][0]["per_case"], newline="") as fh:
        return list(csv.DictReader(fh))


def report(run: Path, title: str, all_foreground: float, capsys=None) -> dict:
    """Print the run's test Dice and learning curve (shown live with or without -s) and return its result."""
    s = summary(run)
    r = s["results"][0]
    lines = [f"== {title}: test Dice {100 * r['dice_mean']:.2f} ± {100 * r['dice_std']:.2f} "
             f"IoU {100 * r['iou_mean']:.2f} ± {100 * r['iou_std']:.2f} (n={r['n']}, "
             f"{s['train']['epochs_run']} epochs, {s['train']['seconds']:.0f} s); "
             f"all foreground on the same images: Dice {100 * all_foreground:.2f}",
             "epoch  train_loss  val_loss  val_dice  seconds"]
    lines += [f"{row['epoch']:>5}  {row['train_loss']:>10}  {row['val_loss']:>8}  {row['val_dice']:>8}  "
              f"{row['seconds']:>7}" for row in curve(run)]
    text = "\n".join(lines)
    if capsys is not None:
        with capsys.disabled():
            print("\n" + text, flush=True)
    else:
        print(text)
    return r
