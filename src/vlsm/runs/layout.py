"""Run folders: their layout (paths from :mod:`vlsm.runs.names`), their state (new, resume, done; a failed
start), the folder policy of ``vlsm train`` (prepare, never clobber what vlsm did not write), the pruning of
finished runs' checkpoints, and the folder checks every command makes before it writes."""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence, Union

from vlsm.runs.names import (
    BEST_CHECKPOINT,
    CHECKPOINT_SUFFIX,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    EVAL_DIR,
    LAST_CHECKPOINT,
    LOG_FILE,
    LOGS_DIR,
    METRICS_FILE,
    MODEL_DIR,
    PREVIOUS_LAST_CHECKPOINT,
    PROFILE_DIR,
    RUN_MARKER,
    SUMMARY_FILE,
    TOKENIZER_DIR,
    TRACKERS_FILE,
    eval_name,
)
from vlsm.runs.results import EMPTY_MASK_POLICY, EvalResult, now, read_summary, write_summary
from vlsm.utils import write_text_atomic

PathLike = Union[str, Path]


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (exists, unfinished, not a run...)."""


# ---------------------------------------------------------------------------------------------
# The run folder
# ---------------------------------------------------------------------------------------------
NEW, RESUME, DONE = "new", "resume", "done"


class RunFolder:
    """Paths and state of one run folder (the layout: :mod:`vlsm.runs.names`)."""

    def __init__(self, path: PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- paths --------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints_dir / (BEST_CHECKPOINT + CHECKPOINT_SUFFIX)

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / (LAST_CHECKPOINT + CHECKPOINT_SUFFIX)

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / TOKENIZER_DIR

    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def logs_dir(self) -> Path:
        return self.path / LOGS_DIR

    @property
    def profile_dir(self) -> Path:
        return self.path / PROFILE_DIR

    @property
    def trackers_file(self) -> Path:
        """``RUN/trackers.json``: the run ids of the run's trackers (MLflow, W&B, Comet)."""
        return self.path / TRACKERS_FILE

    def eval_dir(self, dataset: str, split: str, prompt: Optional[str] = None) -> Path:
        """``RUN/eval/<dataset>-<split>[-<prompt>]``."""
        return self.path / EVAL_DIR / eval_name(dataset, split, prompt)

    def relative(self, path: PathLike) -> str:
        """``path`` relative to the run folder, as summary.json refers to files."""
        return Path(path).relative_to(self.path).as_posix()

    @property
    def marker_file(self) -> Path:
        return self.path / RUN_MARKER

    @property
    def previous_last_checkpoint(self) -> Path:
        return self.checkpoints_dir / (PREVIOUS_LAST_CHECKPOINT + CHECKPOINT_SUFFIX)

    # -- state --------------------------------------------------------------------------------
    @property
    def is_run(self) -> bool:
        """Whether the folder was written by ``vlsm train``: it carries the marker file, or (a run of an
        older version, before the marker) has config.yaml together with summary.json or checkpoints/."""
        if self.marker_file.is_file():
            return True
        return self.config_file.is_file() and (self.summary_file.is_file() or self.checkpoints_dir.is_dir())

    @property
    def has_checkpoint(self) -> bool:
        return self.last_checkpoint.is_file() or self.previous_last_checkpoint.is_file()

    @property
    def debug(self) -> Optional[str]:
        """The debugging mode the run was trained in, from its config.yaml (``"fast_dev_run"``,
        ``"overfit_batches=3"``), or None. A debug run never counts as finished: it is never resumed, never a
        table's row, and training its folder again replaces it."""
        if not self.config_file.is_file():
            return None
        try:
            import yaml

            train = (yaml.safe_load(self.config_file.read_text()) or {}).get("train") or {}
        except (OSError, ValueError, AttributeError):  # (yaml's errors are ValueErrors; a non-mapping file)
            return None
        if not isinstance(train, dict):
            return None
        if train.get("fast_dev_run"):
            return "fast_dev_run"
        return f"overfit_batches={train['overfit_batches']}" if train.get("overfit_batches") else None

    @property
    def failed_start(self) -> bool:
        """A run that stopped before its first checkpoint (no checkpoint, no summary): it can simply be
        started again."""
        return self.is_run and not self.has_checkpoint and not self.summary_file.is_file() and not self.debug

    @property
    def status(self) -> str:
        """``done`` (summary.json written), ``resume`` (a last checkpoint, no summary) or ``new`` (nothing,
        a failed start or a debug run, which training starts again)."""
        if self.debug:
            return NEW
        if self.summary_file.is_file():
            return DONE
        if self.has_checkpoint:
            return RESUME
        return NEW

    def check_prepare(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """Raise :class:`RunFolderError` if :meth:`prepare` would refuse; changes nothing."""
        out = self.path
        if resume and overwrite:
            raise RunFolderError("--resume continues a run and --overwrite deletes it: pass only one of them")
        if out.exists() and not out.is_dir():
            raise RunFolderError(f"{out} is a file, not a folder: choose another --out")
        require_writable(out, flag="--out")
        if not (out.exists() and any(out.iterdir())):
            if resume:
                raise RunFolderError(f"cannot resume: {out} does not exist or is empty (start it without --resume)")
            return
        if not self.is_run:
            raise RunFolderError(f"{out} is not empty and is not a vlsm run folder (no {RUN_MARKER} marker, nor "
                                 f"{CONFIG_FILE} with {SUMMARY_FILE} or {CHECKPOINTS_DIR}/); vlsm never writes into "
                                 f"or removes such a folder: choose another --out")
        if overwrite:
            return
        if self.debug:
            if resume:
                raise RunFolderError(f"cannot resume {out}: it holds a debug run ({self.debug}), which is never "
                                     f"continued; run the command without --resume (it starts the run afresh)")
            return  # replaced by prepare()
        if resume:
            if not self.has_checkpoint and self.summary_file.is_file():
                raise RunFolderError(f"cannot resume: {out} has finished and its checkpoints were removed "
                                     f"(train.keep_checkpoints: none); its best weights are in {MODEL_DIR}/. Train "
                                     f"again with --overwrite or another --out")
            if not self.has_checkpoint:
                raise RunFolderError(f"cannot resume: {self.last_checkpoint} does not exist (the run stopped "
                                     f"before its first checkpoint: run the same command without --resume to "
                                     f"start it again)")
            return
        if self.summary_file.is_file():
            raise RunFolderError(f"{out} already holds a finished run ({SUMMARY_FILE}); choose another "
                                 f"--out or pass --overwrite to replace it")
        if self.has_checkpoint:
            raise RunFolderError(f"{out} already holds an unfinished run; pass --resume to continue it from "
                                 f"{CHECKPOINTS_DIR}/{LAST_CHECKPOINT}{CHECKPOINT_SUFFIX}, or --overwrite to "
                                 f"start again")

    def prepare(self, *, resume: bool = False, overwrite: bool = False) -> "RunFolder":
        """Create the folder for training, refusing to clobber a previous run unless told to.

        A new folder gets the marker file. ``overwrite`` replaces a run folder (never any other
        folder); a failed start (a run folder without checkpoint or summary) and a debug run are started
        again without being asked; ``resume`` keeps everything."""
        self.check_prepare(resume=resume, overwrite=overwrite)
        out = self.path
        debug = self.debug
        if out.exists() and any(out.iterdir()) and (overwrite or (not resume and (self.failed_start or debug))):
            if debug and not overwrite:
                import logging

                logging.getLogger("vlsm").info("%s held a debug run (%s): starting afresh", out, debug)
            shutil.rmtree(out)
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        if not self.marker_file.is_file():
            write_text_atomic(self.marker_file, json.dumps({"written_by": "vlsm train", "created": now()}) + "\n")
        return self

    def prune_checkpoints(self, keep: str) -> list[Path]:
        """After a finished run (model/ and summary.json written): keep ``"all"`` checkpoints, only ``"last"``
        (best.ckpt's weights are in model/) or ``"none"`` (``keep`` is the experiment's validated setting).
        Returns the files removed."""
        if keep == "all" or not (self.summary_file.is_file() and self.model_dir.is_dir()):
            return []
        doomed = [self.best_checkpoint, self.previous_last_checkpoint]
        if keep == "none":
            doomed.append(self.last_checkpoint)
        removed = [path for path in doomed if path.is_file()]
        for path in removed:
            path.unlink()
        return removed

    def resume_checkpoint(self) -> tuple[Path, int]:
        """The checkpoint a resumed run continues from and the epoch it ended: ``last.ckpt``, or, when that
        is missing or unreadable (a damaged disk, or a kill or a full disk while an older version wrote it), the
        previous one that older versions kept (``last.prev.ckpt``), which then becomes ``last.ckpt``."""
        import logging

        from vlsm.models.checkpoint import UntrustedCheckpointError
        from vlsm.runs.checkpoints import read_training_checkpoint

        errors = []
        for path in (self.last_checkpoint, self.previous_last_checkpoint):
            if not path.is_file():
                continue
            try:
                ckpt = read_training_checkpoint(path, mmap=True)
            except UntrustedCheckpointError:
                raise  # readable, but not without trust: never replaced by an older file
            except ValueError as err:
                errors.append(str(err))
                continue
            if path != self.last_checkpoint:
                logging.getLogger("vlsm").warning(
                    "%s; resuming from the previous checkpoint %s (epoch %s) instead",
                    errors[-1] if errors else f"{self.last_checkpoint} is missing", path.name, ckpt.get("epoch"))
                os.replace(path, self.last_checkpoint)  # the unreadable file is worthless; the good one leads
            return self.last_checkpoint, int(ckpt.get("epoch", -1))
        raise RunFolderError(f"cannot resume {self.path}: no readable checkpoint ({'; '.join(errors) or 'none found'})."
                             f" Start the run again with --overwrite")

    # -- files --------------------------------------------------------------------------------
    def read_config(self):
        """The run's ExperimentConfig, or None when it has no config.yaml."""
        from vlsm.config import load_config

        return load_config(self.config_file) if self.config_file.is_file() else None

    def write_config(self, cfg) -> None:
        from vlsm.config import save_config

        save_config(cfg, self.config_file)

    def read_summary(self) -> dict:
        return read_summary(self.summary_file)

    def write_run_summary(self, model: dict, results: Sequence[EvalResult], train: Optional[dict] = None, *,
                          leakage: Optional[dict] = None) -> dict:
        """RUN/summary.json: the model, every evaluation (``results`` written under RUN/eval/) and the
        training facts; ``leakage`` (``{dataset: {"train/test": [names]}}``, images listed in two splits)
        when there is any."""
        entries = [{**r.to_dict(), "per_case": self.relative(self.eval_dir(r.dataset, r.split) / r.per_case)}
                   for r in results]
        summary = {"model": model, "results": entries, "train": train or {},
                   "config": self.relative(self.config_file), "created": now(), "empty_mask_policy": EMPTY_MASK_POLICY}
        if leakage:
            summary["leakage"] = leakage
        self.write_summary(summary)
        return summary

    def write_summary(self, summary: dict) -> Path:
        return write_summary(self.path, summary)

    @classmethod
    def containing(cls, path: PathLike) -> Optional["RunFolder"]:
        """The run folder ``path`` is or lies in (a run, its model/ folder or one of its checkpoints)."""
        path = Path(path)
        candidates = [path] if path.is_dir() else []
        candidates += [path.parent, path.parent.parent]
        for folder in candidates:
            run = cls(folder)
            if run.config_file.is_file():
                return run
        return None


def refuse_debug_run(path: PathLike) -> None:
    """Refuse, in one line, results that lie in a debug run's folder (``path``: the run, its summary.json or one of
    its evaluation folders): a fast-dev-run or overfit run is no result."""
    path = Path(path)
    for folder in ([path] if path.is_dir() else []) + list(path.parents)[:3]:
        run = RunFolder(folder)
        if run.config_file.is_file():
            if run.debug:
                raise RunFolderError(f"{folder} is a debug run ({run.debug}): its scores are no results; train it "
                                     f"again without --fast-dev-run/--overfit-batches")
            return


def require_writable(folder: PathLike, *, flag: str = "-o") -> None:
    """Refuse an output folder this process cannot create or write into (checked before any work)."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"cannot write {folder}: {existing} is a file, not a folder; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"cannot write {folder}: permission denied", str(folder))


def prepare_run_dir(out: PathLike, *, resume: bool, overwrite: bool) -> Path:
    """Create a run folder for training (see :meth:`RunFolder.prepare`); returns its path."""
    return RunFolder(out).prepare(resume=resume, overwrite=overwrite).path


__all__ = ["DONE", "NEW", "RESUME", "RunFolder", "RunFolderError", "prepare_run_dir", "refuse_debug_run",
           "require_writable"]
