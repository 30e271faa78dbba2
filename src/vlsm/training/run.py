"""Train a model and leave a self-describing run folder (layout: :mod:`vlsm.runs`).

RUN/config.yaml  RUN/log.txt  RUN/metrics.csv  RUN/checkpoints/{best,last}.ckpt
RUN/model/ (best weights, loadable with vlsm.load_pretrained)  RUN/eval/<dataset>-<split>/  RUN/summary.json

:func:`train` is the list of steps; the data are a ``LightningDataModule`` (:mod:`vlsm.training.datamodule`),
the callbacks and the Trainer are built from the experiment (:mod:`vlsm.training.trainer`).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Optional, Sequence

from vlsm.claims import DEFAULT_STALE_MINUTES, RunClaim, claim_run, wait_until_ready
from vlsm.config import ExperimentConfig
from vlsm.devices import resolve_accelerator, resolve_precision
from vlsm.runs import RunFolder, model_info, require_writable
from vlsm.training.logging import RunLog, quiet_lightning

log = logging.getLogger("vlsm")


def build_model(cfg: ExperimentConfig):
    from vlsm.models import create_model

    m = cfg.model
    return create_model(m.name, pretrained=m.pretrained, preset=m.preset, variant=m.variant,
                        allow_partial_weights=cfg.train.allow_partial_weights, **m.overrides)


def check_train_config(cfg: ExperimentConfig) -> None:
    """Refuse settings that cannot train: the whole experiment checked against the schema (it may have been
    changed in Python since it was read), naming its file, plus the data and the run folder a run needs."""
    from vlsm.config import validate_config

    validate_config(cfg.to_dict(), cfg.source or "config")
    named = f"{cfg.source}: " if cfg.source else ""
    if not cfg.data.paths:
        raise ValueError(f"{named}no training data: give --data PATH (or data.paths in the experiment file)")
    if not cfg.out:
        raise ValueError(f"{named}no output folder: give --out RUN_DIR (or out: in the experiment file)")
    from vlsm.training.tracking import check_loggers

    check_loggers(cfg)  # (a tracker whose package is missing: one line naming it)


def check_resume_config(run: RunFolder, cfg: ExperimentConfig) -> None:
    """A resumed run computes what its config.yaml says: a setting that would change it is refused."""
    from vlsm.config import config_changes, resumable_keys

    stored = run.read_config()
    if stored is None:
        return  # a run of an older version without config.yaml: nothing to compare with
    resumable = resumable_keys()
    changes = config_changes(stored, cfg, ignore=resumable)
    if changes:
        raise ValueError(f"--resume continues {run.path} as its {run.config_file.name} says, but this command "
                         f"changes {len(changes)} setting(s): {'; '.join(changes)}. Resume with the same settings "
                         f"(e.g. `vlsm train -c {run.config_file} --resume`; only "
                         f"{', '.join(k for k in resumable if '.' in k)} may change), or start a new run "
                         f"with another --out")


def train(cfg: ExperimentConfig, *, resume: bool = False, overwrite: bool = False,
          stale_minutes: float = DEFAULT_STALE_MINUTES, trust_checkpoint: bool = False,
          callbacks: Sequence = ()) -> Path:
    """Train the configured model; returns the run folder (with summary.json when finished).

    Everything is checked before the run folder is touched: the settings, the model, and every dataset
    split that will be read (train, val, test and the extra test sets, by the rules of ``vlsm data
    check``). A folder left by a failed start (no checkpoint, no summary) is started again; an
    existing run needs ``resume`` or ``overwrite``. Resuming continues from ``checkpoints/last.ckpt``
    (or the previous one if that is unreadable) and reproduces the uninterrupted run exactly on a CPU:
    the order, the datasets' draws and the global generators depend on (seed, epoch) only.

    The run folder is claimed first (:mod:`vlsm.claims`): while another live process trains it, this
    raises :class:`~vlsm.claims.RunClaimedError`; a stale claim (``stale_minutes``) is taken over. The
    claim is released however training ends, SIGTERM included. In a DDP job only global rank 0 claims
    and prepares the folder; the other ranks wait until it is ready.

    Checkpoints (``--resume``, the best weights) and pickled weight files are read with
    ``weights_only=True``; ``trust_checkpoint`` allows files that need arbitrary Python objects.
    ``callbacks``: more Lightning callbacks for the Trainer (``vlsm tune``'s pruning). A ``train.fast_dev_run``
    run stops after its one batch each of training and validation: no model/, no evaluation (a debug run).
    """
    from vlsm.models.checkpoint import checkpoints_trusted

    check_train_config(cfg)
    # (records logged before the run folder exists reach its log.txt once it does)
    with RunLog() as run_log, checkpoints_trusted(trust_checkpoint):
        if cfg.sweep.seeds or cfg.sweep.folds or cfg.sweep.fractions:
            log.warning("the experiment's sweep: section (one run per seed, fold and fraction) is vlsm sweep's; this "
                        "trains one run: train.seed %s, data.fold %s, data.train_fraction %g", cfg.train.seed,
                        cfg.data.fold, cfg.data.train_fraction)
        if _launched_rank() != 0:
            return _train(cfg, run_log, resume=resume, overwrite=overwrite, extra_callbacks=callbacks)
        require_writable(cfg.out, flag="--out")  # (the claim file goes beside the run folder)
        with claim_run(cfg.out, stale_minutes=stale_minutes) as claim:
            if claim.took_over:
                log.warning(claim.took_over)
            return _train(cfg, run_log, resume=resume, overwrite=overwrite, claim=claim, extra_callbacks=callbacks)


def _train(cfg: ExperimentConfig, run_log: RunLog, *, resume: bool, overwrite: bool,
           claim: Optional[RunClaim] = None, extra_callbacks: Sequence = ()) -> Path:
    """:func:`train` itself, once rank 0 holds the run folder's ``claim``."""
    import lightning as L

    from vlsm.training.datamodule import SegmentationDataModule
    from vlsm.training.feature_cache import resolve_feature_cache
    from vlsm.training.module import SegmentationTask
    from vlsm.training.trainer import build_callbacks, build_trainer, fit, fit_module

    accelerator = resolve_accelerator(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, accelerator)
    run = RunFolder(cfg.out)
    if _launched_rank() == 0:  # (a DDP worker that Lightning started by re-running this command leaves it to rank 0)
        run.check_prepare(resume=resume, overwrite=overwrite)
        if resume:
            check_resume_config(run, cfg)
    quiet_lightning()
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    model = build_model(cfg)  # fail on a bad model name before touching the run folder
    # a frozen image encoder runs once per image when that is exact (--feature-cache on a bad model: one line)
    cached, why = resolve_feature_cache(cfg.train.feature_cache, model, cfg.data.augment)
    data = SegmentationDataModule(cfg, model, feature_cache=cached, accelerator=accelerator)
    data.setup("fit")  # every split read and checked, and the datasets built, before the run folder is touched
    ckpt_path, resumed_epoch = _open_run(run, cfg, run_log, resume=resume, overwrite=overwrite, claim=claim)
    task = SegmentationTask.from_config(model, cfg)
    _log_start(run, cfg, model, data, precision=precision, accelerator=accelerator)
    log.info("feature cache: %s", why)
    task.feature_cache = data.open_feature_cache() if cached else None  # (its use is logged as it fills)
    trainer = None
    try:
        data.start_epoch = 0 if resumed_epoch is None else resumed_epoch + 1
        callbacks, best = build_callbacks(cfg, run, resumed_epoch, extra=extra_callbacks)
        module = fit_module(task, cfg, accelerator)
        trainer = build_trainer(cfg, run, callbacks, accelerator=accelerator, precision=precision, resume=resume,
                                train_batches=data.train_batches())
        started = time.time()
        fit(trainer, module, data, ckpt_path)
        if trainer.is_global_zero and trainer.fast_dev_run:
            log.info("fast_dev_run: one training and one validation batch ran; a debug run keeps no checkpoint, "
                     "model or results")
        elif trainer.is_global_zero:
            facts = {"seconds": round(time.time() - started, 1), "precision": precision, "accelerator": accelerator}
            _finish(run, cfg, task, trainer, best, data, facts)
        return run.path
    except BaseException:
        _close_trackers(trainer)  # (a W&B run left open would take the next run's logs)
        raise
    finally:
        if task.feature_cache is not None:
            log.info("feature cache: %s; removed", task.feature_cache.describe())
            task.feature_cache.close()
            task.feature_cache = None


def _close_trackers(trainer) -> None:
    from vlsm.training.tracking import close_tracker

    for logger in getattr(trainer, "loggers", None) or ():
        close_tracker(logger)


def _open_run(run: RunFolder, cfg: ExperimentConfig, run_log: RunLog, *, resume: bool, overwrite: bool,
              claim: Optional[RunClaim]) -> tuple[Optional[Path], Optional[int]]:
    """Prepare the run folder (rank 0; the other DDP ranks wait for it), attach its log, write config.yaml;
    returns the checkpoint to resume from and its epoch (None, None for a new run)."""
    rank0 = _launched_rank() == 0
    if rank0:
        restarted = run.failed_start and not overwrite
        run.prepare(resume=resume, overwrite=overwrite)
        if claim is not None:
            claim.mark_ready()  # the job's other DDP ranks may open the folder now
    else:
        wait_until_ready(run.path)  # srun/torchrun start every rank at once: rank 0 prepares the folder
    run_log.attach(run.log_file)
    ckpt_path = resumed_epoch = None
    if resume:
        ckpt_path, resumed_epoch = run.resume_checkpoint()  # may fall back to last.prev.ckpt, saying so
        log.info("resuming %s from %s (end of epoch %d)", run.path, ckpt_path.name, resumed_epoch)
    elif rank0 and restarted:
        log.info("%s held a run that stopped before its first checkpoint: starting it again", run.path)
    if rank0:
        run.write_config(cfg)
    return ckpt_path, resumed_epoch


def _log_start(run: RunFolder, cfg: ExperimentConfig, model, data, *, precision: str, accelerator: str) -> None:
    """What the log says before the first epoch: prompt lengths, the model, the data; the tokenizer saved (so
    that a bare .ckpt can be evaluated early)."""
    from vlsm.data.prompt_lengths import prompt_lengths

    tokenizer = data.tokenizer
    if model.uses_text and hasattr(tokenizer, "encode"):
        records = [r for split in (cfg.data.train_split, cfg.data.val_split) for recs in data.records(split)
                   for r in recs]
        lengths = prompt_lengths(records, cfg.data.prompt, tokenizer)
        (log.warning if lengths.over else log.info)("prompts: %s", lengths.describe("text encoder"))
    total, trainable = model.parameter_counts()
    log.info("model %s (%s preset): %.2f M parameters, %.2f M trainable; precision %s on %s",
             cfg.model.name, cfg.model.preset, total / 1e6, trainable / 1e6, precision, accelerator)
    if hasattr(tokenizer, "save") and _launched_rank() == 0:
        tokenizer.save(run.tokenizer_dir)
    log.info("data: %s", data.describe())


def _finish(run: RunFolder, cfg: ExperimentConfig, task, trainer, best, data, facts: dict) -> None:
    """Rank 0 after fit: the best weights into ``model/``, the evaluations, summary.json and the model card,
    then the checkpoints ``train.keep_checkpoints`` does not keep."""
    from vlsm.devices import contiguous_convolutions
    from vlsm.training.callbacks import load_best_weights
    from vlsm.training.tracking import log_results

    best_path = best.best_model_path or str(run.last_checkpoint)
    load_best_weights(task, best_path, run.model_dir)  # (model/ when a resumed finished run pruned best.ckpt)
    model = task.model.cpu()
    contiguous_convolutions(model)  # safetensors stores plain (NCHW) tensors
    model.save_pretrained(run.model_dir)  # slim when the frozen weights come from a source
    total, trainable = model.parameter_counts()
    score = None if best.best_model_score is None else float(best.best_model_score)
    train_info = {"epochs_run": trainer.current_epoch, **data.summary_facts(), "best_checkpoint": Path(best_path).name,
                  "monitor": cfg.train.monitor, "best_score": score, "seconds": facts["seconds"],
                  "precision": facts["precision"], "accelerator": facts["accelerator"], "devices": cfg.train.devices,
                  "parameters": {"total": total, "trainable": trainable}}
    if cfg.train.monitor == "val_dice":  # (the key model cards and older summaries know)
        train_info["best_val_dice"] = score
    summary = _evaluate(run, model, cfg, data, train_info)
    run.prune_checkpoints(cfg.train.keep_checkpoints)  # finished (model/ and summary.json written)
    log_results(trainer.loggers, summary, trainer.global_step)  # (the trackers: the results, then their runs end)


def _evaluate(run: RunFolder, model, cfg: ExperimentConfig, data, train_info: dict) -> dict:
    """Evaluate on every configured split of every dataset (and the extra test sets) through the one evaluation
    path (:func:`vlsm.evaluation.evaluate_targets`); write summary.json and the model card."""
    from vlsm.evaluation.evaluate import EVAL_PRECISION, EvalTarget, evaluate_targets, format_results
    from vlsm.evaluation.postprocessing import choose_after_training
    from vlsm.model_card import write_model_card
    from vlsm.predictor import Predictor

    device = "cuda" if resolve_accelerator(cfg.train.device) == "gpu" else "cpu"
    predictor = Predictor(model, device=device, precision=EVAL_PRECISION, batch_size=cfg.eval.batch_size,
                          tta=cfg.eval.tta)
    # the threshold and post-processing chosen on validation (recorded; the evaluations apply them)
    choice = choose_after_training(predictor, cfg, [r for recs in data.records(cfg.data.val_split) for r in recs])
    if choice is not None:
        train_info["postprocessing"] = choice.to_dict()
    prompt = cfg.data.resolved_eval_prompt()
    targets = [EvalTarget(name, split, records, prompt, predictor.threshold, run.eval_dir(name, split),
                          boundary=cfg.eval.boundary_metrics, nsd_tolerance=cfg.eval.nsd_tolerance)
               for name, split, records in data.eval_sets()]
    info = model_info(model)
    summary = run.write_run_summary(info, evaluate_targets(predictor, targets), train_info, leakage=data.leakage())
    write_model_card(run.model_dir, summary, cfg.to_dict())  # (it reports the results just computed)
    log.info("results:\n%s", format_results([{**r, "label": info["label"]} for r in summary["results"]]))
    return summary


def _launched_rank(environ=None) -> int:
    """Global rank of this process in a DDP job (0 when it is not one), read from the environment the way
    Lightning's cluster environments read it: SLURM's task rank when srun started the processes (not in
    an interactive ``bash`` job), torchrun's ``RANK``, else Lightning's own launcher, which re-runs the
    command with ``NODE_RANK`` (``GROUP_RANK``) and ``LOCAL_RANK``. (``LOCAL_RANK`` alone is 0 on every
    node's first process, so it cannot say who prepares the run folder.)"""
    env = os.environ if environ is None else environ
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return int(env.get("SLURM_PROCID") or 0)
    if env.get("TORCHELASTIC_RUN_ID") and "RANK" in env:
        return int(env["RANK"])
    node, local = int(env.get("NODE_RANK", env.get("GROUP_RANK", 0)) or 0), int(env.get("LOCAL_RANK", 0) or 0)
    per_node = int(env.get("LOCAL_WORLD_SIZE", 0) or 0) or local + 1  # (any value > 0 keeps node > 0 nonzero)
    return node * per_node + local
