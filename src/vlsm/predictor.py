"""``vlsm.Predictor``: apply a model to images — the one prediction implementation.

``vlsm predict``, ``vlsm evaluate``, the end-of-training evaluation, ``vlsm figure`` and the web app
all run their images through :class:`Predictor`::

    import vlsm
    predictor = vlsm.Predictor("runs/kvasir-clipseg")          # a run, model/ folder, .ckpt or a name
    [p] = predictor.predict("scan.png", prompts="polyp")
    p.mask.shape == p.probabilities.shape == (height, width)   # the image's original size

The maths is that of ``vlsm evaluate``: the image and prompt are preprocessed as the model's config
says, by the same :class:`vlsm.data.preprocessing.Preprocessor` as training's dataset, the logits are
resized to the image's original size (bilinear, ``align_corners=False``), then the sigmoid, then the
threshold, then the post-processing the run chose on validation (if any).

Test-time augmentation (``tta=True``): the model also sees the image flipped horizontally, vertically and
both (:data:`TTA_FLIPS`); each output is flipped back, resized and put through the sigmoid, and the four
probability maps are averaged; their standard deviation is the per-pixel ``uncertainty``.

An ensemble of runs (``Predictor(["runs/cv-fold0", ..., "runs/cv-fold4"])``, e.g. a cross-validation's folds)
averages every run's probabilities (and views) the same way, as nnU-Net ensembles its folds; its label says so
(``UNet-D (5-fold ensemble)``) and its evaluations name the runs.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from vlsm.data.dataset import SegmentationDataset
from vlsm.data.images import load_image, to_rgb
from vlsm.data.preprocessing import Preprocessor
from vlsm.data.prompts import RANDOM, is_prompt_key
from vlsm.data.records import Record
from vlsm.devices import autocast_dtype, inference_precision, resolve_device, resolve_precision, synchronize
from vlsm.models import SegmentationModel
from vlsm.runs.results import PostProcessing, chosen_inference

ImageInput = Union[str, Path, Image.Image, np.ndarray]


@dataclass
class Prediction:
    """One image's prediction, at the image's original size."""

    name: str                    # image stem / record name
    probabilities: np.ndarray    # (H, W) float32 in [0, 1]
    mask: np.ndarray             # (H, W) bool: probabilities > threshold
    prompt: str                  # the text given to the model ("" when none: image-only models)
    seconds: float               # model time for this image (its share of the batch)
    uncertainty: Optional[np.ndarray] = None  # (H, W) float32: std of the TTA probabilities (None without TTA)


#: test-time augmentation: the views of an image, by the axes of a (B, C, S, S) tensor they flip (the identity,
#: horizontal, vertical, both); the ONNX export's preprocess.json lists the same axes
TTA_FLIPS = {"none": (), "horizontal": (3,), "vertical": (2,), "both": (2, 3)}


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8-connected components of a boolean (H, W) mask: (labels (H, W), sizes) with ``sizes[0]`` the
    background's (0) and ``sizes[k]`` the pixel count of component ``k`` (numbered in raster order)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return labels, sizes


def kept_components(sizes: np.ndarray, rule: PostProcessing, n_pixels: int) -> np.ndarray:
    """Which components (``sizes`` of :func:`components`) ``rule`` keeps: a boolean array over their labels."""
    keep = sizes > 0
    if rule.rule == "largest_component" and len(sizes) > 1:
        keep = np.zeros(len(sizes), dtype=bool)
        keep[int(np.argmax(sizes))] = sizes.max() > 0
    elif rule.rule == "min_size":
        keep &= sizes >= rule.min_size * n_pixels
    return keep


def postprocess_mask(mask: np.ndarray, rule: PostProcessing) -> np.ndarray:
    """A boolean (H, W) mask after ``rule`` (:class:`vlsm.runs.results.PostProcessing`); unchanged for none."""
    if not rule.active:
        return mask
    labels, sizes = components(mask)
    return kept_components(sizes, rule, mask.size)[labels]


def to_original_size(logits: torch.Tensor, size_hw: Sequence[int]) -> np.ndarray:
    """(1, S, S) logits -> (H, W) float32 probabilities: resize the logits, then the sigmoid."""
    return _probabilities(logits[None].float(), tuple(size_hw))[0].cpu().numpy()


def _probabilities(logits: torch.Tensor, size_hw: tuple) -> torch.Tensor:
    """(n, 1, S, S) fp32 logits -> (n, H, W) fp32 probabilities on the logits' device: bilinear resize
    (``align_corners=False``), then the sigmoid.

    On a CPU the sigmoid runs once per image: its vectorised body and scalar tail round differently,
    so which pixels fall in the tail must not depend on how many images share the call (one call
    per image is what every earlier version computed). A GPU computes every element alike.
    """
    up = F.interpolate(logits, size=size_hw, mode="bilinear", align_corners=False)[:, 0]
    if up.device.type != "cpu":
        return up.sigmoid_()
    for plane in up:
        plane.sigmoid_()
    return up


def _threshold(probabilities: torch.Tensor, threshold: float) -> torch.Tensor:
    """probabilities > threshold, compared in float32 (numpy's comparison on a CPU: ~4x torch's)."""
    if probabilities.device.type == "cpu":
        return torch.from_numpy(probabilities.numpy() > threshold)
    return probabilities > threshold


@dataclass
class PredictionGroup:
    """Images of one forward batch that share an original size, kept on the model's device."""

    indices: list                # the images' positions among the predicted records/images
    prompts: list                # the text each image got
    probabilities: torch.Tensor  # (n, H, W) float32 in [0, 1] at the original size
    mask: torch.Tensor           # (n, H, W) bool: probabilities > threshold, post-processed
    seconds: float               # model time per image (each image's share of its batch)
    uncertainty: Optional[torch.Tensor] = None  # (n, H, W) float32 std of the TTA probabilities


