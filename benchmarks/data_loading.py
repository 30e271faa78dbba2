"""Decode once: data-loading throughput before and after, side by side in one process.

"old" is the pipeline without the decoded-image cache (every epoch decodes each JPEG and mask and
resizes them); "new" is the default pipeline with the cache (:mod:`vlsm.data.decoded`) in a fresh
temporary folder, so its epoch 1 includes building the cache. Both iterate a DataLoader over
``SegmentationDataset`` items (CLIP tokenizer, prompt p1) of one split at ``--img-size`` with one
torch thread (as DataLoader workers have). The first ``--check-items`` items of each pipeline are
compared (untimed) and must be identical.

The pre-training data check is timed too: today it decodes every file, then epoch 1 decodes them
again; with the cache, the check decodes each file once and stores the resized pair, and epoch 1
reads it.

    .venv/bin/python benchmarks/data_loading.py                                  # Kvasir train, 352 px
    .venv/bin/python benchmarks/data_loading.py --data ../shared/data/kvasir_polyp --limit 200 --workers 2
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from vlsm.data import SegmentationDataset, load_split
from vlsm.data.check import check_dataset
from vlsm.data.decoded import DecodedCache
from vlsm.models.base import Preprocess
from vlsm.text.tokenizers import ClipBPETokenizer

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kvasir_polyp"


def epoch_seconds(dataset, batch_size: int, workers: int, epoch: int) -> float:
    """Seconds to draw every batch of one epoch (the batches are not used: loading only)."""
    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    started = time.perf_counter()
    for _batch in loader:
        pass
    return time.perf_counter() - started


def assert_same_items(a, b, epoch: int, n: int) -> None:
    """The first ``n`` items of two datasets in ``epoch`` are identical (checked outside the timing)."""
    a.set_epoch(epoch)
    b.set_epoch(epoch)
    for i in range(min(n, len(a))):
        x, y = a[i], b[i]
        for k in ("pixel_values", "mask", "input_ids", "attention_mask"):
            assert torch.equal(x[k], y[k]), f"item {i}: {k} differs between the old and the new pipeline"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="dataset folder (default: shared Kvasir)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--img-size", type=int, default=352)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0: the main process)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the new pipeline (>= 2)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N cases (0: all)")
    ap.add_argument("--augment", action="store_true", help="flips and jitter on (off in the paper's recipe)")
    ap.add_argument("--check-items", type=int, default=50, help="items compared old vs new per epoch (untimed)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    records = load_split(args.data, args.split)
    if args.limit:
        records = records[: args.limit]
    n = len(records)
    pre = Preprocess(image_size=args.img_size)
    tok = ClipBPETokenizer(context_length=77)
    kw = dict(prompt="p1", augment=args.augment, seed=0)
    print(f"{n} {args.split} images of {args.data} at {args.img_size} px, batch {args.batch_size}, "
          f"{args.workers} worker(s), augment {'on' if args.augment else 'off'}", flush=True)

    # One intra-op thread, as in DataLoader workers: on a busy 2-core machine more threads only wait.
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="vlsm-bench-cache-") as tmp:
        old = SegmentationDataset(records, pre, tok, **kw)
        old_1 = epoch_seconds(old, args.batch_size, args.workers, 0)
        old_2 = epoch_seconds(old, args.batch_size, args.workers, 1)
        new = SegmentationDataset(records, pre, tok, cache=True, cache_dir=Path(tmp) / "a", **kw)
        new_1 = epoch_seconds(new, args.batch_size, args.workers, 0)
        later = [epoch_seconds(new, args.batch_size, args.workers, e) for e in range(1, max(2, args.epochs))]
        new_2 = sum(later) / len(later)
        for e in (0, 1):
            assert_same_items(old, new, e, args.check_items)

        # the pre-training check, then epoch 1
        wanted = {(str(r.image_path), str(r.mask_path)) for r in records}
        if len(wanted) == len(load_split(args.data, args.split)):
            t0 = time.perf_counter()
            check_dataset(args.data, splits=[args.split])
            check_old = time.perf_counter() - t0
            cache = DecodedCache(Path(tmp) / "b", args.img_size)
            t0 = time.perf_counter()
            check_dataset(args.data, splits=[args.split], decoded=cache)
            check_new = time.perf_counter() - t0
            t0 = time.perf_counter()
            check_dataset(args.data, splits=[args.split], decoded=cache)
            check_again = time.perf_counter() - t0
            first = SegmentationDataset(records, pre, tok, cache=cache, **kw)
            first_epoch = epoch_seconds(first, args.batch_size, args.workers, 0)
            assert_same_items(old, first, 0, args.check_items)
        else:
            check_old = check_new = check_again = first_epoch = float("nan")

    rate = lambda secs: n / secs  # noqa: E731
    rows = [("epoch 1", rate(old_1), rate(new_1)), ("epochs 2+", rate(old_2), rate(new_2))]
    print(f"\n{'images/s':<12}{'old':>10}{'new':>10}{'speed-up':>10}")
    for label, a, b in rows:
        print(f"{label:<12}{a:>10.1f}{b:>10.1f}{b / a:>9.1f}x")
    print(f"\npre-training check + epoch 1 (s): old {check_old + old_1:.1f} (check {check_old:.1f} + epoch "
          f"{old_1:.1f}), new {check_new + first_epoch:.1f} (check that fills the cache {check_new:.1f} + epoch "
          f"{first_epoch:.1f}); a second run's check: {check_again:.2f}")
    result = {"images": n, "image_size": args.img_size, "workers": args.workers, "augment": args.augment,
              "old_epoch1_img_s": rate(old_1), "old_epoch2_img_s": rate(old_2),
              "new_epoch1_img_s": rate(new_1), "new_epochs2plus_img_s": rate(new_2),
              "speedup_epochs2plus": old_2 / new_2, "check_old_s": check_old, "check_new_s": check_new,
              "check_again_s": check_again, "epoch1_after_check_s": first_epoch, "old_epoch1_s": old_1,
              "torch_threads": torch.get_num_threads()}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
