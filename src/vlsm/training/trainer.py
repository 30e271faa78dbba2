"""Lightning's objects built from the experiment: the callbacks, the loggers (:mod:`vlsm.training.tracking`), the
module it fits (channels-last,
compiled) and the ``Trainer``; and the fit itself.

Both checkpoints are saved at the end of each epoch (after validation and the scheduler step), so a resumed run
starts at the next epoch. ``best.ckpt`` follows ``train.monitor`` (Dice up, losses down) and holds weights only
(``model/`` is made from it); ``last.ckpt`` has its own callback and the optimizer state too (Lightning 2.6's
``save_last`` writes it only in epochs that also improve the best one).

The debugging settings are Lightning's own: ``train.fast_dev_run`` (one batch of training and validation; Lightning
then saves no checkpoint and logs nothing), ``train.overfit_batches`` and ``train.profiler`` (its report in
``RUN/profile/``). On Apple's MPS, the operations that fall back to the CPU are named in the log
(:func:`vlsm.devices.mps_fallbacks`).
"""
from __future__ import annotations

import logging
import warnings
from typing import Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from vlsm.config import ExperimentConfig
from vlsm.devices import channels_last_convolutions, mps_error, mps_fallbacks, tune_kernels, use_channels_last
from vlsm.errors import UserError
from vlsm.runs import RunFolder
from vlsm.training.callbacks import MetricsCSV, ReloadBestEachEpoch
from vlsm.training.checkpoint_io import AtomicCheckpointIO
from vlsm.training.tracking import build_loggers

log = logging.getLogger("vlsm")


def monitor_mode(monitor: str) -> str:
    """``"max"`` for a Dice, ``"min"`` for a loss (the ModelCheckpoint/EarlyStopping mode of ``train.monitor``)."""
    return "max" if monitor.endswith("dice") else "min"


def build_callbacks(cfg: ExperimentConfig, run: RunFolder, resumed_epoch: Optional[int] = None,
                    extra: Sequence = ()) -> tuple[list, ModelCheckpoint]:
    """The run's callbacks, and among them the best checkpoint's (its score and path are the run's result);
    ``extra`` callbacks come last (after the checkpoints: they see the epoch's saved state)."""
    t = cfg.train
    mode = monitor_mode(t.monitor)
    best = ModelCheckpoint(dirpath=str(run.checkpoints_dir), filename=run.best_checkpoint.stem, monitor=t.monitor,
                           mode=mode, save_top_k=1, enable_version_counter=False, save_on_train_epoch_end=True,
                           save_weights_only=True)
    last = ModelCheckpoint(dirpath=str(run.checkpoints_dir), filename=run.last_checkpoint.stem, monitor=None,
                           save_top_k=1, every_n_epochs=1, enable_version_counter=False, save_on_train_epoch_end=True)
    callbacks = [best, last, EarlyStopping(monitor=t.monitor, mode=mode, patience=t.early_stopping_patience,
                                           min_delta=t.min_delta),
                 LearningRateMonitor(logging_interval="epoch"), MetricsCSV(run.metrics_file, resumed_epoch)]
    if t.reload_best_each_epoch:
        callbacks.append(ReloadBestEachEpoch(best, run.model_dir))
    return callbacks + list(extra), best


def fit_module(task: L.LightningModule, cfg: ExperimentConfig, accelerator: str) -> L.LightningModule:
    """The module the Trainer fits: ``task`` with its convolutions channels-last where asked, compiled where
    asked (Lightning compiles the module's forward and steps in place: checkpoints keep the original keys)."""
    tune_kernels(accelerator, cfg.train.deterministic)  # cudnn.benchmark on CUDA unless --deterministic
    if use_channels_last(cfg.train.channels_last, accelerator):  # NHWC convolutions (cuDNN's fast path)
        log.info("channels-last memory format for %d convolutions", channels_last_convolutions(task.model))
    return torch.compile(task) if cfg.train.compile else task


def build_profiler(cfg: ExperimentConfig, run: RunFolder):
    """Lightning's profiler that ``train.profiler`` names (None for none), writing its report into RUN/profile/
    (``fit-profile.txt``; the pytorch profiler adds its traces)."""
    from lightning.pytorch.profilers import AdvancedProfiler, PyTorchProfiler, SimpleProfiler

    kinds = {"simple": SimpleProfiler, "advanced": AdvancedProfiler, "pytorch": PyTorchProfiler}
    name = cfg.train.profiler
    return kinds[name](dirpath=str(run.profile_dir), filename="profile") if name else None


def build_trainer(cfg: ExperimentConfig, run: RunFolder, callbacks: list, *, accelerator: str, precision: str,
                  resume: bool, train_batches: int) -> L.Trainer:
    """Lightning's Trainer for the run (``train_batches``: the training loader's length)."""
    t = cfg.train
    return L.Trainer(
        default_root_dir=str(run.path), accelerator=accelerator, devices=t.devices, num_nodes=t.num_nodes,
        precision=precision, max_epochs=t.epochs, min_epochs=t.min_epochs or None,
        accumulate_grad_batches=t.accumulate_grad_batches,
        max_time={"minutes": t.max_minutes} if t.max_minutes else None, gradient_clip_val=t.grad_clip or None,
        callbacks=callbacks, logger=build_loggers(cfg, run, resume), log_every_n_steps=max(1, min(50, train_batches)),
        enable_progress_bar=t.progress_bar, enable_model_summary=False, deterministic=t.deterministic,
        plugins=[AtomicCheckpointIO()], limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches, num_sanity_val_steps=0, fast_dev_run=t.fast_dev_run,
        overfit_batches=t.overfit_batches or 0.0, profiler=build_profiler(cfg, run))


def fit(trainer: L.Trainer, module: L.LightningModule, data: L.LightningDataModule, ckpt_path=None) -> None:
    """``trainer.fit`` from ``ckpt_path`` (a resumed run's checkpoint, read as data unless trusted)."""
    from vlsm.models.checkpoint import checkpoints_are_trusted

    with warnings.catch_warnings():
        # Lightning nags about worker counts and small logging intervals on tiny data sets.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")
        # frozen_dropout false keeps frozen encoders in eval mode on purpose (the models' own train() does)
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")
        # (overfit_batches turns shuffling off on purpose)
        warnings.filterwarnings("ignore", message=".*requested to overfit.*")
        with mps_fallbacks(_accelerator_name(trainer), log):
            try:
                trainer.fit(module, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None,
                            weights_only=not checkpoints_are_trusted())
            except NotImplementedError as err:  # an operation MPS lacks, without PyTorch's CPU fallback
                line = mps_error(err)
                if line is None:
                    raise
                raise UserError(line) from None
    if module is not getattr(module, "_orig_mod", module):
        from lightning.pytorch.utilities.compile import to_uncompiled

        to_uncompiled(module)  # evaluation runs the plain module


def _accelerator_name(trainer: L.Trainer) -> str:
    """``"mps"`` for Lightning's MPS accelerator, else its class name in lower case."""
    name = type(trainer.accelerator).__name__.lower()
    return "mps" if name.startswith("mps") else name


__all__ = ["build_callbacks", "build_loggers", "build_profiler", "build_trainer", "fit", "fit_module", "monitor_mode"]
