"""`vlsm models`: the registered models with parameter counts at paper size (:func:`vlsm.api.models`)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list registered models with parameter counts (total / trainable)")
    p.add_argument("names", nargs="*", help="only these models")
    p.add_argument("--preset", default="paper", help="size to count (paper or tiny)")
    p.add_argument("--no-counts", action="store_true", help="list names only (no model is built)")
    p.set_defaults(func=run)


def run(args) -> int:
    from vlsm.api import models

    rows = models(args.names or None, preset=args.preset, counts=not args.no_counts)
    print(f"{'name':<18} {'variant':<10} {'paper name':<16} {'total (M)':>10} {'trainable (M)':>14}  description")
    for r in rows:
        t = f"{r.total / 1e6:10.2f}" if r.total is not None else f"{'-':>10}"
        tr = f"{r.trainable / 1e6:14.2f}" if r.trainable is not None else f"{'-':>14}"
        print(f"{r.name:<18} {r.variant or '':<10} {r.paper_name:<16} {t} {tr}  {r.description}")
    return 0
