"""The results schema: ``per_case.csv`` (one row per image), ``summary.json`` (the model and its results)
and the learning-curve columns of ``metrics.csv``.

An evaluation folder (``RUN/eval/<dataset>-<split>/`` or ``vlsm evaluate -o OUT``) holds exactly these
two files; reports read them through this module and nothing else in the package spells their names.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from vlsm.runs.names import EVAL_DIR, PER_CASE_FILE, SUMMARY_FILE
from vlsm.utils import write_text_atomic

#: learning-curve columns of RUN/metrics.csv
METRICS_FIELDS = ("epoch", "step", "train_loss", "val_loss", "val_dice", "lr", "seconds")

EMPTY_MASK_POLICY = "empty ground truth and empty prediction score 1; one empty scores 0"

PathLike = Union[str, Path]


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
    hd95: Optional[float] = None  # boundary metrics (evaluation with boundary metrics on), after the others
    nsd: Optional[float] = None


#: the columns every per_case.csv has, in this order
PER_CASE_FIELDS = ("name", "dice", "iou", "gt_area", "pred_area", "height", "width", "prompt")
#: the boundary metrics' columns, after those, when the evaluation computed them (HD95 in pixels or mm)
BOUNDARY_FIELDS = ("hd95", "nsd")
#: the columns a report needs; the others are informative
PER_CASE_REQUIRED = ("name", "dice", "iou")


def write_per_case(path: PathLike, cases: Iterable[CaseResult]) -> None:
    """``per_case.csv``: a header of :data:`PER_CASE_FIELDS` (and :data:`BOUNDARY_FIELDS` when the cases have
    boundary metrics), one row per image (written atomically)."""
    cases = list(cases)
    boundary = bool(cases) and all(c.hd95 is not None and c.nsd is not None for c in cases)
    fields = PER_CASE_FIELDS + (BOUNDARY_FIELDS if boundary else ())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for case in cases:
        writer.writerow(dataclasses.asdict(case))
    write_text_atomic(path, buf.getvalue())


@dataclass
class PerCaseScores:
    """What a report reads from ``per_case.csv``: image names with their Dice and IoU, and their HD95 and NSD
    when the file has those columns (else None)."""

    names: list
    dice: list
    iou: list
    hd95: Optional[list] = None
    nsd: Optional[list] = None


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
        boundary = all(c in header for c in BOUNDARY_FIELDS)
        scores, seen = PerCaseScores([], [], [], [] if boundary else None, [] if boundary else None), {}
        for line_no, row in enumerate(reader, start=2):
            name, d, j = _case_row(path, line_no, row, seen)
            scores.names.append(name)
            scores.dice.append(d)
            scores.iou.append(j)
            if boundary:
                hd, surface = _boundary_row(path, line_no, name, row)
                scores.hd95.append(hd)
                scores.nsd.append(surface)
    if not scores.names:
        raise ValueError(f"{path} has no images: re-run the evaluation")
    return scores


def _case_row(path: Path, line_no: int, row: dict, seen: dict) -> tuple[str, float, float]:
    """One checked row of a per_case.csv: its name, Dice and IoU."""
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
        raise ValueError(f"{path} line {line_no}: dice/iou of {name!r} must be in [0, 1], got {d}, {j}")
    return name, d, j


def _boundary_row(path: Path, line_no: int, name: str, row: dict) -> tuple[float, float]:
    """The checked HD95 (finite, at least 0) and NSD (in [0, 1]) of one row."""
    try:
        hd, surface = float(row["hd95"]), float(row["nsd"])
    except (TypeError, ValueError):
        raise ValueError(f"{path} line {line_no}: hd95/nsd of {name!r} are not numbers "
                         f"({row.get('hd95')!r}, {row.get('nsd')!r})") from None
    if not (math.isfinite(hd) and hd >= 0 and math.isfinite(surface) and 0 <= surface <= 1):
        raise ValueError(f"{path} line {line_no}: hd95 of {name!r} must be a distance of at least 0 and its nsd "
                         f"in [0, 1], got {hd}, {surface}")
    return hd, surface


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
    # written only when set: boundary metrics (HD95 in distance_unit, NSD at nsd_tolerance in that unit) and
    # the inference options that are not the default (test-time augmentation, post-processing)
    hd95_mean: Optional[float] = None
    hd95_std: Optional[float] = None
    nsd_mean: Optional[float] = None
    nsd_std: Optional[float] = None
    nsd_tolerance: Optional[float] = None
    distance_unit: Optional[str] = None
    tta: Optional[bool] = None
    postprocessing: Optional[str] = None

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k not in _OPTIONAL_RESULT}


_OPTIONAL_RESULT = ("hd95_mean", "hd95_std", "nsd_mean", "nsd_std", "nsd_tolerance", "distance_unit", "tta",
                    "postprocessing")


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
    """The timestamp summary.json files carry (``created``)."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


def write_summary(folder: PathLike, summary: dict) -> Path:
    """``folder/summary.json`` (written atomically); returns its path."""
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


