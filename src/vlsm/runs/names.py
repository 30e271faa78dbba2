"""The names of the files and folders vlsm writes into run, evaluation and prediction folders: the one
place that spells them (the rest of the package asks :class:`vlsm.runs.RunFolder` or imports these).

A run folder (written by ``vlsm train``)::

    RUN/config.yaml              the resolved experiment
    RUN/log.txt                  the log, one learning-curve line per epoch
    RUN/metrics.csv              epoch, step, train_loss, val_loss, val_dice, lr, seconds
    RUN/checkpoints/{best,last}.ckpt   best: weights only; last: for --resume (with the optimizer state). Both slim
                                 when frozen weights come from a source (vlsm.models.frozen); once the run
                                 has finished, the experiment's checkpoint setting says which stay (default: last)
    RUN/.vlsm-run                the marker: this folder was made by ``vlsm train`` (``--overwrite``
                                 removes only folders that carry it)
    RUN/model/                   the best weights as a model folder (vlsm.load_pretrained)
    RUN/tokenizer/               the tokenizer files of a vision-language model
    RUN/eval/<dataset>-<split>/  per_case.csv + summary.json
    RUN/summary.json             model, training facts and every evaluation result
    RUN/logs/                    Lightning's CSV (and TensorBoard) logs
    RUN/trackers.json            the run ids of its trackers (MLflow, W&B, Comet), which ``--resume`` continues
    RUN/wandb/                   W&B's files, when the run logs to W&B
    RUN/profile/                 the profiler's report (``--profiler``)

An evaluation folder (``RUN/eval/...`` or ``vlsm evaluate -o OUT``) holds ``per_case.csv`` and
``summary.json`` (:mod:`vlsm.runs.results`); a prediction folder (``vlsm predict -o OUT``) carries
:data:`PREDICTIONS_MARKER`.
"""
from __future__ import annotations

from typing import Optional

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.txt"
METRICS_FILE = "metrics.csv"
CHECKPOINTS_DIR = "checkpoints"
BEST_CHECKPOINT = "best"  # Lightning's ModelCheckpoint file names, without ".ckpt"
LAST_CHECKPOINT = "last"
PREVIOUS_LAST_CHECKPOINT = "last.prev"  # written by older versions only; resume still falls back to it
CHECKPOINT_SUFFIX = ".ckpt"
MODEL_DIR = "model"
TOKENIZER_DIR = "tokenizer"
EVAL_DIR = "eval"
LOGS_DIR = "logs"
PROFILE_DIR = "profile"
TRACKERS_FILE = "trackers.json"
SUMMARY_FILE = "summary.json"
PER_CASE_FILE = "per_case.csv"
#: written into every run folder at creation: --overwrite and the failed-start restart touch only such folders
RUN_MARKER = ".vlsm-run"
#: written into a prediction folder vlsm created: --overwrite replaces earlier predictions only there
PREDICTIONS_MARKER = ".vlsm-predictions"


def eval_name(dataset: str, split: str, prompt: Optional[str] = None) -> str:
    """The name of an evaluation folder: ``<dataset>-<split>[-<prompt>]``."""
    return f"{dataset}-{split}" + (f"-{prompt}" if prompt else "")


__all__ = ["BEST_CHECKPOINT", "CHECKPOINTS_DIR", "CHECKPOINT_SUFFIX", "CONFIG_FILE", "EVAL_DIR", "LAST_CHECKPOINT",
           "LOGS_DIR", "LOG_FILE", "METRICS_FILE", "MODEL_DIR", "PER_CASE_FILE", "PREDICTIONS_MARKER",
           "PREVIOUS_LAST_CHECKPOINT", "PROFILE_DIR", "RUN_MARKER", "SUMMARY_FILE", "TOKENIZER_DIR", "TRACKERS_FILE",
           "eval_name"]
