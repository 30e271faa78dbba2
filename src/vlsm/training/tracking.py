"""Experiment tracking through Lightning's own loggers, chosen by ``train.loggers``: ``csv`` and ``tensorboard``
(the default, as every earlier version logged: TensorBoard's only when it is installed), ``mlflow``, ``wandb``,
``comet`` and ``neptune``.

* **Checked first**: a tracker whose package is missing is refused in one line naming the pip package
  (:func:`check_loggers`), before the run folder is touched; so is an MLflow store that MLflow refuses.
* **Where**: MLflow logs to ``train.tracking_uri`` (else ``$MLFLOW_TRACKING_URI``, else MLflow's default: a SQLite
  file ``mlflow.db`` in the working folder, or ``./mlruns`` before MLflow 3), as experiment
  ``train.tracking_project``; W&B to the project ``train.tracking_project``, its files in ``RUN/wandb`` (offline
  with ``WANDB_MODE=offline``: ``wandb sync`` uploads them later); Comet and Neptune read their own settings
  (API keys, offline modes) from their environment variables.
* **What**: each tracker's run is named after the run folder and carries the run's facts (:func:`run_facts`:
  model, preset, variant, datasets, seed, fold, folds, training fraction, split seed, experiment) as tags, and
  those with the flattened experiment (``config/train.lr``...) as parameters, so the runs of a grid can be
  filtered and compared; the epochs' metrics (``train_loss``, ``val_loss``, ``val_dice``, ``lr``...) as Lightning
  logs them; and after the evaluation each result's Dice and IoU (``test/<dataset>-<split>/dice``) and the
  best monitored score (:func:`log_results`). The CSV and TensorBoard logs are as they always were.
* **Resume**: the trackers' run ids are kept in ``RUN/trackers.json``; ``--resume`` continues the same
  MLflow, W&B or Comet run.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import time
from typing import Optional

from vlsm.config import ExperimentConfig
from vlsm.errors import UserError
from vlsm.runs import RunFolder
from vlsm.utils import write_text_atomic

log = logging.getLogger("vlsm")

#: logger name -> (the module it needs, the pip package that provides it)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"),
            "wandb": ("wandb", "wandb"), "comet": ("comet_ml", "comet-ml"), "neptune": ("neptune", "neptune")}
#: the loggers that are trackers (facts as tags and parameters, results after the evaluation)
TRACKERS = ("mlflow", "wandb", "comet", "neptune")


def _installed(name: str) -> bool:
    return importlib.util.find_spec(PACKAGES[name][0]) is not None


def check_loggers(cfg: ExperimentConfig) -> None:
    """Refuse, in one line naming ``--loggers`` and the pip package, a tracker that cannot log here."""
    for name in cfg.train.loggers:
        if name in ("csv", "tensorboard"):
            continue  # (TensorBoard's logs are written when it is installed, as always)
        if not _installed(name):
            extra = " (or the tracking extra: pip install 'vlsm-ensemble[tracking]')" if name in ("mlflow", "wandb") \
                else ""
            raise UserError(f"--loggers (train.loggers) {name}: the {PACKAGES[name][1]} package is not installed: "
                            f"pip install {PACKAGES[name][1]}{extra}, or leave {name} out of --loggers")
        if name == "neptune" and _neptune_gone():
            raise UserError("--loggers (train.loggers) neptune: this Lightning version no longer has a Neptune logger "
                            "(Neptune was sunset); leave neptune out of --loggers, or log to mlflow or wandb")
        if name == "mlflow":
            _check_mlflow_store(cfg)


def _neptune_gone() -> bool:
    from lightning.pytorch.loggers import neptune

    return not hasattr(neptune.NeptuneLogger, "log_hyperparams")


def mlflow_uri(cfg: ExperimentConfig) -> str:
    """Where MLflow logs: ``train.tracking_uri``, else MLflow's own choice ($MLFLOW_TRACKING_URI or its default)."""
    import mlflow

    return cfg.train.tracking_uri or mlflow.get_tracking_uri()


def _check_mlflow_store(cfg: ExperimentConfig) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = mlflow_uri(cfg)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"--tracking-uri (train.tracking_uri) {uri}: MLflow refuses this store: {first}") from None


def run_facts(cfg: ExperimentConfig, run: RunFolder) -> dict:
    """What every tracker's run is tagged with: the run, the model and the data it trained on."""
    from pathlib import Path

    m, d, t = cfg.model, cfg.data, cfg.train
    return {"run": run.path.name, "experiment": cfg.name or "", "model": m.name, "preset": m.preset,
            "variant": m.variant or "default", "dataset": "+".join(Path(p).name for p in d.paths),
            "test_datasets": "+".join(Path(p).name for p in d.test_paths) or "none", "seed": t.seed,
            "fold": "none" if d.fold is None else d.fold, "folds": "none" if d.folds is None else d.folds,
            "train_fraction": d.train_fraction, "split_seed": t.seed if d.split_seed is None else d.split_seed}


