"""``vlsm export`` as a function: a trained model for another runtime (ONNX) or as a standalone model folder."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from vlsm.api._common import call_scope, check_threshold
from vlsm.errors import UserError

PathLike = Union[str, Path]


@dataclass
class Export:
    """What :func:`export` wrote: the folder, its files, the model's label and, for ONNX, onnxruntime's
    largest logit difference from PyTorch (``max_abs_logit_diff``)."""

    out: Path
    label: str
    format: str  # "onnx" or "standalone"
    files: list = field(default_factory=list)  # file names in out
    size_bytes: int = 0
    max_abs_logit_diff: Optional[float] = None


def export(run: PathLike, out: PathLike, *, format: Optional[str] = None, standalone: bool = False,
           opset: Optional[int] = None, threshold: Optional[float] = None, overwrite: bool = False,
           trust_checkpoint: bool = False) -> Export:
    """Export the trained model of ``run`` (a run folder, its ``model/`` folder or a ``.ckpt``) to the folder
    ``out``, which must not exist unless ``overwrite`` (an earlier export only).

    ONNX (``format="onnx"``, the default): ``model.onnx``, ``preprocess.json`` (resize, normalisation, the
    probability ``threshold``, default the run's, and the run's test-time augmentation and post-processing) and
    the tokenizer files, checked against onnxruntime.
    ``standalone``: a model folder with every weight and the model card, which ``vlsm.load_pretrained`` loads
    without the weight sources a slim run refers to."""
    with call_scope(trust_checkpoint):
        if standalone:
            if format is not None:
                raise UserError("--standalone writes a model folder, not an --format export: pass only one of them")
            return _standalone(run, Path(out), overwrite)
        return _onnx(run, Path(out), format or "onnx", opset, threshold, overwrite)


def _onnx(run: PathLike, out: Path, fmt: str, opset: Optional[int], threshold: Optional[float],
          overwrite: bool) -> Export:
    import json

    from vlsm.export import FORMATS, export_onnx, require_onnx
    from vlsm.export.onnx_export import DEFAULT_OPSET, PREPROCESS_FILE, check_destination
    from vlsm.predictor import Predictor

    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if threshold is not None:
        check_threshold(threshold)
    require_onnx()
    check_destination(out, overwrite)  # before the (slow) model load
    predictor = Predictor(run, device="cpu", precision="32-true")
    if threshold is None:
        threshold = predictor.threshold  # (the run's: tuned on validation, else its eval.threshold)
    pp = predictor.postprocessing  # the run's test-time augmentation and post-processing go into preprocess.json
    out = export_onnx(predictor.model, out, threshold=threshold, opset=DEFAULT_OPSET if opset is None else opset,
                      prompt=predictor.default_prompt, overwrite=overwrite, tta=predictor.tta,
                      postprocessing={"rule": pp.rule, "min_size": pp.min_size})
    diff = json.loads((out / PREPROCESS_FILE).read_text())["max_abs_logit_diff_vs_torch"]
    return Export(out, predictor.label, fmt, sorted(p.name for p in out.iterdir()), _size(out), diff)


def _standalone(run: PathLike, out: Path, overwrite: bool) -> Export:
    from vlsm.export.standalone import check_standalone_destination, export_standalone
    from vlsm.runs import RunFolder, load_trained_model, model_label, read_summary

    check_standalone_destination(out, overwrite)  # before the (slow) model load
    model, cfg = load_trained_model(run)
    folder = RunFolder.containing(run)
    summary = read_summary(folder.summary_file) if folder is not None and folder.summary_file.is_file() else None
    export_standalone(model, out, overwrite=overwrite, summary=summary,
                      config=cfg.to_dict() if cfg is not None else None)
    return Export(out, model_label(model), "standalone", sorted(p.name for p in out.iterdir()), _size(out))


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


__all__ = ["Export", "export"]