def load_source(source, *, pretrained: Optional[str] = None, trust_checkpoint: bool = False,
                **model_options) -> tuple:
    """``(model, its run's config or None, its run folder or None)`` of a :class:`Predictor`'s ``source``."""
    from vlsm.models import create_model, list_models
    from vlsm.runs import RunFolder, load_trained_model

    if isinstance(source, SegmentationModel):
        if pretrained or model_options:
            raise ValueError("pretrained= and model options build a model from its name; a model object is used as it is")
        return source, None, None
    if not isinstance(source, (str, Path)):
        raise TypeError(f"source must be a path, a model name or a SegmentationModel, got {type(source).__name__}")
    text, names = str(source), list_models()
    registered = isinstance(source, str) and text in names
    # a run folder named like a model is the run, unless weights or options ask for the model
    if registered and (pretrained or model_options or not Path(text).exists()):
        return create_model(text, pretrained=pretrained, trust_checkpoint=trust_checkpoint, **model_options), None, None
    if pretrained or model_options:
        raise ValueError(f"{text!r} is not a registered model name ({', '.join(names)}); pretrained= and model options "
                         f"are for those, a trained model knows its own")
    if Path(text).exists() or isinstance(source, Path) or "/" in text or text.endswith(".ckpt"):
        model, config = load_trained_model(source, trust_checkpoint=trust_checkpoint)  # (a missing path: named)
        return model, config, RunFolder.containing(source)
    raise ValueError(f"{text!r} is neither an existing run folder, model folder or .ckpt file nor a registered model "
                     f"name ({', '.join(names)})")


