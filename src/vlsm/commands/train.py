"""`vlsm train`: train a model from flags or an experiment YAML (flags override the file).

Every option flag comes from the experiment schema (:mod:`vlsm.config.schema`): its name, help, choices and
checks; this module adds only what is not an option (``-c``, ``--resume``, ``--overwrite``, the model's
``--img-size``/``--set`` create_model options, ``--trust-checkpoint``).
"""
from __future__ import annotations

from vlsm.commands._common import add_trust_arg, override_arg
from vlsm.config import COMMAND_LINE, SECTIONS, all_options
from vlsm.config.flags import add_option_flags, option_values


def flagged_options() -> list[str]:
    """The schema options that ``vlsm train`` takes as flags, in schema order; where two options share a flag
    name (``--batch-size``: train.batch_size, eval.batch_size) the training one. The ``search`` and ``sweep``
    sections' flags are ``vlsm tune``'s and ``vlsm sweep``'s."""
    keys, seen = [], set()
    for key, option in all_options().items():
        if option.flag and option.flag not in seen and option.section not in ("search", "sweep"):
            keys.append(key)
            seen.add(option.flag)
    return keys


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model and evaluate it; writes a run folder",
                       description="Train a model and evaluate it; writes a run folder. Flags override the "
                                   "experiment file (-c); every option is listed in docs/reference/configuration.md.")
    p.add_argument("-c", "--config", help="experiment YAML file (see experiments/)")
    groups = {"": p, **{section: p.add_argument_group(section) for section in SECTIONS}}
    for key in flagged_options():
        add_option_flags(groups[key.rsplit(".", 1)[0] if "." in key else ""], [key], defaults=False)
    model = groups["model"]
    model.add_argument("--img-size", type=int, help="input image size (overrides the model's default)")
    model.add_argument("--set", dest="model_set", action="append", default=[], type=override_arg,
                       metavar="KEY=VALUE", help="model config override, e.g. --set freeze_encoder=false (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN from RUN/checkpoints/last.ckpt with RUN/config.yaml's settings")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder (only a vlsm run)")
    add_trust_arg(p)
    p.set_defaults(func=run)


def override_pairs(args, cfg) -> list[tuple[str, object]]:
    """The (dotted key, value) overrides that ``vlsm train``'s flags ask for, in the order applied; each value
    already checked against the schema (one line naming the flag)."""
    pairs = []
    values = option_values(args, flagged_options())
    model = values.pop("model.name", None)
    if model:
        if model != cfg.model.name:
            pairs.append(("model.overrides", {}))  # a file's model options belong to the file's model
        pairs.append(("model.name", model))
    pairs += values.items()
    if getattr(args, "img_size", None):  # (0: the model's own size)
        pairs.append(("model.overrides.image_size", args.img_size))
    pairs += [(f"model.overrides.{key}", value) for key, value in getattr(args, "model_set", [])]
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
    return apply_overrides(cfg, override_pairs(args, cfg), where=COMMAND_LINE)


def run(args) -> int:
    from vlsm.api import train

    result = train(config_from_args(args), resume=args.resume, overwrite=args.overwrite)
    if result.summary:
        print(result.table())
        print(f"run folder: {result.path}")
    return 0
