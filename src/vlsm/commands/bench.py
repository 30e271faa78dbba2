"""`vlsm bench`: train/inference throughput, data loading, peak memory and checkpoint size per model."""
from __future__ import annotations

import argparse

from vlsm.commands._common import add_trust_arg, override_arg


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
    p.add_argument("--set", dest="model_set", action="append", default=[], type=override_arg, metavar="KEY=VALUE",
                   help="model config override, e.g. --set freeze_encoder=true (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_trust_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from vlsm.api import bench
    from vlsm.bench import format_table

    results = bench(args.models, preset=args.preset, variants=args.variant, image_size=args.img_size,
                    batch_size=args.batch_size, precisions=args.precision, device=args.device, steps=args.steps,
                    warmup=args.warmup, data=args.data, num_workers=args.num_workers,
                    loader_batches=args.loader_batches, overrides=dict(args.model_set),
                    trust_checkpoint=args.trust_checkpoint)
    print(json.dumps([r.to_dict() for r in results], indent=2) if args.json else format_table(results))
    return 0
