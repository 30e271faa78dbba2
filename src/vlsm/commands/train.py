"""`vlsm train`: train a model from flags or an experiment YAML (flags override the file)."""
from __future__ import annotations

import argparse

from vlsm.commands._common import add_model_args


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model and evaluate it; writes a run folder",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-c", "--config", help="experiment YAML file (see experiments/)")
    add_model_args(p)
    p.add_argument("--data", nargs="+", help="dataset folder(s); several = pooled training")
    p.add_argument("--test-data", nargs="+", help="extra dataset folder(s) only evaluated (cross-dataset)")
    p.add_argument("--prompt", help="p0..p9, random, or a fixed text prompt")
    p.add_argument("--class-name", help="class name used as prompt p1 of a plain images/+masks/ folder")
    p.add_argument("--out", "-o", help="run folder to create")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--bce-weight", type=float)
    p.add_argument("--dice-weight", type=float)
    p.add_argument("--patience", type=int, help="early-stopping patience (epochs without val Dice gain)")
    p.add_argument("--precision", help="auto, 32-true, 16-mixed, bf16-mixed")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--devices", help="number of GPUs (DDP when > 1)")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-minutes", type=float, help="stop training after this many minutes")
    p.add_argument("--no-augment", action="store_true", help="no flips/colour jitter")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--cache", action="store_true", help="keep resized images in memory (fast CPU training)")
    p.add_argument("--limit-train-batches", type=float, help="batches (or fraction) per training epoch")
    p.add_argument("--skip-bad", action="store_true", help="leave out files that fail the data check")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.set_defaults(func=run)


def config_from_args(args):
    from vlsm.config import ExperimentConfig, expand_path, load_config

    cfg = load_config(args.config) if args.config else ExperimentConfig()
    m, d, t = cfg.model, cfg.data, cfg.train
    if getattr(args, "model", None):
        if args.model != m.name:
            m.overrides = {}  # a file's overrides belong to the file's model
        m.name = args.model
    for attr in ("preset", "variant", "pretrained"):
        if getattr(args, attr, None) is not None:
            setattr(m, attr, getattr(args, attr))
    if getattr(args, "img_size", None):
        m.overrides["image_size"] = args.img_size
    for key, value in getattr(args, "model_set", []):
        m.overrides[key] = value
    if getattr(args, "data", None):
        d.paths = [expand_path(p) for p in args.data]
    if getattr(args, "test_data", None):
        d.test_paths = [expand_path(p) for p in args.test_data]
    if getattr(args, "prompt", None):
        d.prompt = args.prompt
    if getattr(args, "class_name", None):
        d.class_name = args.class_name
    if getattr(args, "no_augment", False):
        d.augment = False
    if getattr(args, "skip_bad", False):
        d.skip_bad = True
    if getattr(args, "cache", False):
        d.cache = True
    if getattr(args, "limit_train_batches", None) is not None:
        v = args.limit_train_batches
        t.limit_train_batches = int(v) if float(v).is_integer() and v > 1 else v
    if getattr(args, "out", None):
        cfg.out = args.out
    for flag, attr in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                       ("weight_decay", "weight_decay"), ("bce_weight", "bce_weight"),
                       ("dice_weight", "dice_weight"), ("patience", "early_stopping_patience"),
                       ("precision", "precision"), ("device", "device"), ("num_workers", "num_workers"),
                       ("seed", "seed"), ("max_minutes", "max_minutes")):
        if getattr(args, flag, None) is not None:
            setattr(t, attr, getattr(args, flag))
    if getattr(args, "devices", None) is not None:
        t.devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    if getattr(args, "no_progress", False):
        t.progress_bar = False
    return cfg


def run(args) -> int:
    from vlsm.training.run import train

    cfg = config_from_args(args)
    run_dir = train(cfg, resume=args.resume, overwrite=args.overwrite)
    summary = run_dir / "summary.json"
    if summary.is_file():
        import json

        from vlsm.evaluation.evaluate import format_results

        s = json.loads(summary.read_text())
        print(format_results([{**r, "label": s["model"]["label"]} for r in s["results"]]))
        print(f"run folder: {run_dir}")
    return 0
