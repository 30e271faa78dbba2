"""`vlsm bench`: train/inference throughput, data loading, peak memory and checkpoint size per model."""
from __future__ import annotations

import argparse

from vlsm.commands._common import add_trust_arg


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure img/s (train step, inference, data loading), peak memory and "
                                     "checkpoint size of registered models (random init, offline)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("models", nargs="*", help="registered model names (default: every model)")
    p.add_argument("--preset", default="paper", help="paper or tiny")
    p.add_argument("--variant", nargs="+", help="ensemble variants to compare (default: each model's default)")
    p.add_argument("--img-size", type=int, help="input size (default: the model's)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--precision", nargs="+", default=["32-true"],
                   help="one or more of 32-true, bf16-mixed, 16-mixed (compared side by side)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    p.add_argument("--data", help="dataset folder: also measure data loading and estimate the epoch time")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers for --data")
    p.add_argument("--loader-batches", type=int, help="at most this many batches per loading pass")
    p.add_argument("--set", dest="model_set", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override, e.g. --set freeze_encoder=true (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_trust_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from vlsm.bench import PRECISIONS, bench, format_table
    from vlsm.config import parse_override
    from vlsm.errors import UserError
    from vlsm.models import get_entry, list_models

    names = args.models or list_models()
    for name in names:
        get_entry(name)  # unknown names fail here, listing the valid ones
    bad = [p for p in args.precision if p not in PRECISIONS]
    if bad:
        raise UserError(f"--precision {bad[0]!r} is not one of {', '.join(PRECISIONS)}")
    for flag, value in (("--batch-size", args.batch_size), ("--steps", args.steps)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if args.warmup < 0:
        raise UserError(f"--warmup must be 0 or more, got {args.warmup}")
    options = dict(parse_override(text) for text in args.model_set)
    results = bench(names, precisions=args.precision, variants=args.variant or [None], preset=args.preset,
                    image_size=args.img_size, batch_size=args.batch_size, device=args.device, steps=args.steps,
                    warmup=args.warmup, data=args.data, num_workers=args.num_workers,
                    loader_batches=args.loader_batches, **options)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_table(results))
    return 0
