"""Run folders: the one place that knows their layout and file formats.

A run folder (written by ``vlsm train``)::

    RUN/config.yaml              the resolved experiment
    RUN/log.txt                  the log, one learning-curve line per epoch
    RUN/metrics.csv              epoch, step, train_loss, val_loss, val_dice, lr, seconds
    RUN/checkpoints/{best,last}.ckpt   best: weights only; last: for --resume (with the optimizer state). Both slim
                                 when frozen weights come from a source (vlsm.models.frozen); once the run
                                 has finished, train.keep_checkpoints says which stay (default: last)
    RUN/.vlsm-run                the marker: this folder was made by ``vlsm train`` (``--overwrite``
                                 removes only folders that carry it)
    RUN/model/                   the best weights as a model folder (vlsm.load_pretrained)
    RUN/tokenizer/               the tokenizer files of a vision-language model
    RUN/eval/<dataset>-<split>/  per_case.csv + summary.json
    RUN/summary.json             model, training facts and every evaluation result
    RUN/logs/                    Lightning's CSV (and TensorBoard) logs

An evaluation folder (``RUN/eval/...`` or ``vlsm evaluate -o OUT``) holds ``per_case.csv`` (one
row per image, :data:`PER_CASE_FIELDS`) and ``summary.json`` (``{"model": {...}, "results":
[...]}``). Reports read exactly these files; nothing else in the package spells their names.
"""
from __future__ import annotations

import csv
import dataclasses
import errno
import io
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from vlsm.utils import write_text_atomic

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
SUMMARY_FILE = "summary.json"
PER_CASE_FILE = "per_case.csv"
#: the entry of a slim training checkpoint that names its frozen weights' source (vlsm.models.frozen)
FROZEN_CHECKPOINT_KEY = "vlsm_frozen"
#: written into every run folder at creation: --overwrite and the failed-start restart touch only such folders
RUN_MARKER = ".vlsm-run"

#: learning-curve columns of RUN/metrics.csv
METRICS_FIELDS = ("epoch", "step", "train_loss", "val_loss", "val_dice", "lr", "seconds")

EMPTY_MASK_POLICY = "empty ground truth and empty prediction score 1; one empty scores 0"

PathLike = Union[str, Path]


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (exists, unfinished, not a run...)."""


# ---------------------------------------------------------------------------------------------
# Per-case results: one row per image of per_case.csv
# ---------------------------------------------------------------------------------------------
@dataclass
class CaseResult:
    """The scores of one image (a row of ``per_case.csv``)."""

    name: str
    dice: float
    iou: float
    gt_area: int
    pred_area: int
    height: int
    width: int
    prompt: str = ""


PER_CASE_FIELDS = tuple(f.name for f in dataclasses.fields(CaseResult))
#: the columns a report needs; the others are informative
PER_CASE_REQUIRED = ("name", "dice", "iou")


def write_per_case(path: PathLike, cases: Iterable[CaseResult]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PER_CASE_FIELDS)
    writer.writeheader()
    for case in cases:
        writer.writerow(dataclasses.asdict(case))
    write_text_atomic(path, buf.getvalue())


@dataclass
class PerCaseScores:
    """What a report reads from ``per_case.csv``: image names with their Dice and IoU."""

    names: list
    dice: list
    iou: list


def read_per_case(path: PathLike) -> PerCaseScores:
    """The names, Dice and IoU of a ``per_case.csv``; any malformed line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (named by the {SUMMARY_FILE} beside it); "
                                f"re-run the evaluation or keep the eval folder with its summary")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in PER_CASE_REQUIRED if c not in header]
        if missing:
            raise ValueError(f"{path} lacks column(s) {', '.join(missing)}; expected columns "
                             f"{','.join(PER_CASE_FIELDS)}")
        names, dice, iou, seen = [], [], [], {}
        for line_no, row in enumerate(reader, start=2):
            name = (row.get("name") or "").strip()
            if not name:
                raise ValueError(f"{path} line {line_no}: empty image name")
            if name in seen:
                raise ValueError(f"{path}: image {name!r} appears twice (lines {seen[name]} and {line_no})")
            seen[name] = line_no
            try:
                d, j = float(row["dice"]), float(row["iou"])
            except (TypeError, ValueError):
                raise ValueError(f"{path} line {line_no}: dice/iou of {name!r} are not numbers "
                                 f"({row.get('dice')!r}, {row.get('iou')!r})") from None
            if not (math.isfinite(d) and math.isfinite(j)) or not (0 <= d <= 1 and 0 <= j <= 1):
                raise ValueError(f"{path} line {line_no}: dice/iou of {name!r} must be in [0, 1], "
                                 f"got {d}, {j}")
            names.append(name)
            dice.append(d)
            iou.append(j)
    if not names:
        raise ValueError(f"{path} has no images: re-run the evaluation")
    return PerCaseScores(names, dice, iou)


