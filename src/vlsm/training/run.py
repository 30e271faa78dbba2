"""Train → save → evaluate, leaving a self-describing run folder.

RUN/config.yaml  RUN/log.txt  RUN/metrics.csv  RUN/checkpoints/{best,last}.ckpt
RUN/model/ (best weights, loadable with vlsm.load_pretrained)  RUN/eval/<dataset>-<split>/  RUN/summary.json
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Optional

import torch

from vlsm.config import ExperimentConfig, save_config
from vlsm.utils import write_text_atomic

log = logging.getLogger("vlsm")

METRICS_FIELDS = ["epoch", "step", "train_loss", "val_loss", "val_dice", "lr", "seconds"]


class RunFolderError(ValueError):
    pass


def dataset_name(path: str) -> str:
    return Path(path).resolve().name


def prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> Path:
    """Create the run folder, refusing to clobber a previous run unless told to."""
    if out.exists() and any(out.iterdir()):
        if overwrite:
            # --overwrite replaces a previous run, never an arbitrary folder someone pointed --out at
            if not any((out / marker).exists() for marker in ("config.yaml", "checkpoints", "summary.json")):
                raise RunFolderError(f"{out} is not empty and is not a vlsm run folder (no config.yaml, "
                                     f"checkpoints/ or summary.json); --overwrite only replaces runs: "
                                     f"choose another --out")
            shutil.rmtree(out)
        elif resume:
            if not (out / "checkpoints" / "last.ckpt").is_file():
                raise RunFolderError(f"cannot resume: {out}/checkpoints/last.ckpt does not exist "
                                     f"(start a new run with another --out, or --overwrite)")
        elif (out / "summary.json").is_file():
            raise RunFolderError(f"{out} already holds a finished run (summary.json); choose another --out "
                                 f"or pass --overwrite to replace it")
        else:
            raise RunFolderError(f"{out} already exists and is not empty; pass --resume to continue the run "
                                 f"from checkpoints/last.ckpt, or --overwrite to start again")
    elif resume:
        raise RunFolderError(f"cannot resume: {out} does not exist")
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    return out


class _DropAdverts(logging.Filter):
    """Lightning advertises a cloud logger on every fit; keep it out of the console and run logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


def _quiet_lightning() -> None:
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in logger.filters):
        logger.addFilter(_DropAdverts())
    # torch's pytree deprecation inside Lightning 2.6: nothing a user can act on
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    # DDP: size-1 axes of ECA's Conv1d weight get other (equivalent) strides than DDP's buckets
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")


def _attach_log_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    for name in ("vlsm", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).addHandler(handler)
    logging.getLogger("vlsm").setLevel(logging.INFO)
    return handler


