"""``vlsm predict`` as a function: segment images that have no masks, PNG masks at each image's size."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from vlsm.api._common import call_scope, check_at_least, check_threshold
from vlsm.errors import UserError

PathLike = Union[str, Path]


@dataclass
class Predictions:
    """What :func:`predict` wrote into ``out``: one mask per image (``masks``, input order) and every file."""

    out: Path
    masks: list = field(default_factory=list)  # list[Path]
    files: list = field(default_factory=list)  # list[Path], masks, probability maps and overlays


@dataclass
class PredictionPlan:
    """The files a prediction will write, checked before anything is: per record, its mask and (when asked)
    its probability map and overlay."""

    out: Path
    records: list
    probabilities: bool = False
    overlays: bool = False
    uncertainty: bool = False
    nifti: bool = False  # also <stem>.nii.gz for NIfTI inputs (vlsm.data.inputs.NiftiMasks)

    def files_of(self, record) -> dict:
        """``{"mask"|"prob"|"overlay"|"uncertainty": file name}`` of one record."""
        from vlsm.data.inputs import output_stem

        stem = output_stem(record)  # scan.nii.gz -> scan; a volume's slice -> scan_slice012
        names = {"mask": f"{stem}.png"}
        if self.probabilities:
            names["prob"] = f"{stem}_prob.png"
        if self.overlays:
            names["overlay"] = f"{stem}_overlay.png"
        if self.uncertainty:
            names["uncertainty"] = f"{stem}_uncertainty.png"
        return names

    @property
    def planned(self) -> list[Path]:
        from vlsm.data.inputs import nifti_outputs

        nifti = [self.out / n for n in nifti_outputs(self.records)] if self.nifti else []
        return [self.out / name for r in self.records for name in self.files_of(r).values()] + nifti


def plan_predictions(inputs: Sequence[PathLike], out: PathLike, *, probabilities: bool = False,
                     overlays: bool = False, overwrite: bool = False, uncertainty: bool = False,
                     slices=None, nifti: bool = False) -> PredictionPlan:
    """The images of ``inputs`` (files and folders) and the files they will give in ``out``, refusing (one line
    each) two inputs that would write the same file, an output that is an input folder or cannot be written,
    and existing files unless ``overwrite`` and ``out`` holds earlier predictions (its marker). ``slices``: the
    frames or slices of multi-frame DICOM files and volumes (:func:`vlsm.data.list_images`); ``nifti``: also
    NIfTI masks for NIfTI inputs."""
    from vlsm.data import list_images
    from vlsm.data.inputs import output_stem

    records = list_images(inputs, slices=slices)
    stems: dict = {}
    for r in records:
        stems.setdefault(output_stem(r), []).append(str(r.image_path))
    clashes = {s: p for s, p in stems.items() if len(p) > 1}
    if clashes:
        s, paths = next(iter(clashes.items()))
        raise UserError(f"{len(clashes)} input name(s) would write the same output, e.g. {s}.png from {paths}; "
                        f"predict them into separate folders")
    plan = PredictionPlan(Path(out), records, probabilities, overlays, uncertainty)
    plan.nifti = nifti
    _check_output(plan, inputs, overwrite)
    return plan


def _check_output(plan: PredictionPlan, inputs, overwrite: bool) -> None:
    from vlsm.runs import PREDICTIONS_MARKER, require_writable

    out = plan.out
    target = out.resolve()
    folders = {Path(i).resolve() for i in inputs if Path(i).is_dir()}
    folders |= {Path(r.image_path).resolve().parent for r in plan.records}
    if target in folders:
        raise UserError(f"-o {out} is an input folder: the masks would sit among (or replace) the images; "
                        f"choose another -o")
    require_writable(out, flag="-o")
    existing = [p for p in plan.planned if p.exists()]
    if existing and not overwrite:
        raise UserError(f"{len(existing)} output file(s) already exist (e.g. {existing[0]}); "
                        f"pass --overwrite to replace them or choose another -o")
    if existing and not (out / PREDICTIONS_MARKER).is_file():
        raise UserError(f"{out} was not written by `vlsm predict` (no {PREDICTIONS_MARKER} marker), so --overwrite "
                        f"will not replace its files (e.g. {existing[0]}); choose another -o")


def predict(inputs: Union[PathLike, Sequence[PathLike]], out: PathLike, checkpoint: Union[PathLike, Sequence[PathLike]], *,
            prompt: Optional[str] = None, threshold: Optional[float] = None, probabilities: bool = False,
            overlays: bool = False, batch_size: int = 4, device: str = "auto", max_pixels: Optional[int] = None,
            overwrite: bool = False, trust_checkpoint: bool = False, tta: Optional[bool] = None,
            postprocess: bool = True, uncertainty: bool = False,
            slices=None, nifti: bool = False) -> Predictions:
    """Segment the images of ``inputs`` (files and/or folders) with a trained model (``checkpoint``), or the
    ensemble of several (a list: their probabilities averaged, :class:`vlsm.Predictor`); no masks are needed.

    Writes ``out/<stem>.png`` (0/255, the image's size) and, when asked, ``<stem>_prob.png`` (0-255 = 0-1),
    ``<stem>_overlay.png`` and, with test-time augmentation, ``<stem>_uncertainty.png`` (the standard deviation
    of the flips' probabilities, 0-255 = 0-0.5). ``prompt``: the text for a vision-language model (default: the
    run's fixed prompt). ``threshold`` None, ``tta`` None and ``postprocess``: the run's (tuned) threshold, its
    ``eval.tta`` and the post-processing it chose on validation, as :class:`vlsm.Predictor` applies them. Masks
    are computed in fp32, as ``vlsm evaluate`` scores them. Every output is checked before
    anything is written (:func:`plan_predictions`); the files are written into a staging folder beside ``out``
    and moved into place only when all are written, so a failure (e.g. a corrupt image) leaves nothing behind,
    and earlier predictions that ``overwrite`` would have replaced stay as they were. DICOM, NIfTI and
    MetaImage inputs are read as :func:`vlsm.data.load_image` reads them; ``slices`` (``--slice``) chooses the
    frames or slices of multi-frame files and volumes (a number or ``"all"``; one output each, e.g.
    ``<stem>_slice012.png``) and ``nifti`` (``--nifti``) also writes each NIfTI input's masks as
    ``<stem>.nii.gz`` (0/1) on the input's voxels."""
    from vlsm.data.images import check_pixel_limit
    from vlsm.evaluation.evaluate import EVAL_PRECISION
    from vlsm.predictor import Predictor

    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if threshold is not None:
        check_threshold(threshold)
    check_at_least("--batch-size", batch_size)
    check_at_least("--max-pixels", max_pixels)
    with call_scope(trust_checkpoint):
        predictor = Predictor(checkpoint, device=device, precision=EVAL_PRECISION, batch_size=batch_size, tta=tta,
                              postprocess=bool(postprocess), threshold=threshold)
        if uncertainty and not predictor.tta:
            raise UserError("--uncertainty is the spread of the test-time augmentation's flips: add --tta")
        prompt = _prompt(predictor, prompt)
        plan = plan_predictions(inputs, out, slices=slices, nifti=nifti,
                                probabilities=probabilities, overlays=overlays, overwrite=overwrite,
                                uncertainty=uncertainty)
        check_pixel_limit([r.image_path for r in plan.records], max_pixels, flag="--max-pixels")
        return _write(plan, predictor, prompt, threshold)


def _prompt(predictor, prompt: Optional[str]) -> str:
    model = predictor.model
    if model.uses_text and not prompt:
        prompt = predictor.default_prompt
        if not prompt:
            raise UserError(f"{model.spec.name} needs a text prompt for images without annotations: "
                            f"give --prompt, e.g. --prompt \"polyp\"")
    return prompt or ""


def _write(plan: PredictionPlan, predictor, prompt: str, threshold: Optional[float]) -> Predictions:
    """Predict every record into a staging folder, then move the files into ``plan.out``."""
    import numpy as np

    from vlsm.data import load_image
    from vlsm.data.inputs import NiftiMasks
    from vlsm.runs import PREDICTIONS_MARKER
    from vlsm.runs.staging import staged
    from vlsm.utils import write_bytes_atomic, write_text_atomic

    out = plan.out
    fresh = not out.exists() or not any(out.iterdir())
    result = Predictions(out)
    nifti = NiftiMasks(plan.records) if plan.nifti else None
    with staged([out]) as (folder,):
        if fresh:
            write_text_atomic(folder.path / PREDICTIONS_MARKER, "written by vlsm predict\n")
        preds = predictor.predict_records(plan.records, prompt=prompt, threshold=threshold)
        for record, pred in zip(plan.records, preds):
            files = plan.files_of(record)
            _save_png((pred.mask * 255).astype(np.uint8), folder.path / files["mask"])
            if "prob" in files:
                _save_png(np.round(pred.probabilities * 255).astype(np.uint8), folder.path / files["prob"])
            if "uncertainty" in files:  # (a standard deviation of values in [0, 1] is at most 0.5)
                spread = np.clip(np.round(pred.uncertainty * 510), 0, 255).astype(np.uint8)
                _save_png(spread, folder.path / files["uncertainty"])
            if "overlay" in files:
                from vlsm.evaluation.figures import overlay

                image = np.asarray(load_image(record.image_path, record.slice_index))
                _save_png(overlay(image, pred.mask), folder.path / files["overlay"])
            result.masks.append(out / files["mask"])
            if nifti is not None:
                nifti.add(record, pred.mask)
            result.files += [out / name for name in files.values()]
        for name, data in (nifti.files() if nifti is not None else {}).items():
            write_bytes_atomic(folder.path / name, data)
            result.files.append(out / name)
    return result


def _save_png(array, path: Path) -> None:
    import io

    from PIL import Image

    from vlsm.utils import write_bytes_atomic

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


__all__ = ["PredictionPlan", "Predictions", "plan_predictions", "predict"]