# ---------------------------------------------------------------------------------------------
# summary.json
# ---------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """One entry of a summary's ``results``: a model's scores on one dataset split."""

    dataset: str
    split: str
    n: int
    dice_mean: float
    dice_std: float
    iou_mean: float
    iou_std: float
    empty_gt: int
    threshold: float
    prompt: str
    per_case: str = PER_CASE_FILE  # relative to the summary.json that lists it

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def model_label(model) -> str:
    """The paper-style name of a model: "CLIPSeg-B", "UNet-D [tiny]", "CRIS (reference)"..."""
    from vlsm.models import get_entry

    spec = model.spec
    entry = get_entry(spec.name)
    label = entry.paper_name
    if spec.variant and spec.variant != entry.default_variant:
        label += f" ({spec.variant})"
    if spec.preset != "paper":
        label += f" [{spec.preset}]"
    return label


def model_info(model) -> dict:
    """The ``model`` object of a summary.json."""
    spec = model.spec
    return {"name": spec.name, "preset": spec.preset, "variant": spec.variant,
            "pretrained": spec.pretrained, "label": model_label(model)}


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def write_summary(folder: PathLike, summary: dict) -> Path:
    path = Path(folder) / SUMMARY_FILE
    write_text_atomic(path, json.dumps(summary, indent=2))
    return path


def read_summary(path: PathLike) -> dict:
    """The JSON object of a ``summary.json`` (or of the one in folder ``path``), checked for its shape."""
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run the evaluation to rewrite it") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict) \
            or not isinstance(data.get("results"), list):
        raise ValueError(f"{path} is not a vlsm summary: it needs a \"model\" object and a \"results\" "
                         f"list (written by `vlsm train` or `vlsm evaluate`)")
    return data


def summary_label(folder: PathLike) -> Optional[str]:
    """``model.label`` of the summary.json in ``folder`` (None when there is none or it is unreadable)."""
    try:
        label = read_summary(folder)["model"].get("label")
    except (OSError, ValueError):
        return None
    return str(label) if label else None


def write_evaluation(folder: PathLike, cases: Sequence[CaseResult], result: EvalResult, *, model: dict,
                     extra: Optional[dict] = None) -> EvalResult:
    """An evaluation folder: ``per_case.csv`` and a ``summary.json`` listing ``result``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_per_case(folder / PER_CASE_FILE, cases)
    result = dataclasses.replace(result, per_case=PER_CASE_FILE)
    write_summary(folder, {"model": model, "results": [result.to_dict()], "created": now(),
                           "empty_mask_policy": EMPTY_MASK_POLICY, **(extra or {})})
    return result


def summary_files(path: PathLike) -> list[Path]:
    """The summary.json files a path stands for: the file, a folder's own, or a run's eval/*/ ones."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: pass run folders written by `vlsm train`, "
                                f"evaluation folders written by `vlsm evaluate`, or their {SUMMARY_FILE}")
    if (path / SUMMARY_FILE).is_file():
        return [path / SUMMARY_FILE]
    found = sorted((path / EVAL_DIR).glob(f"*/{SUMMARY_FILE}"))
    if found:
        return found
    raise FileNotFoundError(f"{path} has no {SUMMARY_FILE} (nor {EVAL_DIR}/*/{SUMMARY_FILE}): pass a run folder "
                            f"written by `vlsm train` or an evaluation folder written by `vlsm evaluate`, "
                            f"or evaluate the run first with `vlsm evaluate`")


