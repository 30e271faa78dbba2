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

A ``:eval-frozen`` model (``frozen_dropout=False``: frozen encoders kept in eval mode, so BiomedCLIPSeg's
BERT is deterministic and the per-prompt text cache serves training) is also compared with the ``before``
of the same model with the default ``frozen_dropout`` (the code before issue 9 ran BERT's dropout in
training), when that model is measured in the same process.

BiomedCLIP's WordPiece vocabulary is not available offline: the prompts are tokenised with a
vocabulary of their own words (about the token count of the real one). A subset of the 800 training
images stands in for the epoch (img/s does not depend on the epoch's length once the cache is warm).

    .venv/bin/python benchmarks/feature_cache.py                               # the three models, 32 images
    .venv/bin/python benchmarks/feature_cache.py --models biomedclipseg --images 64 --json out.json
    .venv/bin/python benchmarks/feature_cache.py --models biomedclipseg biomedclipseg:eval-frozen
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
MODELS = ("biomedclipseg", "biomedclipseg:eval-frozen", "biomedclipseg-a:reference", "clipseg:frozen")


# the VLSMs inside each ensemble, by the names of their nested option dicts
ENSEMBLE_VLSMS = {"biomedclipseg-a": ("biomedclipseg",), "clipseg-b": ("clipseg",),
                  "ensemble-c": ("biomedclipseg", "clipseg")}
EVAL_FROZEN = "eval-frozen"


def build(spec: str):
    """A paper-size model from ``name[:tag...]``: ``frozen`` = freeze_encoder (CLIPSeg as in the grid),
    ``eval-frozen`` = frozen_dropout false (frozen encoders kept in eval mode; an ensemble's VLSMs get it
    through their nested options), any other tag = the variant."""
    name, *tags = spec.split(":")
    options, variant = {}, None
    for tag in tags:
        if tag == "frozen":
            options["freeze_encoder"] = True
        elif tag == EVAL_FROZEN:
            for vname in ENSEMBLE_VLSMS.get(name, ()):
                options[vname] = {"frozen_dropout": False}
            if name not in ENSEMBLE_VLSMS:
                options["frozen_dropout"] = False
        else:
            variant = tag
    torch.manual_seed(0)
    return create_model(name, variant=variant, **options)


def default_dropout_spec(spec: str) -> str:
    """The same model spec with the default frozen_dropout (its ``eval-frozen`` tag removed)."""
    return ":".join(part for part in spec.split(":") if part != EVAL_FROZEN)


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


def compare_frozen_dropout(rows: list) -> None:
    """Each ``eval-frozen`` row against the same model with frozen dropout on (the code before issue 9 ran it)."""
    by_spec = {row["model"]: row for row in rows}
    for row in rows:
        reference = by_spec.get(default_dropout_spec(row["model"]))
        if reference is None or reference is row:
            continue
        row["speedup_vs_before_default_dropout"] = row["cache_on_epoch2_img_s"] / reference["before_img_s"]
        row["speedup_vs_epoch2_default_dropout"] = row["cache_on_epoch2_img_s"] / reference["cache_on_epoch2_img_s"]
        row["cache_off_speedup_vs_default_dropout"] = row["cache_off_img_s"] / reference["cache_off_img_s"]
        print(f"{row['model']} vs {reference['model']} (frozen dropout on): epoch 2+ "
              f"x{row['speedup_vs_before_default_dropout']:.1f} its before, x"
              f"{row['speedup_vs_epoch2_default_dropout']:.2f} its epoch 2+; cache off "
              f"x{row['cache_off_speedup_vs_default_dropout']:.2f} its cache off", flush=True)


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
    compare_frozen_dropout(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