def _detach_log_file(handler: logging.Handler) -> None:
    for name in ("vlsm", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def resolve_precision(precision: str, accelerator: str) -> str:
    if precision != "auto":
        return precision
    # The paper trains in 16-bit mixed precision on GPU; CPUs train in fp32.
    return "16-mixed" if accelerator == "gpu" else "32-true"


def resolve_accelerator(device: str) -> str:
    if device in ("auto", None):
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device in ("cuda", "gpu"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but CUDA is not available here; use --device cpu")
        return "gpu"
    if device == "cpu":
        return "cpu"
    raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")


def load_records(paths, split: str, class_name=None, *, check: bool = True, skip_bad: bool = False,
                 notes: Optional[list] = None):
    """Records of one split from each dataset folder, validated by `vlsm data check` rules.

    With ``skip_bad``, files that fail the check are left out and a sentence saying which is
    appended to ``notes`` (the caller logs it into the run's log).
    """
    from vlsm.data import load_split

    per_dataset = []
    for path in paths:
        records = load_split(path, split, class_name=class_name)
        if check:
            records = _checked(path, split, records, skip_bad, notes if notes is not None else [])
        per_dataset.append((dataset_name(path), records))
    return per_dataset


def _checked(path, split, records, skip_bad, notes: list):
    from vlsm.data.check import check_dataset

    report = check_dataset(path, splits=[split])
    if report.ok:
        return records
    if not skip_bad:
        raise ValueError(f"dataset {path} failed its check:\n{report.format()}\n"
                         f"Fix the files listed, or pass --skip-bad to leave them out of this run.")
    bad = {str(Path(p).resolve()) for p in report.bad_files()}
    kept = [r for r in records if str(Path(r.image_path).resolve()) not in bad
            and (r.mask_path is None or str(Path(r.mask_path).resolve()) not in bad)]
    note = (f"--skip-bad: leaving out {len(records) - len(kept)} of {len(records)} {split} images of {path}: "
            f"{sorted(r.name for r in records if r not in kept)}")
    log.warning(note)
    notes.append(note)
    return kept


class MetricsCSV:
    """Lightning callback writing one learning-curve row per epoch to RUN/metrics.csv."""

    def __new__(cls, *args, **kwargs):  # build the Callback subclass lazily (lightning import is slow)
        import lightning as L

        class _MetricsCSV(L.Callback):
            def __init__(self, path: Path):
                self.path = path
                self.start = time.time()
                self.last_epoch = -1
                if path.is_file():  # resumed run: continue the curve
                    with path.open(newline="") as fh:
                        epochs = [int(r["epoch"]) for r in csv.DictReader(fh) if r.get("epoch")]
                    self.last_epoch = max(epochs, default=-1)

            def on_train_epoch_end(self, trainer, pl_module):
                # Lightning replays this hook when it resumes from an end-of-epoch checkpoint.
                if not trainer.is_global_zero or trainer.sanity_checking or trainer.current_epoch <= self.last_epoch:
                    return
                self.last_epoch = trainer.current_epoch
                m = trainer.callback_metrics

                def val(key):
                    v = m.get(key)
                    return f"{float(v):.6f}" if v is not None else ""

                lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else ""
                row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
                       "train_loss": val("train_loss_epoch"), "val_loss": val("val_loss"),
                       "val_dice": val("val_dice"), "lr": f"{lr:.3g}",
                       "seconds": f"{time.time() - self.start:.1f}"}
                new = not self.path.exists()
                with self.path.open("a", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=METRICS_FIELDS)
                    if new:
                        writer.writeheader()
                    writer.writerow(row)
                log.info("epoch %s: train_loss %s val_loss %s val_dice %s lr %s", row["epoch"],
                         row["train_loss"], row["val_loss"], row["val_dice"], row["lr"])

        return _MetricsCSV(*args, **kwargs)


def _loggers(run: Path, resume: bool):
    from lightning.pytorch.loggers import CSVLogger

    # A resumed run logs into a new version folder instead of replacing the first part's logs.
    version = time.strftime("resumed-%Y%m%d-%H%M%S") if resume else ""
    loggers = [CSVLogger(str(run), name="logs", version=version)]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(run), name="tensorboard", version=version))
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
    from vlsm.training.module import SegmentationTask

    if not cfg.data.paths:
        raise ValueError("no training data: give --data PATH (or data.paths in the experiment file)")
    if not cfg.out:
        raise ValueError("no output folder: give --out RUN_DIR (or out: in the experiment file)")
    accelerator = resolve_accelerator(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, accelerator)
    _quiet_lightning()
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

    if _launched_rank() > 0:
        # A DDP worker that Lightning started by re-running this command: rank 0 owns the folder.
        run = Path(cfg.out)
    else:
        run = prepare_run_dir(Path(cfg.out), resume=resume, overwrite=overwrite)
    handler = _attach_log_file(run / "log.txt")
    try:
        if _launched_rank() == 0:
            save_config(cfg, run / "config.yaml")
        for note in notes:  # the data check ran before the log file existed
            log.warning(note)
        total, trainable = model.parameter_counts()
        log.info("model %s (%s preset): %.2f M parameters, %.2f M trainable; precision %s on %s",
                 cfg.model.name, cfg.model.preset, total / 1e6, trainable / 1e6, precision, accelerator)
        tokenizer = model.get_tokenizer()
        if hasattr(tokenizer, "save") and _launched_rank() == 0:  # lets a bare .ckpt be evaluated early
            tokenizer.save(run / "tokenizer")
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
        ckpt = ModelCheckpoint(dirpath=str(run / "checkpoints"), filename="best", monitor="val_dice",
                               mode="max", save_last=True, enable_version_counter=False,
                               # saved after the epoch, so a resumed run starts at the next epoch
                               save_on_train_epoch_end=True)
        callbacks = [ckpt, EarlyStopping(monitor="val_dice", mode="max", patience=t.early_stopping_patience),
                     LearningRateMonitor(logging_interval="epoch"), MetricsCSV(run / "metrics.csv")]
        trainer = L.Trainer(
            default_root_dir=str(run), accelerator=accelerator, devices=t.devices, precision=precision,
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
                        ckpt_path=str(run / "checkpoints" / "last.ckpt") if resume else None)
        if not trainer.is_global_zero:
            return run
        best_path = ckpt.best_model_path or str(run / "checkpoints" / "last.ckpt")
        state = torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"]
        task.load_state_dict(state)
        model = task.model.cpu()
        model.save_pretrained(run / "model")
        train_info = {"epochs_run": trainer.current_epoch, "best_checkpoint": Path(best_path).name,
                      "best_val_dice": _float(ckpt.best_model_score), "seconds": round(time.time() - started, 1),
                      "precision": precision, "accelerator": accelerator, "devices": t.devices,
                      "parameters": {"total": total, "trainable": trainable}}
        evaluate_run(run, model, cfg, train_info=train_info)
        return run
    finally:
        _detach_log_file(handler)


