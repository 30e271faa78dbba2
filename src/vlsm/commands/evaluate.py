"""`vlsm evaluate`: score a trained (or pretrained, zero-shot) model on a dataset split."""
from __future__ import annotations

import argparse
from pathlib import Path

from vlsm.commands._common import add_model_args

PROMPT_TYPES = [f"p{i}" for i in range(10)]


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="per-image Dice/IoU at original resolution -> per_case.csv + summary.json",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="run folder, its model/ folder, or a .ckpt file")
    add_model_args(p)
    p.add_argument("--zero-shot", action="store_true",
                   help="evaluate --model/--pretrained without training (no checkpoint)")
    p.add_argument("--data", nargs="+", help="dataset folder(s); default: the run's datasets")
    p.add_argument("--split", default="test")
    p.add_argument("--prompt", nargs="+", help="p0..p9, 'all' for a sweep over p0..p9, or fixed text; "
                                                "default: the run's evaluation prompt (p1)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("-o", "--out", help="output folder (default: RUN/eval/<dataset>-<split>[-<prompt>])")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def _load(args):
    from vlsm.errors import UserError

    if args.zero_shot or not args.checkpoint:
        if not args.model:
            raise UserError("give a checkpoint/run folder, or --model NAME [--pretrained SRC] --zero-shot")
        if args.checkpoint:
            raise UserError("--zero-shot evaluates --model/--pretrained; do not also give a checkpoint")
        from vlsm.models import create_model

        overrides = dict(args.model_set)
        if args.img_size:
            overrides["image_size"] = args.img_size
        model = create_model(args.model, pretrained=args.pretrained, preset=args.preset or "paper",
                             variant=args.variant, **overrides)
        return model, None
    if args.model:
        raise UserError("--model is for --zero-shot; a checkpoint already knows its model")
    from vlsm.training.run import load_trained_model

    return load_trained_model(args.checkpoint)


def run(args) -> int:
    from vlsm.errors import UserError
    from vlsm.evaluation.evaluate import evaluate_records, format_results, model_info, write_results
    from vlsm.training.run import load_records

    model, cfg = _load(args)
    data = args.data or (cfg.data.paths if cfg else None)
    if not data:
        raise UserError("no dataset: give --data PATH")
    prompts = args.prompt or [cfg.data.resolved_eval_prompt() if cfg else "p1"]
    if prompts == ["all"]:
        prompts = PROMPT_TYPES
    if not model.uses_text and len(prompts) > 1:
        raise UserError(f"{model.spec.name} is image-only: a prompt sweep would give {len(prompts)} equal rows")
    run_dir = Path(args.checkpoint) if args.checkpoint and Path(args.checkpoint).is_dir() else None
    if run_dir is not None and not (run_dir / "config.yaml").is_file():
        run_dir = run_dir.parent if (run_dir.parent / "config.yaml").is_file() else None
    if not args.out and run_dir is None:
        raise UserError("give -o OUT_DIR for the results")
    info = model_info(model)
    rows = []
    for path in data:
        [(name, records)] = load_records([path], args.split, check=False)
        for prompt in prompts:
            suffix = f"{name}-{args.split}" + (f"-{prompt}" if len(prompts) > 1 or args.prompt else "")
            if args.out:
                out = Path(args.out) / suffix if (len(prompts) > 1 or len(data) > 1) else Path(args.out)
            else:
                out = run_dir / "eval" / suffix
            if (out / "summary.json").exists() and not args.overwrite:
                raise UserError(f"{out}/summary.json exists; pass --overwrite or another -o")
            acc = evaluate_records(model, records, prompt=prompt, threshold=args.threshold, device=args.device,
                                   batch_size=args.batch_size)
            result = write_results(out, acc, model=info, dataset=name, split=args.split, prompt=prompt,
                                   threshold=args.threshold, extra={"zero_shot": bool(args.zero_shot)})
            rows.append({**result, "label": f"{info['label']} {prompt}" if len(prompts) > 1 else info["label"]})
            print(f"wrote {out}/per_case.csv and summary.json")
    print(format_results(rows))
    return 0
