"""`vlsm evaluate`: score a trained (or pretrained, zero-shot) model on a dataset split."""
from __future__ import annotations

import argparse
from pathlib import Path

from vlsm.commands._common import add_model_args, add_trust_arg

PROMPT_TYPES = [f"p{i}" for i in range(10)]


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="per-image Dice/IoU at original resolution -> per_case.csv + summary.json",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="run folder, its model/ folder, or a .ckpt file")
    add_model_args(p)
    p.add_argument("--zero-shot", action="store_true",
                   help="evaluate --model/--pretrained without training (no checkpoint)")
    p.add_argument("--allow-partial-weights", action="store_true",
                   help="--zero-shot: accept --pretrained weights that lack some of the model's tensors")
    p.add_argument("--data", nargs="+", help="dataset folder(s); default: the run's datasets")
    p.add_argument("--split", default="test")
    p.add_argument("--prompt", nargs="+", help="p0..p9, 'all' for a sweep over p0..p9, or fixed text; "
                                                "default: the run's evaluation prompt (p1)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("-o", "--out", help="output folder (default: RUN/eval/<dataset>-<split>[-<prompt>])")
    p.add_argument("--max-pixels", type=int,
                   help="refuse images with more pixels than this (default: Pillow's decompression-bomb limit)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation's per_case.csv and "
                                                              "summary.json in the output folder")
    add_trust_arg(p)
    p.set_defaults(func=run)


def _load(args):
    """A Predictor of the checkpoint, or of --model/--pretrained for --zero-shot."""
    from vlsm.errors import UserError
    from vlsm.evaluation.evaluate import EVAL_PRECISION
    from vlsm.predictor import Predictor

    options = dict(device=args.device, precision=EVAL_PRECISION, batch_size=args.batch_size)
    if args.zero_shot or not args.checkpoint:
        if not args.model:
            raise UserError("give a checkpoint/run folder, or --model NAME [--pretrained SRC] --zero-shot")
        if args.checkpoint:
            raise UserError("--zero-shot evaluates --model/--pretrained; do not also give a checkpoint")
        overrides = dict(args.model_set)
        if args.allow_partial_weights:
            overrides["allow_partial_weights"] = True
        if args.img_size:
            overrides["image_size"] = args.img_size
        return Predictor(args.model, pretrained=args.pretrained, preset=args.preset or "paper",
                         variant=args.variant, **options, **overrides)
    if args.model:
        raise UserError("--model is for --zero-shot; a checkpoint already knows its model")
    return Predictor(args.checkpoint, **options)


def run(args) -> int:
    from vlsm.data import load_records
    from vlsm.data.images import check_pixel_limit
    from vlsm.errors import UserError
    from vlsm.evaluation.evaluate import evaluate_split, format_results
    from vlsm.runs import RunFolder, eval_name, require_writable

    for flag, value in (("--batch-size", args.batch_size), ("--max-pixels", args.max_pixels)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if not 0 < args.threshold < 1:
        raise UserError(f"--threshold must be between 0 and 1, got {args.threshold}")
    predictor = _load(args)
    model, cfg = predictor.model, predictor.config
    data = args.data or (cfg.data.paths if cfg else None)
    if not data:
        raise UserError("no dataset: give --data PATH")
    prompts = args.prompt or [cfg.data.resolved_eval_prompt() if cfg else "p1"]
    if prompts == ["all"]:
        prompts = PROMPT_TYPES
    if not model.uses_text and len(prompts) > 1:
        raise UserError(f"{model.spec.name} is image-only: a prompt sweep would give {len(prompts)} equal rows")
    run_dir = RunFolder.containing(args.checkpoint) if args.checkpoint and Path(args.checkpoint).is_dir() else None
    if not args.out and run_dir is None:
        raise UserError("give -o OUT_DIR for the results")
    # every output and every image is checked before the first one is scored (the data check's rules:
    # unreadable files and image/mask size mismatches are errors naming the file)
    require_writable(Path(args.out) if args.out else run_dir.path, flag="-o")
    splits = [load_records([path], args.split, check=True)[0] for path in data]
    check_pixel_limit([r.image_path for _, records in splits for r in records], args.max_pixels)
    jobs = []
    for name, records in splits:
        for prompt in prompts:
            tagged = prompt if len(prompts) > 1 or args.prompt else None
            if args.out:
                out = Path(args.out) / eval_name(name, args.split, tagged) \
                    if (len(prompts) > 1 or len(data) > 1) else Path(args.out)
            else:
                out = run_dir.eval_dir(name, args.split, tagged)
            done = RunFolder(out).summary_file
            if done.exists() and not args.overwrite:
                raise UserError(f"{done} exists; pass --overwrite or another -o")
            jobs.append((name, records, prompt, out))
    rows = []
    for name, records, prompt, out in jobs:
        result = evaluate_split(predictor, records, out, dataset=name, split=args.split, prompt=prompt,
                                threshold=args.threshold, extra={"zero_shot": bool(args.zero_shot)})
        label = f"{predictor.label} {prompt}" if len(prompts) > 1 else predictor.label
        rows.append({**result.to_dict(), "label": label})
        print(f"wrote {out}/{result.per_case} and {RunFolder(out).summary_file.name}")
    print(format_results(rows))
    return 0
