"""Run folders by job: :mod:`~vlsm.runs.names` (every file name vlsm writes), :mod:`~vlsm.runs.layout` (a run
folder's paths and state, the folder policy), :mod:`~vlsm.runs.results` (per_case.csv and summary.json),
:mod:`~vlsm.runs.checkpoints` (reading training checkpoints), :mod:`~vlsm.runs.loading` (a trained model from
a run), :mod:`~vlsm.runs.staging` (output moved into place only when complete) and :mod:`~vlsm.runs.claims`
(one trainer per run folder). The names below are re-exported so ``from vlsm.runs import X`` keeps working.
"""
from vlsm.runs.checkpoints import FROZEN_CHECKPOINT_KEY, MODEL_PREFIX, read_training_checkpoint
from vlsm.runs.layout import (
    DONE,
    NEW,
    RESUME,
    RunFolder,
    RunFolderError,
    prepare_run_dir,
    refuse_debug_run,
    require_writable,
)
from vlsm.runs.loading import load_trained_model
from vlsm.runs.names import PER_CASE_FILE, PREDICTIONS_MARKER, RUN_MARKER, SUMMARY_FILE, eval_name
from vlsm.runs.results import (
    EMPTY_MASK_POLICY,
    METRICS_FIELDS,
    PER_CASE_FIELDS,
    PER_CASE_REQUIRED,
    CaseResult,
    EvalResult,
    PerCaseScores,
    model_info,
    model_label,
    read_per_case,
    read_summary,
    summary_files,
    summary_label,
    write_evaluation,
    write_per_case,
    write_summary,
)

__all__ = ["DONE", "EMPTY_MASK_POLICY", "FROZEN_CHECKPOINT_KEY", "METRICS_FIELDS", "MODEL_PREFIX", "NEW",
           "PER_CASE_FIELDS", "PER_CASE_FILE", "PER_CASE_REQUIRED", "PREDICTIONS_MARKER", "RESUME", "RUN_MARKER",
           "SUMMARY_FILE", "CaseResult", "EvalResult", "PerCaseScores", "RunFolder", "RunFolderError", "eval_name",
           "load_trained_model", "model_info", "model_label", "prepare_run_dir", "read_per_case", "read_summary",
           "refuse_debug_run",
           "read_training_checkpoint", "require_writable", "summary_files", "summary_label", "write_evaluation",
           "write_per_case", "write_summary"]
