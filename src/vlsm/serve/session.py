"""What the web app does, without the web: runs, examples, uploads and one segmentation per run.

:mod:`vlsm.serve.app` only lays this out in Gradio, so everything here is plain Python (PIL images,
numpy arrays, files) and testable without a browser.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from vlsm.data.records import Record
from vlsm.predictor import Predictor

# Uploads larger than this (width x height) are refused before their pixels are decoded.
DEFAULT_MAX_PIXELS = 40_000_000
# Test images of each run's datasets offered as examples.
DEFAULT_EXAMPLES = 6


class UploadError(ValueError):
    """An upload the app cannot use; the message is shown in the page."""


@dataclass
class ServedRun:
    """One run the app serves: its predictor and its threshold (None: the predictor's, the run's own: tuned on
    validation, else its eval.threshold)."""

    path: Path
    predictor: Predictor
    threshold: Optional[float] = None

    @property
    def label(self) -> str:
        return self.predictor.label

    @property
    def uses_text(self) -> bool:
        return self.predictor.model.uses_text


@dataclass
class Example:
    """A dataset image with its ground-truth mask and annotation prompts."""

    key: str                       # "dataset / name", the label in the picker
    record: Record

    def prompts(self) -> list[tuple[str, str]]:
        """``[(label, text)]`` for the record's p0..p9 prompts (list-valued types give one entry each)."""
        out = []
        for k in sorted(self.record.prompts, key=lambda k: (len(k), k)):
            value = self.record.prompts[k]
            texts = value if isinstance(value, (list, tuple)) else [value]
            for i, text in enumerate(texts):
                if isinstance(text, str) and text.strip():
                    suffix = f"[{i}]" if len(texts) > 1 else ""
                    out.append((f"{k}{suffix}: {text}", text))
        return out


@dataclass
class RunOutput:
    """One run's answer for one image, ready to display."""

    label: str
    overlay: Optional[np.ndarray] = None       # (H, W, 3) uint8, the predicted mask over the image
    mask: Optional[np.ndarray] = None          # (H, W) uint8 0/255
    probabilities: Optional[np.ndarray] = None  # (H, W, 3) uint8, colour-mapped
    errors: Optional[np.ndarray] = None        # TP/FP/FN overlay when a ground truth is known
    uncertainty: Optional[np.ndarray] = None   # (H, W, 3) uint8, colour-mapped std of the TTA flips' probabilities
    dice: Optional[float] = None
    seconds: float = 0.0
    prompt: str = ""
    mask_file: Optional[Path] = None
    message: str = ""                          # why there is no output (e.g. a prompt is needed)

    def summary(self) -> str:
        if self.message:
            return f"**{self.label}**: {self.message}"
        parts = [f"**{self.label}**", f"inference {self.seconds * 1000:.1f} ms"]
        if self.prompt:
            parts.append(f"prompt “{self.prompt}”")
        if self.dice is not None:
            parts.append(f"Dice {100 * self.dice:.2f} %")
        if self.uncertainty is not None:
            parts.append("test-time augmentation")
        return " · ".join(parts)


def load_runs(paths: Sequence, device: str = "auto", trust_checkpoint: bool = False,
              tta: Optional[bool] = None) -> list[ServedRun]:
    """One :class:`ServedRun` per path. ``trust_checkpoint`` lets checkpoints that need arbitrary
    Python objects (pickle) load: loading them can run code, so only for files from a trusted source.
    ``tta``: test-time augmentation for every run (None: as each run's eval.tta); each run applies the
    post-processing it chose on validation."""
    runs = []
    for path in paths:
        options = {} if tta is None else {"tta": tta}  # (None: the predictor's default, the run's eval.tta)
        runs.append(ServedRun(Path(path), Predictor(path, device=device, trust_checkpoint=trust_checkpoint,
                                                     **options)))
    labels = [r.label for r in runs]
    for run in runs:  # two runs of one model: tell them apart by folder
        if labels.count(run.label) > 1:
            run.predictor.label = f"{run.label} ({run.path.name or run.path})"
    return runs


def load_examples(runs: Sequence[ServedRun], per_dataset: int = DEFAULT_EXAMPLES) -> list[Example]:
    """The first ``per_dataset`` test images of every dataset the runs were trained or tested on.

    Datasets that are not on this machine (a run copied from elsewhere) are left out.
    """
    from vlsm.data import load_records

    seen, examples = set(), []
    for run in runs:
        cfg = run.predictor.config
        if cfg is None or per_dataset <= 0:
            continue
        for path in list(cfg.data.paths) + list(cfg.data.test_paths):
            key = (str(Path(path).resolve()), cfg.data.test_split)
            if key in seen or not Path(path).is_dir():
                continue
            seen.add(key)
            try:
                [(name, records)] = load_records([path], cfg.data.test_split, cfg.data.class_name, check=False)
            except (OSError, ValueError):
                continue
            examples += [Example(f"{name} / {r.name}", r) for r in records if r.mask_path is not None][:per_dataset]
    return examples


