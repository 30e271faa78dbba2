"""What HD95 and NSD add to an evaluation: :func:`vlsm.evaluation.evaluate_records` with and without the boundary
metrics, side by side in one process on the same images (Kvasir-SEG's 100 test images by default).

Each round times both, interleaved; the best of ``--repeats`` rounds is reported, with MONAI's import time
(paid once per process, the first time an evaluation asks for the boundary metrics) on its own line. The
model is a tiny UNet-D, random or the trained run ``--checkpoint``; a random model's masks are noise, whose
long edges make the boundary metrics dearer than a trained model's, so the report gives the masks' edge
lengths too.

    .venv/bin/python benchmarks/boundary_metrics.py                         # random tiny UNet-D, CPU
    .venv/bin/python benchmarks/boundary_metrics.py --checkpoint runs/kvasir-tiny --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import vlsm
from vlsm.data import load_split
from vlsm.devices import resolve_device
from vlsm.evaluation.evaluate import EVAL_BATCH_SIZE, evaluate_records
from vlsm.predictor import Predictor

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kvasir_polyp"


def _predictor(args, device) -> Predictor:
    if args.checkpoint:
        return Predictor(args.checkpoint, device=str(device), precision="32-true", batch_size=args.batch,
                         postprocess=False)
    torch.manual_seed(0)
    model = vlsm.create_model("unet-d", preset="tiny", image_size=args.img_size).eval().to(device)
    return Predictor(model, device=str(device), precision="32-true", batch_size=args.batch)


def _edges(predictor: Predictor, records) -> float:
    """Mean edge pixels per predicted mask (what the boundary metrics' cost grows with)."""
    from scipy import ndimage

    lengths = [int((p.mask ^ ndimage.binary_erosion(p.mask)).sum()) for p in predictor.predict_records(records)]
    return float(np.mean(lengths))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="dataset folder (default: shared Kvasir-SEG)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--checkpoint", help="a trained run to evaluate (default: a random tiny UNet-D)")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit", type=int, default=0, help="first N images (0: all)")
    ap.add_argument("--batch", type=int, default=EVAL_BATCH_SIZE)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    if not Path(args.data).is_dir():
        sys.exit(f"{args.data} does not exist: pass --data DATASET_FOLDER")
    records = load_split(args.data, args.split)[: args.limit or None]
    device = resolve_device(args.device)
    predictor = _predictor(args, device)
    start = time.perf_counter()
    import monai.metrics  # noqa: F401  (what the first boundary evaluation of a process pays)
    imported = time.perf_counter() - start
    print(f"{predictor.label} on {device}, {len(records)} {args.split} images of {args.data}, "
          f"{torch.get_num_threads()} torch threads; mean edge of a predicted mask {_edges(predictor, records):.0f} px",
          flush=True)
    best = {False: np.inf, True: np.inf}
    for _ in range(args.repeats):
        for boundary in (False, True):
            start = time.perf_counter()
            acc = evaluate_records(predictor, records, boundary=boundary)
            best[boundary] = min(best[boundary], time.perf_counter() - start)
        print(f"  round: without {best[False]:.2f} s, with {best[True]:.2f} s", flush=True)
    out = {"model": predictor.label, "device": str(device), "n": len(records), "seconds_without": best[False],
           "seconds_with": best[True], "added_percent": 100 * (best[True] / best[False] - 1),
           "monai_import_seconds": imported, **{k: v for k, v in acc.summary().items() if k.endswith("_mean")}}
    print(f"evaluation without HD95/NSD {out['seconds_without']:8.2f} s   with {out['seconds_with']:8.2f} s   "
          f"+{out['added_percent']:.0f} %")
    print(f"import monai.metrics (once per process)   {imported:8.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