# ---------------------------------------------------------------------------------------------
# The run folder
# ---------------------------------------------------------------------------------------------
NEW, RESUME, DONE = "new", "resume", "done"


class RunFolder:
    """Paths and state of one run folder (see the module docstring)."""

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
    def failed_start(self) -> bool:
        """A run that stopped before its first checkpoint (no checkpoint, no summary): it can simply be
        started again."""
        return self.is_run and not self.has_checkpoint and not self.summary_file.is_file()

    @property
    def status(self) -> str:
        """``done`` (summary.json written), ``resume`` (a last checkpoint, no summary) or ``new`` (nothing,
        or a failed start, which training starts again)."""
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
        folder); a failed start (a run folder without checkpoint or summary) is started again
        without being asked; ``resume`` keeps everything."""
        self.check_prepare(resume=resume, overwrite=overwrite)
        out = self.path
        if out.exists() and any(out.iterdir()) and (overwrite or (not resume and self.failed_start)):
            shutil.rmtree(out)
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        if not self.marker_file.is_file():
            write_text_atomic(self.marker_file, json.dumps({"written_by": "vlsm train", "created": now()}) + "\n")
        return self

    def prune_checkpoints(self, keep: str) -> list[Path]:
        """After a finished run (model/ and summary.json written): keep ``"all"`` checkpoints, only ``"last"``
        (best.ckpt's weights are in model/) or ``"none"``. Returns the files removed."""
        if keep not in ("all", "last", "none"):
            raise ValueError(f"train.keep_checkpoints must be one of all, last, none; got {keep!r}")
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


def read_training_checkpoint(path: PathLike, *, mmap: bool = False) -> dict:
    """A Lightning checkpoint written by ``vlsm train`` (a dict with ``state_dict``); anything else, or a
    truncated or damaged file, is a ``ValueError`` naming the file. ``mmap`` leaves the tensors on disk
    (a cheap readability check)."""
    import pickle
    import zipfile

    from vlsm.models.checkpoint import UntrustedCheckpointError, load_torch_file

    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{path} is not a vlsm/Lightning checkpoint: the file is empty (an interrupted write?)")
    try:
        ckpt = load_torch_file(path, mmap=mmap)  # weights only, unless the user trusts the file
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path} does not exist") from None
    except UntrustedCheckpointError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, TypeError,
            AttributeError, ImportError, IndexError, KeyError, UnicodeDecodeError, OSError) as err:
        raise ValueError(f"{path} is not a vlsm/Lightning checkpoint: cannot read it ({type(err).__name__}: "
                         f"{_first_line(err)}); it is truncated, damaged or another kind of file") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        kind = type(ckpt).__name__ if not isinstance(ckpt, dict) else f"a dict without 'state_dict' (keys: " \
               f"{', '.join(map(str, list(ckpt)[:5]))})"
        raise ValueError(f"{path} is not a vlsm/Lightning checkpoint: it holds {kind}. For plain weights use a "
                         f"model folder (save_pretrained), or `vlsm convert-checkpoint` for reference-code files")
    return ckpt


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def eval_name(dataset: str, split: str, prompt: Optional[str] = None) -> str:
    return f"{dataset}-{split}" + (f"-{prompt}" if prompt else "")


def prepare_run_dir(out: PathLike, *, resume: bool, overwrite: bool) -> Path:
    """Create a run folder for training (see :meth:`RunFolder.prepare`); returns its path."""
    return RunFolder(out).prepare(resume=resume, overwrite=overwrite).path


