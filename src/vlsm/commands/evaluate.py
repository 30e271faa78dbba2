"""`vlsm evaluate`: score a trained (or pretrained, zero-shot) model on a dataset split (:func:`vlsm.api.evaluate`)."""
from __future__ import annotations

import argparse

from vlsm.commands._common import add_model_args, add_trust_arg
from vlsm.config.flags import add_option_flags, option_values

#: the schema options this command takes as flags (their checks and help come from the schema)
OPTIONS = ("eval.threshold", "eval.batch_size", "train.device", "data.max_pixels", "eval.tta", "eval.postprocess",
           "eval.boundary_metrics", "eval.nsd_tolerance")
#: those whose flag, when not given, leaves the run's own setting (its tuned threshold, its eval.tta)
RUN_DEFAULTS = ("eval.threshold", "eval.tta")


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="per-image Dice/IoU (and with --boundary HD95/NSD) at original resolution -> "
                                        "per_case.csv + summary.json",
                       description="Score a run, its model/ folder or a checkpoint on dataset splits at each image's "
                                   "original resolution. --threshold and --tta default to the run's own (the "
                                   "threshold tuned on validation, else its eval.threshold); the post-processing the "
                                   "run chose on validation applies unless --no-postprocess.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", nargs="*", help="run folder, its model/ folder, or a .ckpt file; several: their "
                                                 "ensemble (probabilities averaged, e.g. a cross-validation's folds; "
                                                 "give -o)")
    add_model_args(p)
    p.add_argument("--zero-shot", action="store_true",
                   help="evaluate --model/--pretrained without training (no checkpoint)")
    p.add_argument("--allow-partial-weights", action="store_true",
                   help="--zero-shot: accept --pretrained weights that lack some of the model's tensors")
    p.add_argument("--data", nargs="+", help="dataset folder(s); default: the run's datasets")
    p.add_argument("--split", default="test")
    p.add_argument("--prompt", nargs="+", help="p0..p9, 'all' for a sweep over p0..p9, or fixed text; "
                                                "default: the run's evaluation prompt (p1)")
    add_option_flags(p, RUN_DEFAULTS, defaults=False)  # (not given: the run's threshold and test-time augmentation)
    add_option_flags(p, [k for k in OPTIONS if k not in RUN_DEFAULTS])
    p.add_argument("-o", "--out", help="output folder (default: RUN/eval/<dataset>-<split>[-<prompt>])")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation's per_case.csv and "
                                                              "summary.json in the output folder")
    add_trust_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from vlsm.api import evaluate
    from vlsm.runs import SUMMARY_FILE

    values = option_values(args, OPTIONS)
    checkpoint = args.checkpoint[0] if len(args.checkpoint) == 1 else args.checkpoint or None
    done = evaluate(checkpoint, model=args.model, pretrained=args.pretrained, preset=args.preset,
                    variant=args.variant, overrides=dict(args.model_set), image_size=args.img_size,
                    zero_shot=args.zero_shot, allow_partial_weights=args.allow_partial_weights, data=args.data,
                    split=args.split, prompt=args.prompt, threshold=values.get("eval.threshold"),
                    batch_size=values["eval.batch_size"], device=values["train.device"], out=args.out,
                    max_pixels=values.get("data.max_pixels"), overwrite=args.overwrite,
                    trust_checkpoint=args.trust_checkpoint, tta=values.get("eval.tta"),
                    postprocess=values["eval.postprocess"], boundary=values["eval.boundary_metrics"],
                    nsd_tolerance=values["eval.nsd_tolerance"])
    for result, folder in zip(done.results, done.folders):
        print(f"wrote {folder}/{result.per_case} and {SUMMARY_FILE}")
    print(done.table())
    return 0
