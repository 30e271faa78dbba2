"""The Python API: one function per ``vlsm`` command, returning what it made (results, paths) instead of
printing. The commands in :mod:`vlsm.commands` parse their arguments, call these and print.

=========================  ==========================================================================
command                    function
=========================  ==========================================================================
``vlsm train``             :func:`train` (an experiment: :func:`experiment`)
``vlsm evaluate``          :func:`evaluate`
``vlsm predict``           :func:`predict` (its checks: :func:`plan_predictions`)
``vlsm sweep``             :func:`sweep` (its plan: :func:`plan_sweep`, :func:`shard_of`)
``vlsm tune``              :func:`tune` (its plan: :func:`plan_tune`)
``vlsm data convert``      :func:`data_convert`
``vlsm data check``        :func:`data_check`
``vlsm data synthetic``    :func:`data_synthetic`
``vlsm data prompts``      :func:`data_prompts`
``vlsm table``             :func:`table`
``vlsm figure``            :func:`figure`
``vlsm export``            :func:`export`
``vlsm bench``             :func:`bench`
``vlsm models``            :func:`models`
``vlsm convert-checkpoint``  :func:`convert_checkpoint`
``vlsm demo``              :func:`demo`
``vlsm serve``             :func:`serve`
=========================  ==========================================================================

Each function checks its values first (one ``ValueError``/:class:`vlsm.errors.UserError` line naming the
command-line flag and what is valid) and, where it reads checkpoints, takes ``trust_checkpoint`` (weights only
otherwise). Importing this module is cheap: each function imports what it needs when called.
"""
from vlsm.api.datasets import PromptListing, data_check, data_convert, data_prompts, data_synthetic
from vlsm.api.demos import DemoResult, demo
from vlsm.api.evaluation import Evaluation, evaluate
from vlsm.api.exports import Export, export
from vlsm.api.model_tools import ModelRow, bench, convert_checkpoint, models
from vlsm.api.prediction import PredictionPlan, Predictions, plan_predictions, predict
from vlsm.api.reports import TableResult, figure, learning_curve, table
from vlsm.api.sweeps import SweepItem, SweepResult, parse_shard, plan_sweep, shard_of, sweep
from vlsm.api.training import TrainResult, experiment, serve, train
from vlsm.api.tuning import TunePlan, TuneResult, plan_tune, tune

__all__ = ["DemoResult", "Evaluation", "Export", "ModelRow", "PredictionPlan", "Predictions", "PromptListing",
           "SweepItem", "SweepResult", "TableResult", "TrainResult", "TunePlan", "TuneResult", "bench",
           "convert_checkpoint", "data_check",
           "data_convert", "data_prompts", "data_synthetic", "demo", "evaluate", "experiment", "export", "figure",
           "learning_curve", "models", "parse_shard", "plan_predictions", "plan_sweep", "plan_tune", "predict", "serve", "shard_of",
           "sweep", "table", "train", "tune"]
