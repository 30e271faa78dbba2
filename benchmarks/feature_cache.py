"""Frozen-encoder feature cache: training epochs with and without it, side by side in one process.

For each model (paper size, random init, offline) one training "epoch" over the first ``--images``
Kvasir training images (``--prompt`` p6, no augmentation: the paper grid's recipe) is timed end to end
(data loading, forward, BCE + soft Dice, backward, AdamW) through ``SegmentationTask.forward``, the
training code path itself, in four settings:

* ``before``: as the code was before issue 9 (every epoch decodes the JPEGs, text padded to the full
  context, every ViT block run: ``exact_speedups(False)``), no feature cache;
* ``cache off``: decode once (cache warm) and the exact shortcuts, no feature cache (any epoch);
* ``cache on, epoch 1``: the same, the feature cache filling (the frozen encoder runs and is stored);
* ``cache on, epoch 2+``: every image's features stored: only the trainable parts run.

It prints img/s per setting and the speed-ups of epoch 2+ over ``cache off`` and over ``before``, and
checks that epoch 2+ computes the losses of an uncached pass over the same batches (fp32: equal up to
the summation order of a batch of other images).

BiomedCLIP's WordPiece vocabulary is not available offline: the prompts are tokenised with a
vocabulary of their own words (about the token count of the real one). A subset of the 800 training
images stands in for the epoch (img/s does not depend on the epoch's length once the cache is warm).

    .venv/bin/python benchmarks/feature_cache.py                               # the three models, 32 images
    .venv/bin/python benchmarks/feature_cache.py --models biomedclipseg --images 64 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from vlsm.data import SegmentationDataset, load_split
from vlsm.data.decoded import open_decoded_cache
from vlsm.models import create_model
from vlsm.models.speedups import exact_speedups
from vlsm.text.tokenizers import SPECIAL_TOKENS, WordPieceTokenizer
from vlsm.training.feature_cache import FeatureCache, NumberedConcatDataset
from vlsm.training.module import SegmentationTask

DEFAULT_DATA = Path(os.environ.get("VLSM_DATA_ROOT") or Path(__file__).resolve().parents[2] / "shared" / "data")
MODELS = ("biomedclipseg", "biomedclipseg-a:reference", "clipseg:frozen")


def build(spec: str):
    """A paper-size model from ``name[:variant]`` (``clipseg:frozen``: CLIPSeg with freeze_encoder, the grid's)."""
    name, _, variant = spec.partition(":")
    options = {"freeze_encoder": True} if variant == "frozen" else {}
    torch.manual_seed(0)
    return create_model(name, variant=None if variant in ("", "frozen") else variant, **options)


def local_wordpiece(records, prompt: str, context_length: int) -> WordPieceTokenizer:
    """A WordPiece tokenizer whose vocabulary is the words and punctuation of the records' prompts."""
    words = set()
    for rec in records:
        texts = rec.prompts.get(prompt, "")
        for text in texts if isinstance(texts, list) else [texts]:
            words.update(re.findall(r"\w+|[^\w\s]", text.lower()))
    return WordPieceTokenizer(list(SPECIAL_TOKENS) + sorted(words - set(SPECIAL_TOKENS)), context_length)


def set_tokenizer(model, tokenizer) -> None:
    for vlsm in (model.vlsms().values() if hasattr(model, "vlsms") else [model]):
        if vlsm.config.tokenizer == "wordpiece":
            vlsm.set_tokenizer(tokenizer)


def timed_epoch(task, loader, optimizer, epoch: int, losses: list) -> float:
    """Images/s of one training epoch through ``task`` (its feature cache, if any)."""
    for ds in loader.dataset.datasets:
        ds.set_epoch(epoch)
    task.model.train()
    seen, start = 0, time.perf_counter()
    for step, batch in enumerate(loader):
        torch.manual_seed(step)  # the trainable parts' dropout (and BERT's, in train mode) draws alike in every setting
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss_fn(task(batch, "train"), batch["mask"])["loss"]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        seen += batch["pixel_values"].shape[0]
    return seen / (time.perf_counter() - start)


def bench_one(spec: str, records, args) -> dict:
    model = build(spec)
    tokenizer = local_wordpiece(records, args.prompt, model.preprocess.context_length)
    set_tokenizer(model, tokenizer)
    tokenizer = model.get_tokenizer()
    pre = model.preprocess
    task = SegmentationTask(model, lr=1e-4)
    # the optimizer never changes the weights: every setting trains the same model from the same state
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    decoded = open_decoded_cache(args.cache_dir, pre.image_size)

    def loader(cache):
        ds = NumberedConcatDataset([SegmentationDataset(records, pre, tokenizer, prompt=args.prompt, augment=False,
                                                        seed=0, cache=cache)])
        return DataLoader(ds, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)

    row = {"model": spec, "images": len(records), "batch_size": args.batch_size,
           "image_size": pre.image_size, "trainable_M": model.parameter_counts()[1] / 1e6}
    fast = loader(decoded)
    for _ in fast:  # warm the decoded-image cache (what the data check does before training)
        pass
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache({"train": len(records)}, tmp)
        task.feature_cache = cache
        row["cache_on_epoch1_img_s"] = timed_epoch(task, fast, optimizer, 0, first := [])
        row["cache_on_epoch2_img_s"] = timed_epoch(task, fast, optimizer, 1, cached := [])
        row["feature_cache"] = cache.describe()
        row["feature_bytes_per_image"] = (cache.memory_bytes + cache.disk_bytes) / len(records)
        cache.close()
        task.feature_cache = None
    row["cache_off_img_s"] = timed_epoch(task, fast, optimizer, 1, plain := [])
    with exact_speedups(False):
        row["before_img_s"] = timed_epoch(task, loader(False), optimizer, 1, [])
    row["max_loss_diff"] = max(abs(a - b) for a, b in zip(cached, plain))
    row["epoch1_equals_plain"] = first == plain  # the same batches and code: bit for bit
    row["speedup_vs_cache_off"] = row["cache_on_epoch2_img_s"] / row["cache_off_img_s"]
    row["speedup_vs_before"] = row["cache_on_epoch2_img_s"] / row["before_img_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA / "kvasir_polyp"))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--images", type=int, default=32, help="training images per epoch (a subset of the split)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: load in the main process)")
    parser.add_argument("--prompt", default="p6")
    parser.add_argument("--cache-dir", help="decoded-image cache folder (default: a temporary one)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    records = load_split(args.data, "train")[: args.images]
    print(f"{len(records)} training images of {args.data}, batch {args.batch_size}, prompt {args.prompt}, "
          f"{torch.get_num_threads()} threads, fp32 on the CPU", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        args.cache_dir = args.cache_dir or tmp
        rows = []
        for spec in args.models:
            row = bench_one(spec, records, args)
            rows.append(row)
            print(f"{spec:<26} before {row['before_img_s']:6.2f} img/s | cache off {row['cache_off_img_s']:6.2f} | "
                  f"cache on: epoch 1 {row['cache_on_epoch1_img_s']:6.2f}, epoch 2+ {row['cache_on_epoch2_img_s']:7.2f} "
                  f"img/s | epoch 2+ vs cache off x{row['speedup_vs_cache_off']:.1f}, vs before "
                  f"x{row['speedup_vs_before']:.1f} | {row['feature_bytes_per_image'] / 2**20:.2f} MB/image | "
                  f"max |loss diff| {row['max_loss_diff']:.1e}, epoch 1 = plain: {row['epoch1_equals_plain']}",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
