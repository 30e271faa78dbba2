"""`vlsm models`: the registered models with parameter counts at paper size."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list registered models with parameter counts (total / trainable)")
    p.add_argument("names", nargs="*", help="only these models")
    p.add_argument("--preset", default="paper", help="size to count (paper or tiny)")
    p.add_argument("--no-counts", action="store_true", help="list names only (no model is built)")
    p.set_defaults(func=run)


def model_rows(names, preset: str = "paper", counts: bool = True):
    """(name, variant, paper name, total, trainable, description) for each model and variant."""
    import torch

    from vlsm.models import create_model, get_entry

    rows = []
    for name in names:
        entry = get_entry(name)
        for variant in entry.variants or (None,):
            total = trainable = None
            if counts and preset in entry.presets:
                try:
                    with torch.device("meta"):  # counts need shapes only: no memory, no init time
                        model = create_model(name, preset=preset, variant=variant)
                except (NotImplementedError, RuntimeError):  # a model whose init reads tensor values
                    model = create_model(name, preset=preset, variant=variant)
                total, trainable = model.parameter_counts()
                del model
            rows.append((name, variant, entry.paper_name, total, trainable, entry.description))
    return rows


def run(args) -> int:
    from vlsm.models import list_models

    names = args.names or list_models()
    rows = model_rows(names, args.preset, counts=not args.no_counts)
    print(f"{'name':<18} {'variant':<10} {'paper name':<16} {'total (M)':>10} {'trainable (M)':>14}  description")
    for name, variant, paper, total, trainable, desc in rows:
        t = f"{total / 1e6:10.2f}" if total is not None else f"{'-':>10}"
        tr = f"{trainable / 1e6:14.2f}" if trainable is not None else f"{'-':>14}"
        print(f"{name:<18} {variant or '':<10} {paper:<16} {t} {tr}  {desc}")
    return 0