def _flat(values: dict, prefix: str) -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return out


def build_loggers(cfg: ExperimentConfig, run: RunFolder, resume: bool) -> list:
    """Lightning's loggers of ``train.loggers``, trackers tagged with the run's facts; a resumed run logs CSV and
    TensorBoard into a new version folder and continues its trackers' runs."""
    version = time.strftime("resumed-%Y%m%d-%H%M%S") if resume else ""
    ids = _read_ids(run) if resume else {}
    facts = run_facts(cfg, run)
    loggers, made = [], {}
    for name in cfg.train.loggers:
        logger = _BUILDERS[name](cfg, run, version, ids.get(name), facts)
        if logger is None:
            continue
        loggers.append(logger)
        if name in TRACKERS:
            if ids.get(name) is None:  # (a resumed run's parameters are logged; MLflow refuses changing them)
                logger.log_hyperparams({**facts, **_flat(cfg.to_dict(), "config/")})
            made[name] = _run_id(name, logger)
    if made:
        write_text_atomic(run.trackers_file, json.dumps({**ids, **made}, indent=2) + "\n")
    return loggers


def _read_ids(run: RunFolder) -> dict:
    try:
        ids = json.loads(run.trackers_file.read_text())
    except (OSError, ValueError):
        return {}
    return ids if isinstance(ids, dict) else {}


def _run_id(name: str, logger) -> Optional[str]:
    if name == "mlflow":
        return logger.run_id
    if name == "wandb":
        return logger.experiment.id
    if name == "comet":
        return getattr(logger, "experiment_key", None) or logger.experiment.get_key()
    return None


def _csv(cfg, run, version, _id, _facts):
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(str(run.path), name=run.logs_dir.name, version=version)


def _tensorboard(cfg, run, version, _id, _facts):
    if not _installed("tensorboard"):
        return None  # (as every earlier version: TensorBoard's logs when it is installed)
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(str(run.path), name="tensorboard", version=version)


def _mlflow(cfg, run, _version, run_id, facts):
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name=cfg.train.tracking_project, run_name=run.path.name, tracking_uri=mlflow_uri(cfg),
                        tags={k: str(v) for k, v in facts.items()}, run_id=run_id)


def _wandb(cfg, run, _version, run_id, facts):
    from lightning.pytorch.loggers import WandbLogger

    resume = {"id": run_id, "resume": "allow"} if run_id else {}
    return WandbLogger(name=run.path.name, save_dir=str(run.path), project=cfg.train.tracking_project,
                       tags=[f"{k}={v}" for k, v in facts.items() if k != "run"], **resume)


def _comet(cfg, run, _version, run_id, facts):
    from lightning.pytorch.loggers import CometLogger

    logger = CometLogger(project=cfg.train.tracking_project, experiment_key=run_id)
    logger.experiment.set_name(run.path.name)
    logger.experiment.add_tags([f"{k}={v}" for k, v in facts.items() if k != "run"])
    return logger


def _neptune(cfg, run, _version, _id, facts):
    from lightning.pytorch.loggers.neptune import NeptuneLogger

    return NeptuneLogger(project=cfg.train.tracking_project, name=run.path.name,
                         tags=[f"{k}={v}" for k, v in facts.items() if k != "run"])


_BUILDERS = {"csv": _csv, "tensorboard": _tensorboard, "mlflow": _mlflow, "wandb": _wandb, "comet": _comet,
             "neptune": _neptune}


def log_results(loggers: list, summary: dict, step: int) -> None:
    """The evaluation's means (``test/<dataset>-<split>/<metric>``) and the best monitored score to the trackers,
    then each tracker's run is closed (W&B's, so that the next run of this process starts its own)."""
    trackers = [lg for lg in loggers if _tracker_name(lg)]
    if not trackers:
        return
    metrics = {}
    for r in summary.get("results", []):
        for metric in ("dice", "iou", "hd95", "nsd"):
            if r.get(f"{metric}_mean") is not None:
                metrics[f"test/{r['dataset']}-{r['split']}/{metric}"] = float(r[f"{metric}_mean"])
    train = summary.get("train") or {}
    if train.get("best_score") is not None:
        metrics[f"best_{train.get('monitor', 'score')}"] = float(train["best_score"])
    for logger in trackers:
        logger.log_metrics(metrics, step=step)
        close_tracker(logger)


def close_tracker(logger) -> None:
    """End a tracker's run (W&B's ``finish``; the others are ended by Lightning at the end of fit)."""
    if _tracker_name(logger) == "wandb":
        logger.experiment.finish()


def _tracker_name(logger) -> Optional[str]:
    name = type(logger).__name__.lower().replace("logger", "")
    return name if name in TRACKERS else None


__all__ = ["PACKAGES", "TRACKERS", "build_loggers", "check_loggers", "close_tracker", "log_results", "mlflow_uri",
           "run_facts"]
