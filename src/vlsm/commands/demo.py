"""`vlsm demo`: the paper in miniature, on generated data (or your dataset) in a few minutes on a CPU.

Generates a synthetic polyp dataset in the medvlsm layout, trains UNet-D, a tiny vision-language
model and their ensemble for a bounded time each, evaluates them on the test split, prints one
comparison table and draws a qualitative figure.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

# (model, preset): UNet-D, a VLSM and the ensemble of the two, all small enough for a CPU.
DEMO_MODELS = (("unet-d", "tiny"), ("clipseg", "tiny"), ("clipseg-b", "tiny"))


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


def run_demo(*, data=None, out="demo-output", models=None, img_size=64, epochs=60, minutes=0.75,
             batch_size=8, prompt="p1", seed=0, progress=True) -> dict:
    """Returns {"rows": result rows, "table": path, "figure": path, "runs": [run folders]}."""
    from vlsm.config import ExperimentConfig
    from vlsm.evaluation.evaluate import format_results
    from vlsm.runs import RunFolder
    from vlsm.training.run import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        from vlsm.data.synthetic import make_synthetic_dataset

        data = out / "data" / "synthetic_polyp"
        if not (data / "anns").is_dir():
            print(f"generating a synthetic polyp dataset in {data} ...", flush=True)
            make_synthetic_dataset(data, seed=seed)
    models = [tuple(m.split(":", 1)) if ":" in m else (m, "paper") for m in (models or
              [f"{m}:{s}" for m, s in DEMO_MODELS])]
    rows, runs = [], []
    for name, preset in models:
        cfg = ExperimentConfig(out=str(out / "runs" / f"{name}-{preset}"))
        cfg.model.name, cfg.model.preset = name, preset
        cfg.model.overrides = {"image_size": img_size}
        cfg.data.paths = [str(data)]
        cfg.data.prompt, cfg.data.cache = prompt, True
        cfg.train.epochs, cfg.train.max_minutes, cfg.train.batch_size = epochs, minutes, batch_size
        cfg.train.lr, cfg.train.num_workers, cfg.train.seed = 3e-3, 0, seed
        cfg.train.early_stopping_patience, cfg.train.progress_bar = epochs, progress
        print(f"\n=== training {name} ({preset}) for up to {minutes:g} min ===", flush=True)
        started = time.time()
        run_dir = train(cfg, overwrite=True)
        summary = RunFolder(run_dir).read_summary()
        for r in summary["results"]:
            rows.append({**r, "label": summary["model"]["label"], "seconds": time.time() - started})
        runs.append(run_dir)
    from vlsm.evaluation.report import build_table

    table = format_results(rows)
    (out / "results.md").write_text(build_table(runs, metric="both", ci=False).to_markdown() + "\n")
    figure = _figure(runs, data, out / "comparison.png")
    print("\n" + table)
    print(f"\nrun folders: {out / 'runs'}\nfigure: {figure}\ntable: {out / 'results.md'}")
    print(f"web app: {serve_command(runs)}")
    return {"rows": rows, "table": out / "results.md", "figure": figure, "runs": runs}


def serve_command(runs) -> str:
    """The `vlsm serve` line that opens the demo's runs side by side in a browser."""
    import shlex

    return "vlsm serve " + " ".join(shlex.quote(str(r)) for r in runs) + '   (pip install "vlsm-ensemble[serve]")'


def _figure(runs, data, path: Path, n_images: int = 4) -> Path:
    from vlsm.data import load_split
    from vlsm.evaluation.figures import qualitative_from_runs

    names = [r.name for r in load_split(data, "test")[:n_images]]
    qualitative_from_runs(runs, names, path, data=[data], device="cpu", overwrite=True)
    return path


def run(args) -> int:
    run_demo(data=args.data, out=args.out, models=args.models, img_size=args.img_size, epochs=args.epochs,
             minutes=args.minutes, batch_size=args.batch_size, prompt=args.prompt, seed=args.seed)
    return 0
