"""`vlsm demo`: the paper in miniature, on generated data (or your dataset) in a few minutes on a CPU.

Generates a synthetic polyp dataset in the medvlsm layout, trains UNet-D, a tiny vision-language
model and their ensemble for a bounded time each, evaluates them on the test split, prints one
comparison table and draws a qualitative figure.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# (model, preset): UNet-D, a VLSM and the ensemble of the two, all small enough for a CPU.
DEMO_MODELS = (("unet-d", "tiny"), ("biomedclipseg", "tiny"), ("biomedclipseg-a", "tiny"))


def register(sub) -> None:
    p = sub.add_parser("demo", help="train + compare UNet-D, a VLSM and their ensemble on synthetic data",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", help="a dataset folder to use instead of the generated one")
    p.add_argument("--out", default="demo-output", help="folder for the data, runs, table and figure")
    p.add_argument("--models", nargs="+", default=[f"{m}:{s}" for m, s in DEMO_MODELS],
                   help="models as NAME[:PRESET]")
    p.add_argument("--img-size", type=int, default=64, help="training/inference size")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--minutes", type=float, default=0.75, help="training time limit per model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--prompt", default="p1")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run_demo(*, data=None, out="demo-output", models=None, img_size=64, epochs=40, minutes=0.75,
             batch_size=8, prompt="p1", seed=0, progress=True) -> dict:
    """Returns {"rows": result rows, "table": path, "figure": path, "runs": [run folders]}."""
    from vlsm.evaluation.evaluate import format_results
    from vlsm.training.config import ExperimentConfig
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
        cfg.data.prompt = prompt
        cfg.train.epochs, cfg.train.max_minutes, cfg.train.batch_size = epochs, minutes, batch_size
        cfg.train.lr, cfg.train.num_workers, cfg.train.seed = 3e-3, 0, seed
        cfg.train.early_stopping_patience, cfg.train.progress_bar = epochs, progress
        print(f"\n=== training {name} ({preset}) for up to {minutes:g} min ===", flush=True)
        started = time.time()
        run_dir = train(cfg, overwrite=True)
        summary = json.loads((run_dir / "summary.json").read_text())
        for r in summary["results"]:
            rows.append({**r, "label": summary["model"]["label"], "seconds": time.time() - started})
        runs.append(run_dir)
    table = format_results(rows)
    (out / "results.md").write_text("```\n" + table + "\n```\n")
    figure = _figure(runs, data, out / "comparison.png", prompt)
    print("\n" + table)
    print(f"\nrun folders: {out / 'runs'}\nfigure: {figure}\ntable: {out / 'results.md'}")
    return {"rows": rows, "table": out / "results.md", "figure": figure, "runs": runs}


def _figure(runs, data, path: Path, prompt: str, n_images: int = 4) -> Path:
    import numpy as np

    from vlsm.data import load_image, load_mask, load_split
    from vlsm.evaluation.figures import draw_qualitative
    from vlsm.evaluation.predict import predict_records
    from vlsm.training.run import load_trained_model

    records = load_split(data, "test")[:n_images]
    images = [(r.name, np.asarray(load_image(r.image_path)), load_mask(r.mask_path)) for r in records]
    sizes = {name: gt.shape for name, _, gt in images}
    predictions = {}
    for run_dir in runs:
        model, _ = load_trained_model(run_dir)
        label = json.loads((run_dir / "summary.json").read_text())["model"]["label"]
        probs = predict_records(model, records, prompt=prompt, device="cpu", sizes=sizes)
        predictions[label] = {name: p > 0.5 for name, p in probs.items()}
    draw_qualitative(images, predictions, path)
    return path


def run(args) -> int:
    run_demo(data=args.data, out=args.out, models=args.models, img_size=args.img_size, epochs=args.epochs,
             minutes=args.minutes, batch_size=args.batch_size, prompt=args.prompt, seed=args.seed)
    return 0
