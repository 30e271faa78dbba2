"""Train a model and leave a self-describing run folder (layout: :mod:`vlsm.runs`).

RUN/config.yaml  RUN/log.txt  RUN/metrics.csv  RUN/checkpoints/{best,last}.ckpt
RUN/model/ (best weights, loadable with vlsm.load_pretrained)  RUN/eval/<dataset>-<split>/  RUN/summary.json
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Optional

import torch

from vlsm.config import ExperimentConfig
from vlsm.data import load_records
from vlsm.devices import resolve_accelerator, resolve_precision
from vlsm.runs import RunFolder, model_info
from vlsm.training.logging import attach_log_file, detach_log_file, quiet_lightning

log = logging.getLogger("vlsm")


def _loggers(run: RunFolder, resume: bool):
    from lightning.pytorch.loggers import CSVLogger

    # A resumed run logs into a new version folder instead of replacing the first part's logs.
    version = time.strftime("resumed-%Y%m%d-%H%M%S") if resume else ""
    loggers = [CSVLogger(str(run.path), name=run.logs_dir.name, version=version)]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(run.path), name="tensorboard", version=version))
    except ImportError:
        pass
    return loggers


def build_model(cfg: ExperimentConfig):
    from vlsm.models import create_model

    m = cfg.model
    return create_model(m.name, pretrained=m.pretrained, preset=m.preset, variant=m.variant, **m.overrides)


def train(cfg: ExperimentConfig, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Train the configured model; returns the run folder (with summary.json when finished)."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from torch.utils.data import ConcatDataset, DataLoader

    from vlsm.data import SegmentationDataset
    from vlsm.training.callbacks import MetricsCSV
    from vlsm.training.module import SegmentationTask

    if not cfg.data.paths:
        raise ValueError("no training data: give --data PATH (or data.paths in the experiment file)")
    if not cfg.out:
        raise ValueError("no output folder: give --out RUN_DIR (or out: in the experiment file)")
    accelerator = resolve_accelerator(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, accelerator)
    quiet_lightning()
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    model = build_model(cfg)  # fail on a bad model name before touching the run folder
    notes: list = []
    train_sets = load_records(cfg.data.paths, cfg.data.train_split, cfg.data.class_name,
                              check=cfg.data.check, skip_bad=cfg.data.skip_bad, notes=notes)
    val_sets = load_records(cfg.data.paths, cfg.data.val_split, cfg.data.class_name,
                            check=cfg.data.check, skip_bad=cfg.data.skip_bad, notes=notes)
    for sets, key in ((train_sets, "train_split"), (val_sets, "val_split")):
        if not any(recs for _, recs in sets):
            raise ValueError(
                f"the {getattr(cfg.data, key)!r} split has no images in {', '.join(cfg.data.paths)}. Set "
                f"data.{key} in the experiment file to a split that has images, or add a dataset that has "
                f"one (medvlsm's colondb_polyp and etis_polyp have empty val splits: use them with --test-data)")

    run = RunFolder(cfg.out)
    if _launched_rank() == 0:
        # (a DDP worker that Lightning started by re-running this command leaves the folder to rank 0)
        run.prepare(resume=resume, overwrite=overwrite)
    handler = attach_log_file(run.log_file)
    try:
        if _launched_rank() == 0:
            run.write_config(cfg)
        for note in notes:  # the data check ran before the log file existed
            log.warning(note)
        total, trainable = model.parameter_counts()
        log.info("model %s (%s preset): %.2f M parameters, %.2f M trainable; precision %s on %s",
                 cfg.model.name, cfg.model.preset, total / 1e6, trainable / 1e6, precision, accelerator)
        tokenizer = model.get_tokenizer()
        if hasattr(tokenizer, "save") and _launched_rank() == 0:  # lets a bare .ckpt be evaluated early
            tokenizer.save(run.tokenizer_dir)
        pre = model.preprocess

        def make(sets, *, prompt, augment):
            return ConcatDataset([SegmentationDataset(recs, pre, tokenizer, prompt=prompt, augment=augment,
                                                      seed=cfg.train.seed, cache=cfg.data.cache)
                                  for _, recs in sets if recs])

        train_ds = make(train_sets, prompt=cfg.data.prompt, augment=cfg.data.augment)
        val_ds = make(val_sets, prompt=cfg.data.resolved_eval_prompt(), augment=False)
        log.info("data: %s", ", ".join(f"{n}: {len(t)} train / {len(v)} val"
                                       for (n, t), (_, v) in zip(train_sets, val_sets)))
        nw = cfg.train.num_workers
        loader_kw = dict(num_workers=nw, persistent_workers=nw > 0, pin_memory=accelerator == "gpu")
        train_loader = DataLoader(train_ds, batch_size=cfg.train.batch_size, shuffle=True,
                                  drop_last=len(train_ds) > cfg.train.batch_size, **loader_kw)
        val_loader = DataLoader(val_ds, batch_size=cfg.eval.batch_size, shuffle=False, **loader_kw)

        t = cfg.train
        task = SegmentationTask(model, lr=t.lr, weight_decay=t.weight_decay, bce_weight=t.bce_weight,
                                dice_weight=t.dice_weight, scheduler_patience=t.scheduler_patience,
                                scheduler_factor=t.scheduler_factor)
        ckpt = ModelCheckpoint(dirpath=str(run.checkpoints_dir), filename=run.best_checkpoint.stem, monitor="val_dice",
                               mode="max", save_last=True, enable_version_counter=False,
                               # saved after the epoch, so a resumed run starts at the next epoch
                               save_on_train_epoch_end=True)
        callbacks = [ckpt, EarlyStopping(monitor="val_dice", mode="max", patience=t.early_stopping_patience),
                     LearningRateMonitor(logging_interval="epoch"), MetricsCSV(run.metrics_file)]
        trainer = L.Trainer(
            default_root_dir=str(run.path), accelerator=accelerator, devices=t.devices, precision=precision,
            max_epochs=t.epochs, max_time={"minutes": t.max_minutes} if t.max_minutes else None,
            gradient_clip_val=t.grad_clip or None, callbacks=callbacks, logger=_loggers(run, resume),
            log_every_n_steps=max(1, min(50, len(train_loader))), enable_progress_bar=t.progress_bar,
            enable_model_summary=False, deterministic=False,
            limit_train_batches=t.limit_train_batches, limit_val_batches=t.limit_val_batches,
            num_sanity_val_steps=0)
        started = time.time()
        with warnings.catch_warnings():
            # Lightning nags about worker counts and small logging intervals on tiny data sets.
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")
            trainer.fit(task, train_loader, val_loader,
                        ckpt_path=str(run.last_checkpoint) if resume else None)
        if not trainer.is_global_zero:
            return run.path
        best_path = ckpt.best_model_path or str(run.last_checkpoint)
        state = torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"]
        task.load_state_dict(state)
        model = task.model.cpu()
        model.save_pretrained(run.model_dir)
        train_info = {"epochs_run": trainer.current_epoch, "best_checkpoint": Path(best_path).name,
                      "best_val_dice": _float(ckpt.best_model_score), "seconds": round(time.time() - started, 1),
                      "precision": precision, "accelerator": accelerator, "devices": t.devices,
                      "parameters": {"total": total, "trainable": trainable}}
        evaluate_run(run, model, cfg, train_info=train_info)
        return run.path
    finally:
        detach_log_file(handler)


def _launched_rank() -> int:
    """Rank of this process when Lightning's DDP launcher started it (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) or 0)


