"""Hand-made run folders (config.yaml, summary.json, eval/<dataset>-test/per_case.csv) for the report tests of issue 19:
seeds, folds and training fractions without training anything."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vlsm.config import ExperimentConfig, apply_overrides, save_config
from vlsm.runs import CaseResult, write_per_case


def fake_run(root: Path, name: str, dice, *, model: str = "clipseg", label: str = "CLIPSeg", seed: int = 0,
             names=None, dataset: str = "kvasir_polyp", settings=()) -> Path:
    """A finished run folder of ``model`` with per-image Dice ``dice`` on ``dataset``'s test split; ``settings``:
    more (dotted key, value) pairs of its config.yaml (``("data.train_fraction", 0.5)``)."""
    run = root / name
    folder = run / "eval" / f"{dataset}-test"
    folder.mkdir(parents=True)
    dice = np.asarray(dice, dtype=np.float64)
    names = names or [f"case{i:02d}" for i in range(len(dice))]
    iou = dice / (2 - dice)
    write_per_case(folder / "per_case.csv", [CaseResult(n, float(d), float(j), 100, 90, 32, 32, "polyp")
                                              for n, d, j in zip(names, dice, iou)])
    cfg = apply_overrides(ExperimentConfig(), [("model.name", model), ("train.seed", seed), ("out", str(run)),
                                               ("data.paths", [f"/data/{dataset}"]), *settings])
    save_config(cfg, run / "config.yaml")
    result = {"dataset": dataset, "split": "test", "n": len(dice), "dice_mean": float(dice.mean()),
              "dice_std": float(dice.std()), "iou_mean": float(iou.mean()), "iou_std": float(iou.std()),
              "empty_gt": 0, "threshold": 0.5, "prompt": "p1", "per_case": f"eval/{dataset}-test/per_case.csv"}
    (run / "summary.json").write_text(json.dumps({"model": {"name": model, "preset": "paper", "variant": None,
                                                            "label": label}, "results": [result], "train": {},
                                                  "config": "config.yaml"}))
    (run / ".vlsm-run").write_text("{}\n")
    return run