def _launched_rank() -> int:
    """Rank of this process when Lightning's DDP launcher started it (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) or 0)


def _float(v) -> Optional[float]:
    return None if v is None else float(v)


def evaluate_run(run: Path, model, cfg: ExperimentConfig, *, train_info: Optional[dict] = None) -> dict:
    """Evaluate on every configured split of every dataset (and extra test sets); write summary.json."""
    from vlsm.evaluation.evaluate import evaluate_records, format_results, model_info, write_results

    prompt = cfg.data.resolved_eval_prompt()
    device = "cuda" if resolve_accelerator(cfg.train.device) == "gpu" else "cpu"
    results = []
    targets = [(p, s) for p in cfg.data.paths for s in cfg.eval.splits]
    targets += [(p, cfg.data.test_split) for p in cfg.data.test_paths]
    info = model_info(model)
    for path, split in targets:
        [(name, records)] = load_records([path], split, cfg.data.class_name, check=False)
        acc = evaluate_records(model, records, prompt=prompt, threshold=cfg.eval.threshold, device=device,
                               batch_size=cfg.eval.batch_size)
        sub = f"{name}-{split}"
        result = write_results(run / "eval" / sub, acc, model=info, dataset=name, split=split, prompt=prompt,
                               threshold=cfg.eval.threshold)
        result["per_case"] = f"eval/{sub}/per_case.csv"
        results.append(result)
    summary = {"model": info, "results": results, "train": train_info or {},
               "config": "config.yaml", "created": time.strftime("%Y-%m-%d %H:%M:%S"),
               "empty_mask_policy": "empty ground truth and empty prediction score 1; one empty scores 0"}
    write_text_atomic(run / "summary.json", json.dumps(summary, indent=2))
    log.info("results:\n%s", format_results([{**r, "label": info["label"]} for r in results]))
    return summary


def load_trained_model(path: str | Path, map_location: str = "cpu"):
    """Load a model from a run folder, its ``model/`` folder, or a Lightning ``.ckpt``.

    Returns ``(model, cfg)`` where ``cfg`` is the run's ExperimentConfig when one is found (else None).
    """
    from vlsm.config import load_config
    from vlsm.models.base import SPEC_FILE, load_pretrained
    from vlsm.models.registry import create_model

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a run folder, a run's model/ folder or a .ckpt file")
    if path.is_dir():
        if (path / SPEC_FILE).is_file():
            cfg_file = path.parent / "config.yaml"
            return load_pretrained(path, map_location), (load_config(cfg_file) if cfg_file.is_file() else None)
        if (path / "model" / SPEC_FILE).is_file():
            cfg_file = path / "config.yaml"
            return (load_pretrained(path / "model", map_location),
                    load_config(cfg_file) if cfg_file.is_file() else None)
        if (path / "checkpoints" / "last.ckpt").is_file():
            raise FileNotFoundError(f"{path} is an unfinished run (no model/ folder yet): resume it with "
                                    f"`vlsm train -c {path}/config.yaml --resume`, or pass "
                                    f"{path}/checkpoints/last.ckpt explicitly")
        raise FileNotFoundError(f"{path} holds no trained model: expected {SPEC_FILE}, model/{SPEC_FILE} "
                                f"or checkpoints/*.ckpt")
    if path.suffix != ".ckpt":
        raise ValueError(f"{path}: expected a .ckpt checkpoint, a run folder or a model folder")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    spec = (ckpt.get("hyper_parameters") or {}).get("model_spec")
    if spec:
        from vlsm.models.base import ModelSpec

        # the checkpoint holds every weight: rebuild the architecture only, without backbone sources
        spec = ModelSpec.from_dict(spec).without_weights().to_dict()
    if not spec:
        raise ValueError(f"{path} is not a vlsm training checkpoint (no model_spec in hyper_parameters); "
                         f"for a reference-code checkpoint use `vlsm convert-checkpoint`")
    run = path.parent.parent
    tok_dir = next((d for d in (run / "model", run / "tokenizer") if d.is_dir()), None)
    model = create_model(spec["name"], pretrained=None, preset=spec["preset"], variant=spec["variant"],
                         tokenizer_dir=str(tok_dir) if tok_dir else None, **spec["overrides"])
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state, strict=True)
    cfg_file = run / "config.yaml"
    return model, (load_config(cfg_file) if cfg_file.is_file() else None)
