"""Train a model and leave a self-describing run folder (layout: :mod:`vlsm.runs`).

RUN/config.yaml  RUN/log.txt  RUN/metrics.csv  RUN/checkpoints/{best,last}.ckpt
RUN/model/ (best weights, loadable with vlsm.load_pretrained)  RUN/eval/<dataset>-<split>/  RUN/summary.json
"""
from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import torch

from vlsm.claims import DEFAULT_STALE_MINUTES, RunClaim, claim_run, wait_until_ready
from vlsm.config import ExperimentConfig
from vlsm.data import load_records
from vlsm.devices import resolve_accelerator, resolve_precision, tune_kernels, use_channels_last
from vlsm.runs import RunFolder, model_info, require_writable
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
    return create_model(m.name, pretrained=m.pretrained, preset=m.preset, variant=m.variant,
                        allow_partial_weights=cfg.train.allow_partial_weights, **m.overrides)


def check_train_config(cfg: ExperimentConfig) -> None:
    """Refuse settings that cannot train: the whole experiment checked against the schema (it may have been
    changed in Python since it was read), naming its file, plus the data and the run folder a run needs."""
    from vlsm.config import validate_config

    where = cfg.source or "config"
    validate_config(cfg.to_dict(), where)
    named = f"{cfg.source}: " if cfg.source else ""
    if not cfg.data.paths:
        raise ValueError(f"{named}no training data: give --data PATH (or data.paths in the experiment file)")
    if not cfg.out:
        raise ValueError(f"{named}no output folder: give --out RUN_DIR (or out: in the experiment file)")


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
          stale_minutes: float = DEFAULT_STALE_MINUTES, trust_checkpoint: bool = False) -> Path:
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
    """
    from vlsm.models.checkpoint import checkpoints_trusted

    check_train_config(cfg)
    if _launched_rank() != 0:
        with checkpoints_trusted(trust_checkpoint):
            return _train(cfg, resume=resume, overwrite=overwrite)
    require_writable(cfg.out, flag="--out")  # (the claim file goes beside the run folder)
    with claim_run(cfg.out, stale_minutes=stale_minutes) as claim, checkpoints_trusted(trust_checkpoint):
        if claim.took_over:
            print(f"vlsm: {claim.took_over}", file=sys.stderr, flush=True)
        return _train(cfg, resume=resume, overwrite=overwrite, claim=claim)


def _train(cfg: ExperimentConfig, *, resume: bool, overwrite: bool, claim: Optional[RunClaim] = None) -> Path:
    """:func:`train` itself, once rank 0 holds the run folder's ``claim``."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from torch.utils.data import ConcatDataset, DataLoader

    from vlsm.data import SegmentationDataset, load_split
    from vlsm.data.decoded import open_decoded_cache
    from vlsm.data.images import check_pixel_limit
    from vlsm.data.prompt_lengths import prompt_lengths
    from vlsm.devices import channels_last_convolutions, contiguous_convolutions
    from vlsm.models.checkpoint import checkpoints_are_trusted
    from vlsm.training.callbacks import MetricsCSV, ReloadBestEachEpoch, load_best_weights
    from vlsm.training.checkpoint_io import AtomicCheckpointIO
    from vlsm.training.feature_cache import FeatureCache, NumberedConcatDataset, resolve_feature_cache
    from vlsm.training.feature_cache import default_folder as feature_cache_folder
    from vlsm.training.module import SegmentationTask
    from vlsm.training.sampling import EpochShuffleSampler

    accelerator = resolve_accelerator(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, accelerator)
    run = RunFolder(cfg.out)
    rank0 = _launched_rank() == 0
    if rank0:
        # (a DDP worker that Lightning started by re-running this command leaves the folder to rank 0)
        run.check_prepare(resume=resume, overwrite=overwrite)
        if resume:
            check_resume_config(run, cfg)
    quiet_lightning()
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    model = build_model(cfg)  # fail on a bad model name before touching the run folder
    # a frozen image encoder runs once per image when that is exact (--feature-cache on a bad model: one line)
    use_feature_cache, feature_cache_why = resolve_feature_cache(cfg.train.feature_cache, model, cfg.data.augment)
    notes: list = []
    # decode once: the data check fills the on-disk cache of decoded, resized images that training reads
    pre = model.preprocess
    decoded = open_decoded_cache(cfg.data.cache_dir, pre.image_size, pre.interpolation) if cfg.data.cache else None

    # images over the pixel limit are refused by name from their headers, before anything decodes them
    listed = [load_split(path, split, class_name=cfg.data.class_name)
              for path in cfg.data.paths for split in (cfg.data.train_split, cfg.data.val_split, *cfg.eval.splits)]
    listed += [load_split(path, cfg.data.test_split, class_name=cfg.data.class_name) for path in cfg.data.test_paths]
    check_pixel_limit([r.image_path for recs in listed for r in recs], cfg.data.max_pixels, flag="--max-pixels")

    def records(paths, split, *, train_split: bool = False):
        return load_records(paths, split, cfg.data.class_name, check=cfg.data.check, skip_bad=cfg.data.skip_bad,
                            notes=notes, decoded=decoded, drop_overlap=train_split and cfg.data.drop_overlap)

    train_sets = records(cfg.data.paths, cfg.data.train_split, train_split=True)
    val_sets = records(cfg.data.paths, cfg.data.val_split)
    for sets, key in ((train_sets, "train_split"), (val_sets, "val_split")):
        if not any(recs for _, recs in sets):
            raise ValueError(
                f"the {getattr(cfg.data, key)!r} split has no images in {', '.join(cfg.data.paths)}. Set "
                f"data.{key} in the experiment file to a split that has images, or add a dataset that has "
                f"one (medvlsm's colondb_polyp and etis_polyp have empty val splits: use them with --test-data)")
    # the splits evaluated after training, checked now rather than after hours of training
    test_sets = [(path, split, records([path], split)[0]) for path in cfg.data.paths for split in cfg.eval.splits]
    test_sets += [(path, cfg.data.test_split, records([path], cfg.data.test_split)[0])
                  for path in cfg.data.test_paths]

    tokenizer = model.get_tokenizer()
    pre = model.preprocess
    eval_prompt = cfg.data.resolved_eval_prompt()

    def make(sets, *, prompt, augment):
        # the feature cache keys items by their position in the whole (pooled) set
        concat = NumberedConcatDataset if use_feature_cache else ConcatDataset
        return concat([SegmentationDataset(recs, pre, tokenizer, prompt=prompt, augment=augment,
                                                  seed=cfg.train.seed, cache=decoded or False)
                              for _, recs in sets if recs])

    train_ds = make(train_sets, prompt=cfg.data.prompt, augment=cfg.data.augment)
    val_ds = make(val_sets, prompt=eval_prompt, augment=False)
    for _, _, (_, recs) in test_sets:  # their prompts exist (the datasets themselves are built at evaluation)
        if recs:
            SegmentationDataset(recs, pre, tokenizer, prompt=eval_prompt, augment=False)

    if rank0:
        restarted = run.failed_start and not overwrite
        run.prepare(resume=resume, overwrite=overwrite)
        if claim is not None:
            claim.mark_ready()  # the job's other DDP ranks may open the folder now
    else:
        wait_until_ready(run.path)  # srun/torchrun start every rank at once: rank 0 prepares the folder
    handler = attach_log_file(run.log_file)
    feature_cache = None
    try:
        resumed_epoch = None
        ckpt_path = None
        if resume:
            ckpt_path, resumed_epoch = run.resume_checkpoint()  # may fall back to last.prev.ckpt, saying so
            log.info("resuming %s from %s (end of epoch %d)", run.path, ckpt_path.name, resumed_epoch)
        elif rank0 and restarted:
            log.info("%s held a run that stopped before its first checkpoint: starting it again", run.path)
        if claim is not None and claim.took_over:
            log.warning(claim.took_over)
        if rank0:
            run.write_config(cfg)
        for note in dict.fromkeys(notes):  # the data check ran before the log file existed
            log.warning(note)
        leakage = _leakage(cfg)
        for dataset, pairs in leakage.items():
            for pair, names in pairs.items():
                log.warning("leakage in %s: %d image(s) listed in both %s: %s", dataset, len(names),
                            pair.replace("/", " and "), ", ".join(names))
        if model.uses_text and hasattr(tokenizer, "encode"):
            lengths = prompt_lengths([r for sets in (train_sets, val_sets) for _, recs in sets for r in recs],
                                     cfg.data.prompt, tokenizer)
            (log.warning if lengths.over else log.info)("prompts: %s", lengths.describe("text encoder"))
        total, trainable = model.parameter_counts()
        log.info("model %s (%s preset): %.2f M parameters, %.2f M trainable; precision %s on %s",
                 cfg.model.name, cfg.model.preset, total / 1e6, trainable / 1e6, precision, accelerator)
        if hasattr(tokenizer, "save") and rank0:  # lets a bare .ckpt be evaluated early
            tokenizer.save(run.tokenizer_dir)
        log.info("data: %s", ", ".join(f"{n}: {len(t)} train / {len(v)} val"
                                       for (n, t), (_, v) in zip(train_sets, val_sets)))
        t = cfg.train
        nw = t.num_workers
        loader_kw = dict(num_workers=nw, persistent_workers=nw > 0, pin_memory=accelerator == "gpu")
        # the training order and the datasets' draws of an epoch follow (seed, epoch); set before fit so
        # that the workers' first prefetch (when Lightning creates the iterator) already has the right epoch
        sampler = EpochShuffleSampler(train_ds, seed=t.seed, datasets=train_ds.datasets)
        sampler.set_epoch(0 if resumed_epoch is None else resumed_epoch + 1)
        # own generators: creating a loader's iterator must not draw from the global generator
        train_loader = DataLoader(train_ds, batch_size=t.batch_size, sampler=sampler,
                                  drop_last=len(train_ds) > t.batch_size,
                                  generator=torch.Generator().manual_seed(t.seed), **loader_kw)
        val_loader = DataLoader(val_ds, batch_size=cfg.eval.batch_size, shuffle=False,
                                generator=torch.Generator().manual_seed(t.seed), **loader_kw)

        task = SegmentationTask(model, lr=t.lr, weight_decay=t.weight_decay, bce_weight=t.bce_weight,
                                dice_weight=t.dice_weight, scheduler_patience=t.scheduler_patience,
                                scheduler_factor=t.scheduler_factor, seed=t.seed, scheduler=t.scheduler,
                                dice_threshold=cfg.eval.threshold, dice_reduction=t.dice_reduction)
        log.info("feature cache: %s", feature_cache_why)
        if use_feature_cache:  # (its memory or disk use is logged when each stage's first batch arrives)
            feature_cache = FeatureCache({"train": len(train_ds), "val": len(val_ds)},
                                         feature_cache_folder(cfg.data.cache_dir))
            task.feature_cache = feature_cache
        # both saved at the end of the epoch (after validation and the scheduler step), so a resumed run
        # starts at the next epoch. The last checkpoint has its own callback: Lightning 2.6's save_last
        # writes last.ckpt only in epochs that also improve the best one.
        # the best checkpoint and early stopping follow train.monitor (Dice up, losses down)
        mode = monitor_mode(t.monitor)
        # best.ckpt holds weights only (the model/ folder is made from it); last.ckpt the optimizer state too
        ckpt = ModelCheckpoint(dirpath=str(run.checkpoints_dir), filename=run.best_checkpoint.stem, monitor=t.monitor,
                               mode=mode, save_top_k=1, enable_version_counter=False, save_on_train_epoch_end=True,
                               save_weights_only=True)
        last = ModelCheckpoint(dirpath=str(run.checkpoints_dir), filename=run.last_checkpoint.stem, monitor=None,
                               save_top_k=1, every_n_epochs=1, enable_version_counter=False,
                               save_on_train_epoch_end=True)
        callbacks = [ckpt, last, EarlyStopping(monitor=t.monitor, mode=mode, patience=t.early_stopping_patience,
                                               min_delta=t.min_delta),
                     LearningRateMonitor(logging_interval="epoch"), MetricsCSV(run.metrics_file, resumed_epoch)]
        if t.reload_best_each_epoch:
            callbacks.append(ReloadBestEachEpoch(ckpt, run.model_dir))
        tune_kernels(accelerator, t.deterministic)  # cudnn.benchmark on CUDA unless --deterministic
        if use_channels_last(t.channels_last, accelerator):  # NHWC convolutions (cuDNN's fast path)
            log.info("channels-last memory format for %d convolutions", channels_last_convolutions(task.model))
        # Lightning compiles the module's forward and steps in place: checkpoints keep the original keys
        fit_module = torch.compile(task) if t.compile else task
        trainer = L.Trainer(
            default_root_dir=str(run.path), accelerator=accelerator, devices=t.devices, num_nodes=t.num_nodes,
            precision=precision,
            max_epochs=t.epochs, min_epochs=t.min_epochs or None,
            max_time={"minutes": t.max_minutes} if t.max_minutes else None,
            gradient_clip_val=t.grad_clip or None, callbacks=callbacks, logger=_loggers(run, resume),
            log_every_n_steps=max(1, min(50, len(train_loader))), enable_progress_bar=t.progress_bar,
            enable_model_summary=False, deterministic=t.deterministic, plugins=[AtomicCheckpointIO()],
            limit_train_batches=t.limit_train_batches, limit_val_batches=t.limit_val_batches,
            num_sanity_val_steps=0)
        started = time.time()
        with warnings.catch_warnings():
            # Lightning nags about worker counts and small logging intervals on tiny data sets.
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")
            # frozen_dropout false keeps frozen encoders in eval mode on purpose
            warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")
            trainer.fit(fit_module, train_loader, val_loader, ckpt_path=str(ckpt_path) if ckpt_path else None,
                        weights_only=not checkpoints_are_trusted())  # a resumed checkpoint is data, not code
        if t.compile:
            from lightning.pytorch.utilities.compile import to_uncompiled

            to_uncompiled(task)  # evaluation runs the plain module
        if not trainer.is_global_zero:
            return run.path
        best_path = ckpt.best_model_path or str(run.last_checkpoint)
        load_best_weights(task, best_path, run.model_dir)  # (model/ when a resumed finished run pruned best.ckpt)
        model = task.model.cpu()
        contiguous_convolutions(model)  # safetensors stores plain (NCHW) tensors
        model.save_pretrained(run.model_dir)  # slim when the frozen weights come from a source
        train_info = {"epochs_run": trainer.current_epoch, "dropped_overlap": cfg.data.drop_overlap, "best_checkpoint": Path(best_path).name,
                      "monitor": t.monitor, "best_score": _float(ckpt.best_model_score), "seconds": round(time.time() - started, 1),
                      "precision": precision, "accelerator": accelerator, "devices": t.devices,
                      "parameters": {"total": total, "trainable": trainable}}
        if t.monitor == "val_dice":  # (the key model cards and older summaries know)
            train_info["best_val_dice"] = train_info["best_score"]
        evaluate_run(run, model, cfg, train_info=train_info, leakage=leakage,
                     test_sets=[(split, named) for _, split, named in test_sets])
        run.prune_checkpoints(t.keep_checkpoints)  # finished (model/ and summary.json written)
        return run.path
    finally:
        if feature_cache is not None:
            log.info("feature cache: %s; removed", feature_cache.describe())
            feature_cache.close()
            task.feature_cache = None
        detach_log_file(handler)


