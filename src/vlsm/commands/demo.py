"""`vlsm demo`: the paper in miniature, on generated data (or your dataset) in a few minutes on a CPU
(:func:`vlsm.api.demo`)."""
from __future__ import annotations

import argparse

from vlsm.api.demos import DEMO_MODELS


def register(sub) -> None:
    p = sub.add_parser("demo", help="train + compare UNet-D, a VLSM and their ensemble on synthetic data",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", help="a dataset folder to use instead of the generated one")
    p.add_argument("--out", default="demo-output", help="folder for the data, runs, table and figure")
    p.add_argument("--models", nargs="+", default=[f"{m}:{s}" for m, s in DEMO_MODELS],
                   help="models as NAME[:PRESET]")
    p.add_argument("--img-size", type=int, default=64, help="training/inference size")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--minutes", type=float, default=0.75, help="training time limit per model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--prompt", default="p1")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _echo(text: str) -> None:
    print(text, flush=True)


def run(args) -> int:
    from vlsm.api import demo
    from vlsm.evaluation.evaluate import format_results

    done = demo(data=args.data, out=args.out, models=args.models, img_size=args.img_size, epochs=args.epochs,
                minutes=args.minutes, batch_size=args.batch_size, prompt=args.prompt, seed=args.seed, echo=_echo)
    print("\n" + format_results(done.rows))
    print(f"\nrun folders: {done.table.parent / 'runs'}\nfigure: {done.figure}\ntable: {done.table}")
    print(f"web app: {done.serve_command()}")
    return 0
