"""``vlsm train`` and ``vlsm serve`` as functions (training itself is :func:`vlsm.training.run.train`, the web
app :func:`vlsm.serve.serve`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from vlsm.runs.claims import DEFAULT_STALE_MINUTES

PathLike = Union[str, Path]


@dataclass
class TrainResult:
    """A trained run: its folder and its summary.json (None on a DDP rank other than 0, or while the run is
    unfinished)."""

    path: Path
    summary: Optional[dict] = None

    @property
    def results(self) -> list[dict]:
        """The evaluation results after training, labelled with the model's label."""
        if not self.summary:
            return []
        return [{**r, "label": self.summary["model"]["label"]} for r in self.summary["results"]]

    def table(self) -> str:
        """The results as ``vlsm train`` prints them."""
        from vlsm.evaluation.evaluate import format_results

        return format_results(self.results)


def experiment(config=None, overrides: Sequence = ()):
    """An :class:`vlsm.config.ExperimentConfig` from ``config`` (an ExperimentConfig, an experiment YAML path, a
    dict of its sections, or None for the defaults) with ``overrides`` applied: ``("section.key", value)``
    pairs or ``"section.key=value"`` texts, checked against the schema."""
    from vlsm.config import ExperimentConfig, apply_overrides, config_from_dict, load_config, parse_override

    if config is None:
        cfg = ExperimentConfig()
    elif isinstance(config, ExperimentConfig):
        cfg = config.model_copy(deep=True)
    elif isinstance(config, dict):
        cfg = config_from_dict(config)
    else:
        cfg = load_config(config)
    pairs = [parse_override(o) if isinstance(o, str) else tuple(o) for o in overrides]
    return apply_overrides(cfg, pairs, where="overrides") if pairs else cfg


def train(config=None, *, overrides: Sequence = (), resume: bool = False, overwrite: bool = False,
          stale_minutes: float = DEFAULT_STALE_MINUTES, trust_checkpoint: bool = False) -> TrainResult:
    """Train a model and evaluate it; writes a run folder (``config.out``) and returns it with its summary.

    ``config``: an ExperimentConfig, an experiment YAML file, a dict, or None (the defaults), with ``overrides``
    on top (see :func:`experiment`). ``resume`` continues an unfinished run exactly; ``overwrite`` replaces an
    earlier run folder (never any other folder). Everything is checked before the run folder is touched; see
    :func:`vlsm.training.run.train`."""
    from vlsm.runs import RunFolder
    from vlsm.training.run import train as run_training

    cfg = experiment(config, overrides)
    path = Path(run_training(cfg, resume=resume, overwrite=overwrite, stale_minutes=stale_minutes,
                             trust_checkpoint=trust_checkpoint))
    run = RunFolder(path)
    return TrainResult(path, run.read_summary() if run.summary_file.is_file() else None)


def serve(runs: Sequence[PathLike], **options):
    """The web app comparing trained ``runs``: :func:`vlsm.serve.serve` with the same keywords (``host``,
    ``port``, ``device``, ``examples``, ``max_pixels``, ``max_file_size``, ``concurrency``, ``max_queue``,
    ``auth``, ``allow_open``, ``trust_checkpoint``, ``prevent_thread_lock``)."""
    from vlsm.serve import serve as run_app

    return run_app(runs, **options)


__all__ = ["TrainResult", "experiment", "serve", "train"]
