"""Text at the batch's length, the text cache and the ViT's dead blocks: their effect, side by side.

Builds each model once at paper size (random init, offline), checks that its outputs are the same with
and without the exact shortcuts of :mod:`vlsm.models.speedups`, then times the train step (forward, BCE +
soft Dice, backward, AdamW) and inference (eval, ``no_grad``) in turns, shortcuts on and off, in fp32 and
under bf16 autocast. "off" is the computation as it was before the shortcuts (full context, every block).

    .venv/bin/python benchmarks/text_and_blocks.py                      # the three models of issue 9
    .venv/bin/python benchmarks/text_and_blocks.py --models clipseg --steps 5 --json out.json

The prompt is a typical p6 prompt of ``--prompt-tokens`` tokens (26 by default) padded to the model's
context length, as the data pipeline pads it. BiomedCLIP's WordPiece vocabulary is not available offline,
so its ids are drawn at random (what they are does not change the cost).
"""
from __future__ import annotations

import argparse
import functools
import json
import time

import torch

from vlsm.bench import autocast_for
from vlsm.models import create_model
from vlsm.models.speedups import exact_speedups
from vlsm.training.losses import BCEDiceLoss

MODELS = ("biomedclipseg", "clipseg", "biomedclipseg-a:reference")
PROMPT = "a small round pink polyp with a smooth surface located in the upper left part of the colon image"


def prompt_batch(model, batch_size: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) at the model's context length with ``tokens`` real tokens per prompt."""
    length = int(model.preprocess.context_length)
    if model.preprocess.tokenizer == "clip-bpe":
        tok = model.get_tokenizer()
        body = tok.encode(" ".join([PROMPT] * 4))[: tokens - 2]
        row = [tok.sot_id, *body, tok.eot_id]
        pad = tok.pad_id
    else:  # WordPiece: [CLS] tokens [SEP] [PAD]... with BERT's ids 2, 3 and 0
        generator = torch.Generator().manual_seed(0)
        row = [2, *torch.randint(5, 28000, (tokens - 2,), generator=generator).tolist(), 3]
        pad = 0
    ids = torch.full((batch_size, length), pad, dtype=torch.long)
    mask = torch.zeros((batch_size, length), dtype=torch.long)
    ids[:, :len(row)] = torch.tensor(row)
    mask[:, :len(row)] = 1
    return ids, mask


def seconds_per_call(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def bench_one(spec: str, batch_size: int, steps: int, tokens: int, precisions) -> dict:
    name, _, variant = spec.partition(":")
    torch.manual_seed(0)
    model = create_model(name, variant=variant or None)
    size = model.preprocess.image_size
    pixels = torch.randn(batch_size, 3, size, size)
    target = (torch.rand(batch_size, 1, size, size) > 0.5).float()
    ids, mask = prompt_batch(model, batch_size, tokens)
    loss_fn = BCEDiceLoss()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    model.eval()
    with torch.no_grad():
        with exact_speedups(False):
            full = model(pixels, ids, mask)
        fast = model(pixels, ids, mask)
    diff = float((full - fast).abs().max())
    scale = float(full.abs().max())

    def train_step(precision):
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(precision, pixels.device):
            loss = loss_fn(model(pixels, ids, mask), target)["loss"]
        loss.backward()
        optimizer.step()

    def infer_step(precision):
        with torch.no_grad(), autocast_for(precision, pixels.device):
            model(pixels, ids, mask)

    rows = {}
    for precision in precisions:
        for kind, step, mode in (("train", train_step, "train"), ("infer", infer_step, "eval")):
            getattr(model, mode)()
            times = {True: [], False: []}
            for on in (False, True):  # warm-up, untimed
                with exact_speedups(on):
                    step(precision)
            for _ in range(2):  # alternate so that load from other processes hits both alike
                for on in (False, True):
                    with exact_speedups(on):
                        times[on].append(seconds_per_call(functools.partial(step, precision), steps))
            off, on = min(times[False]), min(times[True])
            rows[f"{kind} {precision}"] = {"off_img_s": batch_size / off, "on_img_s": batch_size / on,
                                           "speedup": off / on}
            print(f"  ({spec} {kind} {precision}: off {batch_size / off:.2f}, on {batch_size / on:.2f} img/s)",
                  flush=True)
    return {"model": spec, "image_size": size, "batch_size": batch_size, "context_length": ids.shape[1],
            "prompt_tokens": tokens, "max_abs_diff": diff, "logit_scale": scale, "results": rows}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="NAME or NAME:VARIANT")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="timed calls per measurement (best of 2 taken)")
    parser.add_argument("--prompt-tokens", type=int, default=26)
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    reports = []
    print(f"{'model':28} {'measure':18} {'off img/s':>10} {'on img/s':>10} {'speedup':>8}")
    for spec in args.models:
        report = bench_one(spec, args.batch_size, args.steps, args.prompt_tokens, args.precisions)
        reports.append(report)
        for measure, r in report["results"].items():
            print(f"{spec:28} {measure:18} {r['off_img_s']:10.2f} {r['on_img_s']:10.2f} {r['speedup']:7.2f}x")
        results = report["results"]
        if "train 32-true" in results and "train bf16-mixed" in results:
            ratio = results["train bf16-mixed"]["on_img_s"] / results["train 32-true"]["off_img_s"]
            print(f"{spec:28} {'train bf16 on / fp32 off':18} {'':10} {'':10} {ratio:7.2f}x")
        print(f"{spec:28} outputs on vs off: max |diff| {report['max_abs_diff']:.2e} (logits up to "
              f"{report['logit_scale']:.2f}); {report['prompt_tokens']} of {report['context_length']} tokens",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(reports, f, indent=2)


if __name__ == "__main__":
    main()