def _float(v) -> Optional[float]:
    return None if v is None else float(v)


def evaluate_run(run: RunFolder, model, cfg: ExperimentConfig, *, train_info: Optional[dict] = None) -> dict:
    """Evaluate on every configured split of every dataset (and extra test sets); write summary.json."""
    from vlsm.evaluation.evaluate import EVAL_PRECISION, evaluate_split, format_results
    from vlsm.predictor import Predictor

    run = RunFolder(run) if not isinstance(run, RunFolder) else run
    prompt = cfg.data.resolved_eval_prompt()
    device = "cuda" if resolve_accelerator(cfg.train.device) == "gpu" else "cpu"
    predictor = Predictor(model, device=device, precision=EVAL_PRECISION, batch_size=cfg.eval.batch_size)
    targets = [(p, s) for p in cfg.data.paths for s in cfg.eval.splits]
    targets += [(p, cfg.data.test_split) for p in cfg.data.test_paths]
    info = model_info(model)
    results = []
    for path, split in targets:
        [(name, records)] = load_records([path], split, cfg.data.class_name, check=False)
        results.append(evaluate_split(predictor, records, run.eval_dir(name, split), dataset=name, split=split,
                                      prompt=prompt, threshold=cfg.eval.threshold))
    summary = run.write_run_summary(info, results, train_info)
    if run.model_dir.is_dir():  # the model card reports the results just computed
        from vlsm.model_card import write_model_card

        write_model_card(run.model_dir, summary, cfg.to_dict())
    log.info("results:\n%s", format_results([{**r, "label": info["label"]} for r in summary["results"]]))
    return summary
