"""``vlsm evaluate`` as a function: score a trained (or pretrained, zero-shot) model on dataset splits."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from vlsm.api._common import call_scope, check_at_least, check_threshold
from vlsm.errors import UserError

PathLike = Union[str, Path]


@dataclass
class Evaluation:
    """What :func:`evaluate` wrote: one result per evaluation folder (``results[i]`` in ``folders[i]``),
    labelled as its table row (the model's label, with the prompt in a prompt sweep)."""

    results: list = field(default_factory=list)  # list[vlsm.runs.EvalResult]
    folders: list = field(default_factory=list)  # list[Path]
    labels: list = field(default_factory=list)  # list[str]

    def rows(self) -> list[dict]:
        """The results as dicts with their ``label`` (what :meth:`table` shows)."""
        return [{**r.to_dict(), "label": label} for r, label in zip(self.results, self.labels)]

    def table(self) -> str:
        """Dataset/split, n, Dice and IoU (mean ± std, %) per row, as ``vlsm evaluate`` prints them."""
        from vlsm.evaluation.evaluate import format_results

        return format_results(self.rows())


def evaluate(checkpoint: Union[PathLike, Sequence[PathLike], None] = None, *, model: Optional[str] = None,
             pretrained: Optional[str] = None, preset: Optional[str] = None, variant: Optional[str] = None,
             overrides: Optional[dict] = None, image_size: Optional[int] = None, zero_shot: bool = False,
             allow_partial_weights: bool = False, data: Optional[Sequence[PathLike]] = None, split: str = "test",
             prompt: Optional[Sequence[str]] = None, threshold: Optional[float] = None, batch_size: int = 4,
             device: str = "auto", out: Optional[PathLike] = None, max_pixels: Optional[int] = None,
             overwrite: bool = False, trust_checkpoint: bool = False, tta: Optional[bool] = None,
             postprocess: bool = True, boundary: bool = False, nsd_tolerance: float = 2.0) -> Evaluation:
    """Per-image Dice/IoU at each image's original resolution, written as ``per_case.csv`` + ``summary.json``.

    ``checkpoint``: a run folder, its ``model/`` folder or a ``.ckpt``, or a list of them: their ensemble (the
    probabilities averaged, :class:`vlsm.Predictor`; its results need ``out``); or, with ``zero_shot``, the model
    ``model`` (registered name, with ``preset``/``variant``/``pretrained`` weights and ``overrides``). ``data``:
    dataset folders (default: the run's); ``prompt``: prompt keys or texts, ``["all"]`` for p0..p9 (default:
    the run's evaluation prompt). ``threshold``: None is the run's (tuned on validation, else its
    ``eval.threshold``; 0.5 zero-shot). ``tta``: test-time flips (None: as the run's ``eval.tta``);
    ``postprocess``: apply the post-processing the run chose on validation; ``boundary``: HD95 and NSD too (NSD
    at ``nsd_tolerance`` pixels, or mm where the files give a pixel spacing). Results go to ``out`` (a subfolder
    per dataset/prompt when there are several) or to ``RUN/eval/<dataset>-<split>[-<prompt>]``; an existing
    evaluation is replaced only with ``overwrite``. Everything (outputs, images, checkpoint) is checked before
    the first image is scored, and a failure leaves no folder behind (:func:`vlsm.evaluation.evaluate_targets`)."""
    from vlsm.evaluation.evaluate import evaluate_targets
    from vlsm.evaluation.planning import plan_targets
    from vlsm.runs import RunFolder

    if threshold is not None:
        check_threshold(threshold)
    check_at_least("--batch-size", batch_size)
    check_at_least("--max-pixels", max_pixels)
    check_tolerance(nsd_tolerance)
    with call_scope(trust_checkpoint):
        predictor = _predictor(checkpoint, model=model, pretrained=pretrained, preset=preset, variant=variant,
                               overrides=overrides, image_size=image_size, zero_shot=zero_shot,
                               allow_partial_weights=allow_partial_weights, batch_size=batch_size, device=device,
                               inference={"tta": tta, "postprocess": bool(postprocess), "threshold": threshold})
        single = isinstance(checkpoint, (str, Path))
        run = RunFolder.containing(checkpoint) if single and Path(checkpoint).is_dir() else None
        targets = plan_targets(predictor, data=data, split=split, prompts=prompt,
                               threshold=predictor.threshold if threshold is None else threshold, out=out, run=run,
                               overwrite=overwrite, extra={"zero_shot": bool(zero_shot)}, max_pixels=max_pixels,
                               boundary=boundary, nsd_tolerance=nsd_tolerance)
        results = evaluate_targets(predictor, targets)
    sweep = len({t.prompt for t in targets}) > 1
    labels = [f"{predictor.label} {t.prompt}" if sweep else predictor.label for t in targets]
    return Evaluation(results, [t.out_dir for t in targets], labels)


def check_tolerance(value) -> float:
    """NSD's tolerance: a number of at least 0 (pixels, or mm)."""
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"--nsd-tolerance must be a distance of at least 0 (pixels, or mm), got {value!r}")
    return float(value)


def _predictor(checkpoint, *, model, pretrained, preset, variant, overrides, image_size, zero_shot,
               allow_partial_weights, batch_size, device, inference):
    """A Predictor of the checkpoint, or of ``model``/``pretrained`` for a zero-shot evaluation (``inference``:
    its ``tta`` and ``postprocess``)."""
    from vlsm.evaluation.evaluate import EVAL_PRECISION
    from vlsm.predictor import Predictor

    options = dict(device=device, precision=EVAL_PRECISION, batch_size=batch_size, **inference)
    if zero_shot or not checkpoint:
        if not model:
            raise UserError("give a checkpoint/run folder, or --model NAME [--pretrained SRC] --zero-shot")
        if checkpoint:
            raise UserError("--zero-shot evaluates --model/--pretrained; do not also give a checkpoint")
        extra = dict(overrides or {})
        if allow_partial_weights:
            extra["allow_partial_weights"] = True
        if image_size:
            extra["image_size"] = image_size
        return Predictor(model, pretrained=pretrained, preset=preset or "paper", variant=variant, **options, **extra)
    if model:
        raise UserError("--model is for --zero-shot; a checkpoint already knows its model")
    return Predictor(checkpoint, **options)


__all__ = ["Evaluation", "check_tolerance", "evaluate"]
