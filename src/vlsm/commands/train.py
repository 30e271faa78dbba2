"""`vlsm train`: train a model from flags or an experiment YAML (flags override the file)."""
from __future__ import annotations

import argparse

from vlsm.commands._common import add_model_args, add_trust_arg
from vlsm.config import CHANNELS_LAST_MODES, FEATURE_CACHE_MODES, KEEP_CHECKPOINTS, MONITORS, SCHEDULERS


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
    p.add_argument("--cache", action="store_true",
                   help="decode and resize each image once into the on-disk cache (the default; see --no-cache)")
    p.add_argument("--no-cache", action="store_true", help="decode every image every epoch (no decode-once cache)")
    p.add_argument("--cache-dir", help="folder of the decode-once cache (default $VLSM_CACHE_DIR/decoded)")
    p.add_argument("--limit-train-batches", type=float, help="batches (or fraction) per training epoch")
    p.add_argument("--skip-bad", action="store_true", help="leave out files that fail the data check")
    p.add_argument("--drop-overlap", action="store_true",
                   help="leave out of training the images also listed in another split (leakage)")
    p.add_argument("--max-pixels", type=int,
                   help="refuse images with more pixels than this (default: Pillow's decompression-bomb limit)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic GPU kernels (Lightning's deterministic=True; slower)")
    p.add_argument("--monitor", choices=MONITORS,
                   help="what early stopping and the best checkpoint follow (val_bce: the loss's BCE part)")
    p.add_argument("--min-delta", type=float, help="smallest change of --monitor that counts as an improvement")
    p.add_argument("--min-epochs", type=int, help="early stopping cannot stop before this many epochs")
    p.add_argument("--scheduler", choices=SCHEDULERS, help="learning-rate schedule (plateau: ReduceLROnPlateau)")
    p.add_argument("--reload-best-each-epoch", action="store_true",
                   help="continue every epoch from the best weights so far (the paper's UNet-D script)")
    p.add_argument("--feature-cache", choices=FEATURE_CACHE_MODES,
                   help="compute a frozen image encoder's activations once per image (auto: when exact)")
    p.add_argument("--keep-checkpoints", choices=KEEP_CHECKPOINTS,
                   help="checkpoints kept once the run has finished (model/ holds the best weights)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model for training")
    p.add_argument("--channels-last", choices=CHANNELS_LAST_MODES,
                   help="convolution weights in NHWC memory format while training (auto: on a CUDA GPU)")
    p.add_argument("--num-nodes", type=int, help="machines for multi-node DDP (with SLURM or torchrun)")
    p.add_argument("--allow-partial-weights", action="store_true",
                   help="accept --pretrained weights that lack some of the model's tensors (they stay as initialised)")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN from RUN/checkpoints/last.ckpt with RUN/config.yaml's settings")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder (only a vlsm run)")
    add_trust_arg(p)
    p.set_defaults(func=run)


# flag -> dotted config key, for the flags whose value is set as given
_FLAG_KEYS = {
    "preset": "model.preset", "variant": "model.variant", "pretrained": "model.pretrained",
    "img_size": "model.overrides.image_size",
    "data": "data.paths", "test_data": "data.test_paths", "prompt": "data.prompt", "class_name": "data.class_name",
    "out": "out",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr",
    "weight_decay": "train.weight_decay", "bce_weight": "train.bce_weight", "dice_weight": "train.dice_weight",
    "patience": "train.early_stopping_patience", "precision": "train.precision", "device": "train.device",
    "num_workers": "train.num_workers", "seed": "train.seed", "max_minutes": "train.max_minutes",
    "max_pixels": "data.max_pixels", "cache_dir": "data.cache_dir",
    "monitor": "train.monitor", "min_delta": "train.min_delta", "min_epochs": "train.min_epochs",
    "scheduler": "train.scheduler", "feature_cache": "train.feature_cache",
    "keep_checkpoints": "train.keep_checkpoints", "num_nodes": "train.num_nodes",
    "channels_last": "train.channels_last",
}
# flags ignored when empty (``--prompt ""`` keeps the file's prompt; ``--img-size 0`` the model's size)
_SKIP_EMPTY = {"img_size", "data", "test_data", "prompt", "class_name", "out", "cache_dir"}
# switches that set a config field to a fixed value when given
_SWITCH_KEYS = {"no_augment": ("data.augment", False), "skip_bad": ("data.skip_bad", True),
                "drop_overlap": ("data.drop_overlap", True),
                "cache": ("data.cache", True), "no_cache": ("data.cache", False),
                "no_progress": ("train.progress_bar", False),
                "deterministic": ("train.deterministic", True),
                "reload_best_each_epoch": ("train.reload_best_each_epoch", True),
                "compile": ("train.compile", True),
                "allow_partial_weights": ("train.allow_partial_weights", True)}


def override_pairs(args, cfg) -> list[tuple[str, object]]:
    """The (dotted key, value) overrides that ``vlsm train``'s flags ask for, in the order applied."""
    pairs = []
    model = getattr(args, "model", None)
    if model:
        if model != cfg.model.name:
            pairs.append(("model.overrides", {}))  # a file's model options belong to the file's model
        pairs.append(("model.name", model))
    for flag, key in _FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None and (value or flag not in _SKIP_EMPTY):
            pairs.append((key, value))
    for flag, (key, value) in _SWITCH_KEYS.items():
        if getattr(args, flag, False):
            pairs.append((key, value))
    for key, value in getattr(args, "model_set", []):
        pairs.append((f"model.overrides.{key}", value))
    v = getattr(args, "limit_train_batches", None)
    if v is not None:  # a whole number above 1 is a batch count, otherwise a fraction of the epoch
        pairs.append(("train.limit_train_batches", int(v) if float(v).is_integer() and v > 1 else v))
    devices = getattr(args, "devices", None)
    if devices is not None:
        pairs.append(("train.devices", int(devices) if str(devices).isdigit() else devices))
    return pairs


def config_from_args(args):
    """The experiment file (or the defaults) with the command line's flags applied on top. With
    ``--resume`` and no ``-c``, the run's own config.yaml takes the defaults' place."""
    from vlsm.config import ExperimentConfig, apply_overrides, load_config
    from vlsm.runs import RunFolder

    if args.config:
        cfg = load_config(args.config)
    elif getattr(args, "resume", False) and args.out and RunFolder(args.out).config_file.is_file():
        cfg = RunFolder(args.out).read_config()
    else:
        cfg = ExperimentConfig()
    return apply_overrides(cfg, override_pairs(args, cfg), where="command line")


def run(args) -> int:
    from vlsm.errors import UserError
    from vlsm.training.run import train

    if args.resume and args.overwrite:
        raise UserError("--resume continues a run and --overwrite deletes it: pass only one of them")
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