# ---------------------------------------------------------------------------------------------
# Loading a trained model
# ---------------------------------------------------------------------------------------------
def load_trained_model(path: PathLike, map_location: str = "cpu", *, trust_checkpoint: bool = False):
    """Load a model from a run folder, its ``model/`` folder, or a Lightning ``.ckpt``.

    Returns ``(model, cfg)`` where ``cfg`` is the run's ExperimentConfig when one is found (else None).
    A checkpoint is read with ``weights_only=True``; one that needs arbitrary Python objects is refused
    unless ``trust_checkpoint`` (loading it could run code).
    """
    from vlsm.models.checkpoint import checkpoints_trusted

    with checkpoints_trusted(trust_checkpoint):
        return _load_trained_model(Path(path), map_location)


def _load_trained_model(path: Path, map_location: str):
    from vlsm.models import ModelSpec, create_model, load_pretrained
    from vlsm.models.base import SPEC_FILE
    from vlsm.models.checkpoint import load_state_dict_strict
    from vlsm.models.registry import restore_slim

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a run folder, a run's {MODEL_DIR}/ folder or a "
                                f"{CHECKPOINT_SUFFIX} file")
    if path.is_dir():
        if (path / SPEC_FILE).is_file():
            return load_pretrained(path, map_location), RunFolder(path.parent).read_config()
        run = RunFolder(path)
        if (run.model_dir / SPEC_FILE).is_file():
            return load_pretrained(run.model_dir, map_location), run.read_config()
        if run.last_checkpoint.is_file():
            raise FileNotFoundError(f"{path} is an unfinished run (no {MODEL_DIR}/ folder yet): resume it with "
                                    f"`vlsm train -c {run.config_file} --resume`, or pass "
                                    f"{run.last_checkpoint} explicitly")
        raise FileNotFoundError(f"{path} holds no trained model: expected {SPEC_FILE}, {MODEL_DIR}/{SPEC_FILE} "
                                f"or {CHECKPOINTS_DIR}/*{CHECKPOINT_SUFFIX}")
    if path.suffix != CHECKPOINT_SUFFIX:
        raise ValueError(f"{path}: expected a {CHECKPOINT_SUFFIX} checkpoint, a run folder or a model folder")
    ckpt = read_training_checkpoint(path)
    spec = (ckpt.get("hyper_parameters") or {}).get("model_spec")
    if not spec:
        raise ValueError(f"{path} is not a vlsm training checkpoint (no model_spec in hyper_parameters); "
                         f"for a reference-code checkpoint use `vlsm convert-checkpoint`")
    run = RunFolder(path.parent.parent)
    prefix = "model."  # SegmentationTask keeps the model as its `model` attribute
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if ckpt.get(FROZEN_CHECKPOINT_KEY) is not None:
        # a slim checkpoint: the frozen weights come from their sources (digest checked)
        return restore_slim(ckpt[FROZEN_CHECKPOINT_KEY], state, source=str(path)).to(map_location), run.read_config()
    # the checkpoint holds every weight: rebuild the architecture only, without backbone sources
    spec = ModelSpec.from_dict(spec).without_weights()
    # the tokenizer files sit in the run's model/ folder (or tokenizer/ while training runs)
    saved = next((d for d in (run.model_dir, run.tokenizer_dir) if d.is_dir()), None)
    model = create_model(spec.name, pretrained=None, preset=spec.preset, variant=spec.variant,
                         model_dir=str(saved) if saved else None, **spec.overrides)
    load_state_dict_strict(model, state, source=str(path), model_name=spec.name)
    return model.to(map_location), run.read_config()


__all__ = ["RunFolder", "RunFolderError", "CaseResult", "EvalResult", "PerCaseScores", "PER_CASE_FIELDS",
           "PER_CASE_REQUIRED", "METRICS_FIELDS", "RUN_MARKER", "require_writable", "load_trained_model", "read_training_checkpoint", "model_info", "model_label",
           "prepare_run_dir", "read_per_case", "read_summary", "summary_files", "summary_label",
           "write_evaluation", "write_per_case", "write_summary", "eval_name"]
