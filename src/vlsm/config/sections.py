"""The sections of an experiment that other commands than ``vlsm train`` read, never written to a run's
``config.yaml``: ``search`` (``vlsm tune``'s hyperparameter search) and ``sweep`` (the runs ``vlsm sweep`` expands
one experiment into: one per seed, cross-validation fold and training fraction)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from vlsm.config.options import option

_STRICT = ConfigDict(strict=True, extra="forbid", validate_default=False)


def _seeds(values: list) -> list:
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise PydanticCustomError("choice", "must be distinct seeds of 0 or more, e.g. [0, 1, 2]")
    return values


def _fractions(values: list) -> list:
    if any(not 0 < v <= 1 for v in values) or len(set(values)) != len(values):
        raise PydanticCustomError("choice", "must be distinct fractions above 0 and at most 1, e.g. [0.1, 0.25, 0.5, 1]")
    return values


class SearchConfig(BaseModel):
    """``search``: the hyperparameter search of ``vlsm tune`` (docs/tuning.md). Only ``vlsm tune`` reads it: ``vlsm
    train`` ignores it and a run's ``config.yaml`` leaves it out (each trial's holds the values it trained with)."""

    model_config = _STRICT
    space: dict = option(default_factory=dict, help="option key -> log(a,b), uniform(a,b), int(a,b) or int(a,b,step), "
                                                    "choice(v1,v2,...) or a list of values (--space KEY=SPEC)")
    trials: int = option(20, "trials the study runs, all workers together (pruned ones count; failed ones do not)",
                         flag="--trials", ge=1)
    study: Optional[str] = option(None, "the study's name; null: the experiment's name (or its file's)", flag="--study")
    out: Optional[str] = option(None, "the study's folder: its SQLite database, one run folder per trial, best.yaml and "
                                      "the report; null: runs/tune/STUDY", flag="--out")
    storage: Optional[str] = option(None, "an Optuna storage URL (sqlite:///PATH, postgresql://..., mysql://...); "
                                          "null: SQLite in the study's folder", flag="--storage")
    sampler_seed: Optional[int] = option(None, "the TPE sampler's seed (trial N draws with seed + N); null: train.seed",
                                         flag="--sampler-seed", ge=0)
    startup_trials: int = option(10, "trials drawn at random before TPE models the results", flag="--startup-trials",
                                 ge=0)
    pruner: Literal["median", "none"] = option(
        "median", "stop a trial whose monitor is worse than the median of earlier trials at the same epoch "
                  "(Optuna's MedianPruner), or never", flag="--pruner")
    pruner_warmup: int = option(0, "epochs every trial runs before it may be pruned", flag="--pruner-warmup", ge=0)
    heartbeat: int = option(60, "seconds between a running trial's heartbeats; a trial silent for twice as long is "
                                "failed (its worker died) and resumed by the next worker", flag="--heartbeat", ge=1)
    timeout: Optional[float] = option(None, "minutes after which this worker starts no new trial", flag="--timeout",
                                      gt=0)


class SweepConfig(BaseModel):
    """``sweep``: the runs ``vlsm sweep`` makes of this experiment, one per combination of its seeds, folds and
    training fractions (run folders ``NAME-frac0.25-fold2-seed1``; docs/evaluation.md, "Seeds, folds and data
    efficiency"). Only ``vlsm sweep`` reads it: ``vlsm train`` trains the experiment's own settings, and a run's
    ``config.yaml`` holds the one seed, fold and fraction it trained with."""

    model_config = _STRICT
    seeds: Annotated[list[int], AfterValidator(_seeds)] = option(
        default_factory=list, help="one run per training seed (train.seed); empty: the experiment's train.seed",
        flag="--seeds")
    folds: Optional[int] = option(None, "one run per fold of a K-fold cross-validation on train+val (data.folds, "
                                        "data.fold 0..K-1); null: no cross-validation", flag="--folds", ge=2)
    fractions: Annotated[list[float], AfterValidator(_fractions)] = option(
        default_factory=list, help="one run per fraction of the training split (data.train_fraction; the subsets "
                                   "are nested); empty: the experiment's", flag="--fractions")


__all__ = ["SearchConfig", "SweepConfig"]