class Predictor:
    """Segment images with a trained or pretrained model, or an ensemble of trained runs (see the module
    docstring).

    Args:
        source: a run folder, a run's ``model/`` folder, a ``.ckpt`` checkpoint, a registered model
            name (built with ``pretrained`` and ``model_options``, e.g. ``preset="tiny"``) or a
            :class:`~vlsm.models.SegmentationModel`; or a list of runs (folders, ``model/`` folders, checkpoints):
            their **ensemble**, which averages the runs' probabilities (as nnU-Net ensembles its five folds; the
            runs must share their input size, normalisation and tokenizer).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (fp32 on a CPU; bf16 autocast on a CUDA GPU with bfloat16, else fp16),
            ``32-true``, ``16-mixed`` or ``bf16-mixed``.
        batch_size: images per forward pass.
        trust_checkpoint: load a ``.ckpt`` (or weight file) that needs arbitrary Python objects. Loading
            such a file can run code: only for files from a trusted source; without it they are refused.
        tta: test-time augmentation (flips, probabilities averaged); None: as the run's ``eval.tta`` (off
            without a run; an ensemble's when all its runs have it).
        postprocess: True: the post-processing the run chose on validation (none without a run; an ensemble's when
            all its runs chose the same); False: none; or a rule (``"largest_component"``, ``"min_size:0.005"``, a
            :class:`~vlsm.runs.results.PostProcessing`).
        threshold: the mask threshold; None: the run's (an ensemble's when its runs agree; else it is refused).

    :attr:`threshold` is the run's: the one tuned on validation when training tuned it, else its
    ``eval.threshold``; 0.5 without a run. ``predict(..., threshold=x)`` overrides it.
    """

    def __init__(self, source: Union[str, Path, SegmentationModel, Sequence], device: str = "auto",
                 precision: str = "auto", *, pretrained: Optional[str] = None, batch_size: int = 8,
                 trust_checkpoint: bool = False, tta: Optional[bool] = None,
                 postprocess: Union[bool, str, PostProcessing] = True, threshold: Optional[float] = None,
                 **model_options):
        from vlsm.runs import model_label, summary_label

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        autocast_dtype(self.precision)  # refuse an unusable precision now, not at the first image
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        if not sources or (len(sources) > 1 and (pretrained or model_options)):
            raise ValueError("an ensemble is a list of trained runs (run folders, model/ folders or .ckpt files), "
                             "without pretrained= or model options")
        loaded = [load_source(s, pretrained=pretrained, trust_checkpoint=trust_checkpoint, **model_options)
                  for s in sources]
        self.models = [model.eval().to(self.device) for model, _, _ in loaded]
        self.model, self.config, run = loaded[0]
        self.label = (run and summary_label(run.path)) or model_label(self.model)
        self.sources = [str(s) for s in sources] if len(sources) > 1 else None
        self._preprocessor: Optional[Preprocessor] = None
        settings = [self._inference_settings(r, c, tta, postprocess) for _, c, r in loaded]
        if self.sources:
            from vlsm.runs.results import ensemble_settings

            self.label, settings = ensemble_settings(loaded, self.sources, self.label, settings, threshold)
        self.tta, self.postprocessing, self.threshold = settings[0]
        if threshold is not None:
            self.threshold = float(threshold)

    @staticmethod
    def _inference_settings(run, config, tta: Optional[bool], postprocess) -> tuple:
        """``(tta, post-processing, threshold)`` of one run from the arguments and the run."""
        if tta is not None and not isinstance(tta, bool):
            raise TypeError(f"tta must be True, False or None (the run's), got {tta!r}")
        summary = run.read_summary() if run is not None and run.summary_file.is_file() else None
        try:
            chosen_threshold, chosen_rule = chosen_inference(summary)
        except ValueError as err:
            if postprocess is True:
                raise ValueError(f"{run.summary_file}: train.postprocessing: {err}; train the run again, or pass "
                                 f"postprocess=False (--no-postprocess) to ignore that record") from None
            chosen_threshold, chosen_rule = None, PostProcessing()
        use_tta = bool(config.eval.tta if tta is None and config is not None else tta)
        rule = chosen_rule if postprocess is True else PostProcessing.parse("none" if postprocess is False else postprocess)
        configured = config.eval.threshold if config is not None else 0.5
        return use_tta, rule, chosen_threshold if chosen_threshold is not None else configured

    def __repr__(self) -> str:
        extra = (", tta=True" if self.tta else "") + (f", postprocess={self.postprocessing.describe()!r}"
                                                       if self.postprocessing.active else "")
        return f"Predictor({self.label!r}, device={str(self.device)!r}, precision={self.precision!r}{extra})"

    @property
    def preprocessor(self) -> Preprocessor:
        """The model's :class:`~vlsm.data.preprocessing.Preprocessor` (made at the first use: a model
        whose tokenizer is missing fails when it predicts, not when it loads)."""
        if self._preprocessor is None:
            self._preprocessor = Preprocessor.for_model(self.model)
        return self._preprocessor

    @property
    def default_prompt(self) -> Optional[str]:
        """The run's fixed text prompt (None when the run drew per-image prompts, or there is no run)."""
        prompt = self.config.data.prompt if self.config is not None else None
        if not prompt or prompt == RANDOM or is_prompt_key(prompt):
            return None
        return prompt

    # -- images -------------------------------------------------------------------------------
    def predict(self, images, prompts=None, threshold: Optional[float] = None) -> list[Prediction]:
        """Predict one image or a list of them (paths, PIL images, numpy arrays), in order.

        ``prompts``: None (the run's :attr:`default_prompt`), one text for every image, or one text
        per image. Image-only models take no prompt. ``threshold``: None is :attr:`threshold`.
        """
        many = isinstance(images, (list, tuple))
        images = list(images) if many else [images]
        texts = self._prompts_for(len(images), prompts)
        names, pictures = [], []
        for i, image in enumerate(images):
            if isinstance(image, (str, Path)):
                pictures.append(load_image(image))
                names.append(Path(image).stem)
            else:
                pictures.append(to_rgb(image))
                names.append(Path(getattr(image, "filename", "") or "").stem or f"image-{i}")
        return list(self._run(self._image_items(pictures, texts), names, threshold))

    def _image_items(self, pictures: Sequence[Image.Image], texts: Sequence[str]) -> Iterator[dict]:
        """The model inputs of in-memory RGB images with their prompt texts (the dataset's item keys)."""
        pre = self.preprocessor
        for i, (picture, text) in enumerate(zip(pictures, texts)):
            input_ids, attention_mask = pre.token_pair(text)
            yield {"pixel_values": pre.pixels(picture), "input_ids": input_ids, "attention_mask": attention_mask,
                   "prompt": text, "index": i, "height": picture.height, "width": picture.width}

    def _prompts_for(self, n: int, prompts) -> list[str]:
        if not self.model.uses_text:
            return [""] * n
        if prompts is None:
            prompts = self.default_prompt
            if prompts is None:
                raise ValueError(f"{self.model.spec.name} needs a text prompt: pass prompts=\"...\" "
                                 f"(e.g. \"polyp\"), one text or one per image")
        texts = [prompts] * n if isinstance(prompts, str) else list(prompts)
        if len(texts) != n:
            raise ValueError(f"{len(texts)} prompts for {n} images: pass one prompt, or one per image")
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"prompts are texts, got {type(text).__name__}")
            if text == RANDOM or is_prompt_key(text):
                raise ValueError(f"prompt {text!r} names a dataset prompt type; images without annotations "
                                 f"need the prompt text itself (e.g. \"polyp\"), or use predict_records")
        return texts

    # -- dataset records ----------------------------------------------------------------------
    def predict_records(self, records: Sequence[Record], prompt: str = "p1",
                        threshold: Optional[float] = None) -> Iterator[Prediction]:
        """Predict dataset records in order; ``prompt`` is p0..p9, ``random`` (resolved per record, as
        in evaluation) or a text for all. ``Prediction.prompt`` is the text each record got."""
        records = list(records)
        return self._run(self._record_items(records, prompt), [r.name for r in records], threshold)

    # -- the one inference loop ---------------------------------------------------------------
    def predict_record_groups(self, records: Sequence[Record], prompt: str = "p1",
                              threshold: Optional[float] = None) -> Iterator[PredictionGroup]:
        """:meth:`predict_records` without leaving the device: one :class:`PredictionGroup` per
        original size within each forward batch (for callers that score on the device, like
        :func:`vlsm.evaluation.evaluate_records`). ``indices`` are positions in ``records``."""
        for groups in self._batches(self._record_items(records, prompt), threshold):
            yield from groups

    def _record_items(self, records: Sequence[Record], prompt: str) -> Iterator[dict]:
        """The model inputs of dataset records (read and prompted as in training, without augmentation)."""
        # model inputs only: a caller that scores reads the masks itself, at their original size
        inputs = [dataclasses.replace(r, mask_path=None) for r in records]
        dataset = SegmentationDataset(inputs, self.preprocessor, prompt=prompt, augment=False, require_masks=False)
        return (dataset[i] for i in range(len(dataset)))

    def _run(self, items: Iterable[dict], names: Sequence[str], threshold: Optional[float]) -> Iterator[Prediction]:
        """Predictions in input order, converted to numpy one forward batch at a time."""
        for groups in self._batches(items, threshold):
            batch = {}
            for group in groups:
                probabilities, mask = group.probabilities.cpu().numpy(), group.mask.cpu().numpy()
                spread = group.uncertainty.cpu().numpy() if group.uncertainty is not None else None
                for j, index in enumerate(group.indices):
                    batch[index] = Prediction(name=names[index], probabilities=probabilities[j], mask=mask[j],
                                              prompt=group.prompts[j], seconds=group.seconds,
                                              uncertainty=None if spread is None else spread[j])
            yield from (batch[i] for i in sorted(batch))

    def _batches(self, items: Iterable[dict], threshold: Optional[float]) -> Iterator[list]:
        """Each forward batch's :class:`PredictionGroup` list (one group per original size); ``items``
        are collated ``batch_size`` at a time as a DataLoader would."""
        from torch.utils.data import default_collate

        threshold = self.threshold if threshold is None else threshold
        items = iter(items)
        while True:
            chunk = list(itertools.islice(items, self.batch_size))
            if not chunk:
                return
            batch = default_collate(chunk)
            views, seconds = self._forward(batch)
            by_size: dict = {}
            for i, size in enumerate(zip(batch["height"].tolist(), batch["width"].tolist())):
                by_size.setdefault(size, []).append(i)  # images of one size share one resize
            groups = []
            with torch.inference_mode():
                for size, rows in by_size.items():
                    probabilities, spread = self._combine(views, rows, size)
                    groups.append(PredictionGroup(
                        indices=[int(batch["index"][i]) for i in rows], prompts=[batch["prompt"][i] for i in rows],
                        probabilities=probabilities, mask=self._mask(probabilities, threshold),
                        seconds=seconds / len(views[0]), uncertainty=spread))
            yield groups

    @staticmethod
    def _combine(views: list, rows: list, size: tuple) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The probabilities of images ``rows`` at ``size``: of the one view, or the mean over the TTA views
        with their standard deviation (population)."""
        first = views[0]
        index = None if len(rows) == len(first) else torch.tensor(rows, device=first.device)
        maps = [_probabilities(v if index is None else v[index], size) for v in views]
        if len(maps) == 1:
            return maps[0], None
        stacked = torch.stack(maps)
        return stacked.mean(0), stacked.std(0, correction=0)

    def _mask(self, probabilities: torch.Tensor, threshold: float) -> torch.Tensor:
        """probabilities > threshold, then the post-processing rule (on the CPU, image by image)."""
        mask = _threshold(probabilities, threshold)
        if not self.postprocessing.active:
            return mask
        done = [torch.from_numpy(postprocess_mask(m, self.postprocessing)) for m in mask.cpu().numpy()]
        return torch.stack(done).to(mask.device)

    def _forward(self, batch: dict) -> tuple[list, float]:
        """The fp32 logits of every view (one without TTA; each flipped back; of every run of an ensemble) on the
        model's device, and the seconds the model took."""
        dev = self.device
        was_training = [model.training for model in self.models]
        flips = list(TTA_FLIPS.values()) if self.tta else [()]
        try:
            # no_grad, not inference_mode: a model may keep tensors from this pass (caches) for training
            with torch.no_grad():
                pixels, *text = [batch[k].to(dev) for k in ("pixel_values", "input_ids", "attention_mask")]
                synchronize(dev)
                start = time.perf_counter()
                views = []
                with inference_precision(dev, self.precision):
                    for model in self.models:  # (an ensemble: every run's views, averaged alike)
                        model.eval()
                        for axes in flips:  # one pass per view: a model that looks across the batch sees what it saw
                            logits = model(pixels.flip(axes) if axes else pixels, *text).float()
                            views.append(logits.flip(axes) if axes else logits)
                synchronize(dev)
                seconds = time.perf_counter() - start
        finally:
            for model, training in zip(self.models, was_training):
                model.train(training)
        return views, seconds


__all__ = ["Predictor", "Prediction", "PredictionGroup", "TTA_FLIPS", "components", "kept_components", "load_source",
           "postprocess_mask", "to_original_size", "to_rgb"]
