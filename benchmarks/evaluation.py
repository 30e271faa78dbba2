"""Evaluation at original resolution: the per-image loop before and the device-side loop now, side by
side in one process on the same images.

"old" is the previous implementation, kept here only as the reference: forward batches of
``--old-batch`` (4, the old default), every image's logits copied to the CPU, resized to the original
size, sigmoid and threshold in numpy one image at a time, the mask read and scored with numpy. "new"
is :func:`vlsm.evaluation.evaluate_records`: forward batches of ``--batch`` (evaluation's default),
resize/sigmoid/threshold/overlap counts on the model's device per group of equal-sized images, only
the counts come back. Both score the same records of one split; the per-case rows must be identical
(checked, untimed: at the same batch size they always are; across batch sizes the CPU forward pass may
differ in the last bit, which can flip a pixel that lies exactly at the threshold).

Reported: images/s end to end, and images/s of everything but the forward pass (data, resize,
sigmoid, threshold, masks, scores), each the best of ``--repeats`` interleaved rounds.

    .venv/bin/python benchmarks/evaluation.py                       # UNet-D paper size, 352 px, CPU, 16 images
    .venv/bin/python benchmarks/evaluation.py --limit 100 --device cuda --json out.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

import vlsm
from vlsm.data import SegmentationDataset, load_mask, load_split
from vlsm.devices import resolve_device, synchronize
from vlsm.evaluation.evaluate import EVAL_BATCH_SIZE, evaluate_records
from vlsm.evaluation.metrics import MetricAccumulator, score_case
from vlsm.predictor import Predictor

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kvasir_polyp"


def old_evaluate(model, records, device, batch_size: int, prompt="p1", threshold=0.5):
    """The previous evaluation loop; returns (cases, seconds in the forward pass)."""
    inputs = [dataclasses.replace(r, mask_path=None) for r in records]
    dataset = SegmentationDataset(inputs, model.preprocess, model.get_tokenizer(), prompt=prompt, augment=False,
                                  require_masks=False)
    acc, forward = MetricAccumulator(), 0.0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
        with torch.no_grad():
            inputs = [batch[k].to(device) for k in ("pixel_values", "input_ids", "attention_mask")]
            synchronize(device)
            start = time.perf_counter()
            logits = model(*inputs)
            synchronize(device)
            forward += time.perf_counter() - start
            logits = logits.float().cpu()
        for i, index in enumerate(batch["index"].tolist()):
            up = F.interpolate(logits[i][None].float(), size=(int(batch["height"][i]), int(batch["width"][i])),
                               mode="bilinear", align_corners=False)
            prob = torch.sigmoid(up[0, 0]).cpu().numpy().astype(np.float32)
            rec = records[index]
            acc.add(score_case(rec.name, prob > threshold, load_mask(rec.mask_path), batch["prompt"][i]))
    return acc.cases, forward


class TimedPredictor(Predictor):
    """The new loop, with the seconds its forward passes took."""

    forward = 0.0

    def _forward(self, batch):
        logits, seconds = super()._forward(batch)
        self.forward += seconds
        return logits, seconds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="dataset folder (default: shared Kvasir)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default="unet-d")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--img-size", type=int, default=352)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit", type=int, default=16, help="first N cases (0: all); paper size on 2 CPU cores "
                                                         "costs seconds per image")
    ap.add_argument("--old-batch", type=int, default=4)
    ap.add_argument("--batch", type=int, default=EVAL_BATCH_SIZE)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    records = load_split(args.data, args.split)
    if args.limit:
        records = records[: args.limit]
    n = len(records)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = vlsm.create_model(args.model, preset=args.preset, image_size=args.img_size).eval().to(device)
    sizes = {tuple(load_mask(r.mask_path).shape) for r in records}
    print(f"{args.model} [{args.preset}] {args.img_size} px on {device}, {n} {args.split} images of {args.data} "
          f"({len(sizes)} original sizes, up to {max(h * w for h, w in sizes) / 1e6:.2f} MP), "
          f"{torch.get_num_threads()} torch threads", flush=True)
    best = {"old": (np.inf, np.inf), "new": (np.inf, np.inf)}
    cases = {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        cases["old"], forward = old_evaluate(model, records, device, args.old_batch)
        total = time.perf_counter() - start
        best["old"] = min(best["old"], (total, total - forward))
        predictor = TimedPredictor(model, device=str(device), precision="32-true", batch_size=args.batch)
        start = time.perf_counter()
        cases["new"] = evaluate_records(predictor, records).cases
        total = time.perf_counter() - start
        best["new"] = min(best["new"], (total, total - predictor.forward))
        print(f"  round: old {best['old'][0]:.1f} s, new {best['new'][0]:.1f} s", flush=True)
    same = cases["old"] == cases["new"]
    if args.batch == args.old_batch and not same:
        raise AssertionError("per-case rows differ between the old and the new loop at the same batch size")
    out = {"model": args.model, "preset": args.preset, "image_size": args.img_size, "device": str(device), "n": n,
           "old_batch": args.old_batch, "new_batch": args.batch, "identical_per_case": same,
           "old_img_s": n / best["old"][0], "new_img_s": n / best["new"][0],
           "old_post_img_s": n / best["old"][1], "new_post_img_s": n / best["new"][1]}
    out["speedup"] = out["new_img_s"] / out["old_img_s"]
    out["post_speedup"] = out["new_post_img_s"] / out["old_post_img_s"]
    print(f"end to end        old {out['old_img_s']:8.2f} img/s   new {out['new_img_s']:8.2f} img/s   "
          f"x{out['speedup']:.2f}")
    print(f"all but forward   old {out['old_post_img_s']:8.2f} img/s   new {out['new_post_img_s']:8.2f} img/s   "
          f"x{out['post_speedup']:.2f}")
    print(f"per-case rows identical: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