def _leakage(cfg: ExperimentConfig) -> dict:
    """``{dataset: {"train/test": [names], ...}}``: the images each dataset lists in two splits."""
    from vlsm.data import dataset_name
    from vlsm.data.leakage import split_overlaps

    found = {}
    for path in dict.fromkeys([*cfg.data.paths, *cfg.data.test_paths]):
        pairs = split_overlaps(path, class_name=cfg.data.class_name).to_dict()
        if pairs:
            found[dataset_name(path)] = pairs
    return found


def monitor_mode(monitor: str) -> str:
    """``"max"`` for a Dice, ``"min"`` for a loss (the ModelCheckpoint/EarlyStopping mode of ``train.monitor``)."""
    return "max" if monitor.endswith("dice") else "min"


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


def _float(v) -> Optional[float]:
    return None if v is None else float(v)


def evaluate_run(run: RunFolder, model, cfg: ExperimentConfig, *, train_info: Optional[dict] = None,
                 test_sets: Optional[list] = None, leakage: Optional[dict] = None) -> dict:
    """Evaluate on every configured split of every dataset (and extra test sets); write summary.json.

    ``test_sets``: ``[(split, (dataset name, records))]`` already loaded and checked (by :func:`train`);
    by default they are read from ``cfg``."""
    from vlsm.evaluation.evaluate import EVAL_PRECISION, evaluate_split, format_results
    from vlsm.predictor import Predictor

    run = RunFolder(run) if not isinstance(run, RunFolder) else run
    prompt = cfg.data.resolved_eval_prompt()
    device = "cuda" if resolve_accelerator(cfg.train.device) == "gpu" else "cpu"
    predictor = Predictor(model, device=device, precision=EVAL_PRECISION, batch_size=cfg.eval.batch_size)
    if test_sets is None:
        targets = [(p, s) for p in cfg.data.paths for s in cfg.eval.splits]
        targets += [(p, cfg.data.test_split) for p in cfg.data.test_paths]
        test_sets = [(split, load_records([path], split, cfg.data.class_name, check=cfg.data.check)[0])
                     for path, split in targets]
    info = model_info(model)
    results = []
    for split, (name, records) in test_sets:
        results.append(evaluate_split(predictor, records, run.eval_dir(name, split), dataset=name, split=split,
                                      prompt=prompt, threshold=cfg.eval.threshold))
    summary = run.write_run_summary(info, results, train_info, leakage=leakage)
    if run.model_dir.is_dir():  # the model card reports the results just computed
        from vlsm.model_card import write_model_card

        write_model_card(run.model_dir, summary, cfg.to_dict())
    log.info("results:\n%s", format_results([{**r, "label": info["label"]} for r in summary["results"]]))
    return summary
