"""Evaluate a model on a dataset split at each image's original resolution.

Writes ``per_case.csv`` and ``summary.json`` (the format every report reads) into a folder.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Optional, Sequence

from vlsm.evaluation.metrics import CaseResult, MetricAccumulator, score_case
from vlsm.evaluation.predict import iter_logits, to_original_size
from vlsm.models.base import SegmentationModel
from vlsm.utils import write_text_atomic

PER_CASE_FIELDS = [f.name for f in dataclasses.fields(CaseResult)]


def model_label(model: SegmentationModel) -> str:
    from vlsm.models.registry import get_entry

    spec = model.spec
    entry = get_entry(spec.name)
    label = entry.paper_name
    if spec.variant and spec.variant != entry.default_variant:
        label += f" ({spec.variant})"
    if spec.preset != "paper":
        label += f" [{spec.preset}]"
    return label


def model_info(model: SegmentationModel) -> dict:
    spec = model.spec
    return {"name": spec.name, "preset": spec.preset, "variant": spec.variant,
            "pretrained": spec.pretrained, "label": model_label(model)}


def evaluate_records(model: SegmentationModel, records: Sequence, *, prompt: str = "p1",
                     threshold: float = 0.5, device="auto", batch_size: int = 4) -> MetricAccumulator:
    """Score every record (its mask is required) at the mask's original size."""
    from vlsm.data import load_mask

    missing = [r.name for r in records if r.mask_path is None]
    if missing:
        raise ValueError(f"{len(missing)} image(s) have no ground-truth mask (e.g. {missing[:3]}); "
                         f"use `vlsm predict` for images without masks")
    acc = MetricAccumulator()
    for record, logits, used_prompt, _ in iter_logits(model, records, prompt=prompt, device=device,
                                                      batch_size=batch_size):
        gt = load_mask(record.mask_path)
        prob = to_original_size(logits, gt.shape)
        acc.add(score_case(record.name, prob > threshold, gt, used_prompt))
    return acc


def write_results(out_dir: Path, acc: MetricAccumulator, *, model: dict, dataset: str, split: str,
                  prompt: str, threshold: float, extra: Optional[dict] = None) -> dict:
    """Write per_case.csv + summary.json into ``out_dir``; returns the result entry."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PER_CASE_FIELDS)
    writer.writeheader()
    for case in acc.cases:
        writer.writerow(dataclasses.asdict(case))
    write_text_atomic(out_dir / "per_case.csv", buf.getvalue())
    result = {"dataset": dataset, "split": split, **acc.summary(), "threshold": threshold,
              "prompt": prompt, "per_case": "per_case.csv"}
    summary = {"model": model, "results": [result], "created": time.strftime("%Y-%m-%d %H:%M:%S"),
               "empty_mask_policy": "empty ground truth and empty prediction score 1; one empty scores 0",
               **(extra or {})}
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2))
    return result


def format_results(rows: Sequence[dict], label: str = "") -> str:
    """A small fixed-width table: dataset/split, n, Dice and IoU as mean ± std (in %)."""
    head = f"{'model':<28} {'dataset':<24} {'split':<6} {'n':>5}  {'Dice (%)':>16}  {'IoU (%)':>16}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.get('label', label):<28} {r['dataset']:<24} {r['split']:<6} {r['n']:>5}  "
                     f"{100 * r['dice_mean']:>7.2f} ± {100 * r['dice_std']:<6.2f}  "
                     f"{100 * r['iou_mean']:>7.2f} ± {100 * r['iou_std']:<6.2f}")
    return "\n".join(lines)
