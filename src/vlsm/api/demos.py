"""``vlsm demo`` as a function: the paper in miniature, on generated data (or your dataset), in minutes on a CPU.

Generates a synthetic polyp dataset in the medvlsm layout, trains UNet-D, a tiny vision-language model and
their ensemble for a bounded time each, evaluates them on the test split, writes one comparison table and a
qualitative figure.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from vlsm.api._common import Echo, quiet

PathLike = Union[str, Path]

# (model, preset): UNet-D, a VLSM and the ensemble of the two, all small enough for a CPU.
DEMO_MODELS = (("unet-d", "tiny"), ("clipseg", "tiny"), ("clipseg-b", "tiny"))
#: the demo's learning rate: higher than the paper's, for a few minutes of training
DEMO_LR = 3e-3


@dataclass
class DemoResult:
    """What :func:`demo` made: result rows (with each run's label and seconds), the run folders, the results
    table (``results.md``) and the figure (``comparison.png``)."""

    rows: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    table: Optional[Path] = None
    figure: Optional[Path] = None

    def serve_command(self) -> str:
        """The `vlsm serve` line that opens the demo's runs side by side in a browser."""
        return serve_command(self.runs)


def serve_command(runs: Sequence[PathLike]) -> str:
    """The `vlsm serve` line that opens ``runs`` side by side in a browser."""
    return "vlsm serve " + " ".join(shlex.quote(str(r)) for r in runs) + '   (pip install "vlsm-ensemble[serve]")'


def demo_config(name: str, preset: str, data: PathLike, out: PathLike, *, img_size: int = 64, epochs: int = 60,
                minutes: float = 0.75, batch_size: int = 8, prompt: str = "p1", seed: int = 0,
                progress: bool = True):
    """The experiment of one demo run: what ``vlsm train`` runs when given these flags (no early stopping
    within ``epochs``; ``minutes`` bounds the time)."""
    from vlsm.config import ExperimentConfig, all_options, apply_overrides

    flags = {"--out": str(out), "--model": name, "--preset": preset, "--data": [str(data)], "--prompt": prompt,
             "--cache": True, "--epochs": epochs, "--max-minutes": minutes, "--batch-size": batch_size,
             "--lr": DEMO_LR, "--num-workers": 0, "--seed": seed, "--patience": epochs, "--progress": progress}
    keys: dict = {}
    for key, option in all_options().items():
        for flag in option.flags:
            keys.setdefault(flag, key)  # a flag two options share (--batch-size) is training's, as in vlsm train
    pairs = [(keys[flag], value) for flag, value in flags.items()]
    pairs.append(("model.overrides", {"image_size": img_size}))
    return apply_overrides(ExperimentConfig(), pairs, where="vlsm demo")


def demo(*, data: Optional[PathLike] = None, out: PathLike = "demo-output", models: Optional[Sequence[str]] = None,
         img_size: int = 64, epochs: int = 60, minutes: float = 0.75, batch_size: int = 8, prompt: str = "p1",
         seed: int = 0, progress: bool = True, echo: Optional[Echo] = None) -> DemoResult:
    """Train, evaluate and compare ``models`` (``"NAME[:PRESET]"``; default UNet-D, CLIPSeg and CLIPSeg-B,
    tiny) on ``data`` (default: a synthetic polyp dataset generated in ``out/data``), each for at most
    ``minutes``; writes ``out/runs/<name>-<preset>/``, ``out/results.md`` and ``out/comparison.png``.
    Progress goes to ``echo`` (default: the ``vlsm`` logger)."""
    from vlsm.evaluation.report import build_table
    from vlsm.runs import RunFolder
    from vlsm.training.run import train
    from vlsm.utils import write_text_atomic

    echo = echo or quiet
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(data) if data is not None else _synthetic(out, seed, echo)
    chosen = [tuple(m.split(":", 1)) if ":" in m else (m, "paper")
              for m in (models or [f"{m}:{s}" for m, s in DEMO_MODELS])]
    result = DemoResult()
    for name, preset in chosen:
        cfg = demo_config(name, preset, data, out / "runs" / f"{name}-{preset}", img_size=img_size, epochs=epochs,
                          minutes=minutes, batch_size=batch_size, prompt=prompt, seed=seed, progress=progress)
        echo(f"\n=== training {name} ({preset}) for up to {minutes:g} min ===")
        started = time.time()
        run_dir = train(cfg, overwrite=True)
        summary = RunFolder(run_dir).read_summary()
        for r in summary["results"]:
            result.rows.append({**r, "label": summary["model"]["label"], "seconds": time.time() - started})
        result.runs.append(run_dir)
    result.table = out / "results.md"
    write_text_atomic(result.table, build_table(result.runs, metric="both", ci=False).to_markdown() + "\n")
    result.figure = _figure(result.runs, data, out / "comparison.png")
    return result


def _synthetic(out: Path, seed: int, echo: Echo) -> Path:
    from vlsm.data.synthetic import make_synthetic_dataset

    data = out / "data" / "synthetic_polyp"
    if not (data / "anns").is_dir():
        echo(f"generating a synthetic polyp dataset in {data} ...")
        make_synthetic_dataset(data, seed=seed)
    return data


def _figure(runs, data, path: Path, n_images: int = 4) -> Path:
    from vlsm.data import load_split
    from vlsm.evaluation.figures import qualitative_from_runs

    names = [r.name for r in load_split(data, "test")[:n_images]]
    qualitative_from_runs(runs, names, path, data=[data], device="cpu", overwrite=True)
    return path


__all__ = ["DEMO_MODELS", "DemoResult", "demo", "demo_config", "serve_command"]