def upload_planes(path):
    """The frames or slices of an uploaded DICOM, NIfTI or MetaImage file that holds several (a
    :class:`vlsm.data.medical.PlaneInfo`), else None (a picture, a 2-D file, or one :func:`read_upload`
    will refuse)."""
    from vlsm.data.medical import medical_kind, plane_info

    try:
        info = plane_info(path) if medical_kind(path) else None
    except Exception:  # noqa: BLE001 - read_upload names what is wrong with the file
        return None
    return info if info is not None and info.planes > 1 else None


def upload_name(path, planes=None, index: Optional[int] = None) -> str:
    """The name of an upload's masks, as ``vlsm predict`` names its outputs: the file's stem, with
    ``_slice012``/``_frame003`` for plane ``index`` of a file that holds several (``planes``, from
    :func:`upload_planes`)."""
    from vlsm.data._util import file_stem
    from vlsm.data.inputs import slice_name

    stem = file_stem(path)
    return stem if planes is None else slice_name(stem, planes.word, index, planes.planes)


def read_upload(path, max_pixels: int = DEFAULT_MAX_PIXELS, slice_index: Optional[int] = None) -> Image.Image:
    """An uploaded file as an RGB image, or :class:`UploadError` saying what is wrong with it.
    ``slice_index``: the frame or slice of a file that holds several (default: the middle one)."""
    from vlsm.data.images import image_size, load_image

    path = Path(path)
    name = re.sub(r"^[0-9a-f]{16,}[-_]?", "", path.name)  # shown without any temp-file prefix
    try:
        width, height = image_size(path)
    except Exception:  # noqa: BLE001 - whatever the decoders say, the file is not an image we can read
        raise UploadError(f"{name} is not an image this app can read (PNG, JPEG, TIFF, DICOM, NIfTI, ...); "
                          f"upload an image file") from None
    if width * height > max_pixels:
        raise UploadError(f"{name} is too large: {width} × {height} = {width * height / 1e6:.1f} megapixels; "
                          f"this server accepts at most {max_pixels / 1e6:.1f} (vlsm serve --max-pixels). "
                          f"Upload a smaller image")
    if slice_index is None:  # a file of several planes opens at its middle one
        planes = upload_planes(path)
        slice_index = None if planes is None else planes.planes // 2
    try:
        return load_image(path, slice_index)
    except (OSError, ValueError) as err:
        raise UploadError(f"{name} could not be decoded ({err}); upload an intact image file") from None


def probability_map(probabilities: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 with the viridis colour map."""
    from matplotlib import colormaps

    return (colormaps["viridis"](np.clip(probabilities, 0.0, 1.0))[..., :3] * 255).round().astype(np.uint8)


def uncertainty_map(spread: np.ndarray) -> np.ndarray:
    """(H, W) standard deviation of probabilities (at most 0.5) -> (H, W, 3) uint8 with the magma colour map,
    0.5 brightest."""
    from matplotlib import colormaps

    return (colormaps["magma"](np.clip(2 * spread, 0.0, 1.0))[..., :3] * 255).round().astype(np.uint8)


def _file_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "image"


@dataclass
class Segmenter:
    """Runs the served models on one image and writes each mask as a PNG for download."""

    runs: list
    out_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vlsm-serve-")))

    def segment(self, image: Image.Image, prompt: str, selected: Sequence[int], *, name: str = "image",
                gt: Optional[np.ndarray] = None) -> list[Optional[RunOutput]]:
        """One :class:`RunOutput` per run (None for runs not in ``selected``)."""
        from vlsm.evaluation.figures import overlay
        from vlsm.evaluation.metrics import dice_score

        rgb = np.asarray(image.convert("RGB"))
        prompt = (prompt or "").strip()
        outputs: list[Optional[RunOutput]] = []
        for index, run in enumerate(self.runs):
            if index not in selected:
                outputs.append(None)
                continue
            text = prompt or (run.predictor.default_prompt or "")
            if run.uses_text and not text:
                outputs.append(RunOutput(run.label, message="this vision-language model needs a text prompt: "
                                                            "type one or pick one of the example's prompts"))
                continue
            [pred] = run.predictor.predict(image, prompts=text if run.uses_text else None, threshold=run.threshold)
            mask = (pred.mask.astype(np.uint8) * 255)
            mask_file = self.out_dir / f"{_file_stem(name)}_{_file_stem(run.label)}_mask.png"
            Image.fromarray(mask).save(mask_file)
            outputs.append(RunOutput(
                label=run.label, overlay=overlay(rgb, pred.mask), mask=mask,
                probabilities=probability_map(pred.probabilities),
                errors=None if gt is None else overlay(rgb, pred.mask, gt),
                dice=None if gt is None else dice_score(pred.mask, gt), seconds=pred.seconds,
                prompt=text if run.uses_text else "", mask_file=mask_file,
                uncertainty=None if pred.uncertainty is None else uncertainty_map(pred.uncertainty)))
        return outputs


__all__ = ["ServedRun", "Example", "RunOutput", "Segmenter", "UploadError", "load_runs", "load_examples",
           "read_upload", "upload_name", "upload_planes", "probability_map", "uncertainty_map", "DEFAULT_MAX_PIXELS", "DEFAULT_EXAMPLES"]
