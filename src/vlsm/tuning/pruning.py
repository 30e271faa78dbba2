"""Pruning inside a Lightning run: the monitor reported to the Optuna trial after each validation, and the run
stopped, as early stopping stops it, when the study's pruner says so.

Optuna's own ``PyTorchLightningPruningCallback`` (package ``optuna-integration``) raises ``TrialPruned`` inside
``Trainer.fit``, which would leave the trial's run folder unfinished (no model, no evaluation, no model card);
this callback asks the same question (``trial.report``, ``trial.should_prune``) and stops the Trainer at the end
of the epoch instead, so a pruned trial is an ordinary finished run folder whose log says why it stopped.
"""
from __future__ import annotations

import logging
from typing import Optional

import lightning as L

log = logging.getLogger("vlsm")


class OptunaPruning(L.Callback):
    """Report ``monitor`` to ``trial`` at each epoch's validation (the step is the epoch) and stop training when the
    trial should be pruned (``pruned_epoch`` then says when; the trial's user attribute too)."""

    def __init__(self, trial, monitor: str):
        self.trial = trial
        self.monitor = monitor
        self.pruned_epoch: Optional[int] = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.pruned_epoch is not None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if not self.trial.should_prune():
            return
        self.pruned_epoch = epoch
        self.trial.set_user_attr("pruned_at_epoch", epoch)
        trainer.should_stop = True  # (after this epoch, its checkpoints saved; not before train.min_epochs)
        log.info("epoch %d: trial %d pruned (%s %.6f is worse than the study's pruner allows at this epoch); "
                 "training stops after this epoch", epoch, self.trial.number, self.monitor, float(value))


__all__ = ["OptunaPruning"]