# ---------------------------------------------------------------------------------------------
# The post-processing and threshold a run chose on validation (RUN/summary.json "train"."postprocessing")
# ---------------------------------------------------------------------------------------------
#: mask post-processing rules: none, keep the largest connected component, drop components under a size
POSTPROCESSING_RULES = ("none", "largest_component", "min_size")
#: the summary.json key (under "train") of the choice made after training
POSTPROCESSING_KEY = "postprocessing"


@dataclass(frozen=True)
class PostProcessing:
    """A rule applied to a thresholded mask (by :class:`vlsm.Predictor`): ``none``; ``largest_component``, keep
    only the largest 8-connected component (the first in raster order among equals); or ``min_size``, drop the
    8-connected components smaller than ``min_size`` times the image's pixel count."""

    rule: str = "none"
    min_size: Optional[float] = None  # fraction of the image's pixels, for rule "min_size"

    def __post_init__(self):
        if self.rule not in POSTPROCESSING_RULES:
            raise ValueError(f"post-processing rule {self.rule!r} is unknown; use one of {', '.join(POSTPROCESSING_RULES)}")
        if (self.rule == "min_size") != (self.min_size is not None):
            raise ValueError("post-processing: min_size (a fraction of the image's pixels) goes with rule min_size only")
        if self.min_size is not None and not (isinstance(self.min_size, (int, float)) and 0 < self.min_size < 1):
            raise ValueError(f"post-processing: min_size must be a fraction of the image's pixels in (0, 1), "
                             f"got {self.min_size!r}")

    @property
    def active(self) -> bool:
        return self.rule != "none"

    def describe(self) -> str:
        """``none``, ``largest_component`` or ``min_size:0.005`` (what a result's ``postprocessing`` says)."""
        return f"min_size:{self.min_size:g}" if self.rule == "min_size" else self.rule

    @classmethod
    def parse(cls, value) -> "PostProcessing":
        """A rule from its :meth:`describe` text, a dict with ``rule`` (and ``min_size``) or a PostProcessing."""
        if isinstance(value, PostProcessing):
            return value
        if isinstance(value, dict):
            return cls(str(value.get("rule", "none")), value.get("min_size"))
        text = str(value)
        rule, _, size = text.partition(":")
        try:
            return cls(rule, float(size) if size else None)
        except ValueError as err:
            raise ValueError(f"post-processing {text!r}: {err}; e.g. none, largest_component or min_size:0.005") \
                from None


def chosen_inference(summary: Optional[dict]) -> tuple[Optional[float], PostProcessing]:
    """The threshold (None when not recorded) and post-processing a run's summary.json records as chosen on
    validation (``PostProcessing()`` when none was)."""
    record = ((summary or {}).get("train") or {}).get(POSTPROCESSING_KEY)
    if not isinstance(record, dict):
        return None, PostProcessing()
    threshold = record.get("threshold")
    return (float(threshold) if isinstance(threshold, (int, float)) else None), PostProcessing.parse(record)


def ensemble_settings(loaded: Sequence[tuple], sources: Sequence[str], label: str, settings: Sequence[tuple],
                      threshold: Optional[float] = None) -> tuple[str, list]:
    """The label and ``[(tta, post-processing, threshold)]`` of an ensemble of runs (``loaded``: each run's
    ``(model, config, run folder)``, ``settings``: each one's own): test-time augmentation when every run has it,
    the post-processing every run chose (else none), and the runs' threshold, which must agree unless ``threshold``
    is given. Runs with other inputs (size, normalisation, tokenizer) cannot be averaged: refused in one line."""
    first = loaded[0][0]
    for (model, _, _), source in zip(loaded[1:], sources[1:]):
        if model.preprocess != first.preprocess:
            raise ValueError(f"{source} cannot join an ensemble with {sources[0]}: their inputs differ "
                             f"({model.preprocess} vs {first.preprocess}); ensemble runs of one model and input size")
    thresholds = sorted({s[2] for s in settings})
    if len(thresholds) > 1 and threshold is None:
        raise ValueError(f"the runs of the ensemble use different thresholds ({', '.join(f'{t:g}' for t in thresholds)}"
                         f"; tuned on their validation folds): give one with --threshold (threshold=)")
    rules = {s[1] for s in settings}
    rule = rules.pop() if len(rules) == 1 else PostProcessing()
    configs = [c for _, c, _ in loaded]
    folds = {c.data.fold for c in configs if c is not None and c.data.folds}
    kind = f"{len(configs)}-fold ensemble" if len(folds) == len(configs) else f"ensemble of {len(configs)} runs"
    return f"{label} ({kind})", [(all(s[0] for s in settings), rule, thresholds[0])]


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


__all__ = ["BOUNDARY_FIELDS", "POSTPROCESSING_KEY", "POSTPROCESSING_RULES", "PostProcessing", "chosen_inference",
           "ensemble_settings",
           "CaseResult", "EMPTY_MASK_POLICY", "EvalResult", "METRICS_FIELDS", "PER_CASE_FIELDS", "PER_CASE_REQUIRED", "PerCaseScores",
           "model_info", "model_label", "now", "read_per_case", "read_summary", "summary_files", "summary_label",
           "write_evaluation", "write_per_case", "write_summary"]
