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
threshold.
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

ImageInput = Union[str, Path, Image.Image, np.ndarray]


@dataclass
class Prediction:
    """One image's prediction, at the image's original size."""

    name: str                    # image stem / record name
    probabilities: np.ndarray    # (H, W) float32 in [0, 1]
    mask: np.ndarray             # (H, W) bool: probabilities > threshold
    prompt: str                  # the text given to the model ("" when none: image-only models)
    seconds: float               # model time for this image (its share of the batch)


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
    mask: torch.Tensor           # (n, H, W) bool: probabilities > threshold
    seconds: float               # model time per image (each image's share of its batch)


class Predictor:
    """Segment images with a trained or pretrained model (see the module docstring).

    Args:
        source: a run folder, a run's ``model/`` folder, a ``.ckpt`` checkpoint, a registered model
            name (built with ``pretrained`` and ``model_options``, e.g. ``preset="tiny"``) or a
            :class:`~vlsm.models.SegmentationModel`.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (fp32 on a CPU; bf16 autocast on a CUDA GPU with bfloat16, else fp16),
            ``32-true``, ``16-mixed`` or ``bf16-mixed``.
        batch_size: images per forward pass.
        trust_checkpoint: load a ``.ckpt`` (or weight file) that needs arbitrary Python objects. Loading
            such a file can run code: only for files from a trusted source; without it they are refused.
    """

    def __init__(self, source: Union[str, Path, SegmentationModel], device: str = "auto",
                 precision: str = "auto", *, pretrained: Optional[str] = None, batch_size: int = 8,
                 trust_checkpoint: bool = False, **model_options):
        from vlsm.runs import RunFolder, load_trained_model, model_label, summary_label

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        autocast_dtype(self.precision)  # refuse an unusable precision now, not at the first image
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.config = None
        run = None
        if isinstance(source, SegmentationModel):
            if pretrained or model_options:
                raise ValueError("pretrained= and model options build a model from its name; "
                                 "a model object is used as it is")
            model = source
        elif isinstance(source, (str, Path)):
            from vlsm.models import create_model, list_models

            text, names = str(source), list_models()
            registered = isinstance(source, str) and text in names
            # a run folder named like a model is the run, unless weights or options ask for the model
            if registered and (pretrained or model_options or not Path(text).exists()):
                model = create_model(text, pretrained=pretrained, trust_checkpoint=trust_checkpoint, **model_options)
            elif pretrained or model_options:
                raise ValueError(f"{text!r} is not a registered model name ({', '.join(names)}); pretrained= and "
                                 f"model options are for those, a trained model knows its own")
            elif Path(text).exists() or isinstance(source, Path) or "/" in text or text.endswith(".ckpt"):
                # a missing path fails here, naming it
                model, self.config = load_trained_model(source, trust_checkpoint=trust_checkpoint)
                run = RunFolder.containing(source)
            else:
                raise ValueError(f"{text!r} is neither an existing run folder, model folder or .ckpt file nor "
                                 f"a registered model name ({', '.join(names)})")
        else:
            raise TypeError(f"source must be a path, a model name or a SegmentationModel, "
                            f"got {type(source).__name__}")
        self.model = model.eval().to(self.device)
        self.label = (run and summary_label(run.path)) or model_label(model)
        self._preprocessor: Optional[Preprocessor] = None

    def __repr__(self) -> str:
        return f"Predictor({self.label!r}, device={str(self.device)!r}, precision={self.precision!r})"

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
    def predict(self, images, prompts=None, threshold: float = 0.5) -> list[Prediction]:
        """Predict one image or a list of them (paths, PIL images, numpy arrays), in order.

        ``prompts``: None (the run's :attr:`default_prompt`), one text for every image, or one text
        per image. Image-only models take no prompt.
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
                        threshold: float = 0.5) -> Iterator[Prediction]:
        """Predict dataset records in order; ``prompt`` is p0..p9, ``random`` (resolved per record, as
        in evaluation) or a text for all. ``Prediction.prompt`` is the text each record got."""
        records = list(records)
        return self._run(self._record_items(records, prompt), [r.name for r in records], threshold)

    # -- the one inference loop ---------------------------------------------------------------
    def predict_record_groups(self, records: Sequence[Record], prompt: str = "p1",
                              threshold: float = 0.5) -> Iterator[PredictionGroup]:
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

    def _run(self, items: Iterable[dict], names: Sequence[str], threshold: float) -> Iterator[Prediction]:
        """Predictions in input order, converted to numpy one forward batch at a time."""
        for groups in self._batches(items, threshold):
            batch = {}
            for group in groups:
                probabilities, mask = group.probabilities.cpu().numpy(), group.mask.cpu().numpy()
                for j, index in enumerate(group.indices):
                    batch[index] = Prediction(name=names[index], probabilities=probabilities[j],
                                              mask=mask[j], prompt=group.prompts[j], seconds=group.seconds)
            yield from (batch[i] for i in sorted(batch))

    def _batches(self, items: Iterable[dict], threshold: float) -> Iterator[list]:
        """Each forward batch's :class:`PredictionGroup` list (one group per original size); ``items``
        are collated ``batch_size`` at a time as a DataLoader would."""
        from torch.utils.data import default_collate

        items = iter(items)
        while True:
            chunk = list(itertools.islice(items, self.batch_size))
            if not chunk:
                return
            batch = default_collate(chunk)
            logits, seconds = self._forward(batch)
            by_size: dict = {}
            for i, size in enumerate(zip(batch["height"].tolist(), batch["width"].tolist())):
                by_size.setdefault(size, []).append(i)  # images of one size share one resize
            groups = []
            with torch.inference_mode():
                for size, rows in by_size.items():
                    chosen = logits if len(rows) == len(logits) else logits[torch.tensor(rows, device=logits.device)]
                    probabilities = _probabilities(chosen, size)
                    groups.append(PredictionGroup(
                        indices=[int(batch["index"][i]) for i in rows], prompts=[batch["prompt"][i] for i in rows],
                        probabilities=probabilities, mask=_threshold(probabilities, threshold),
                        seconds=seconds / len(logits)))
            yield groups

    def _forward(self, batch: dict) -> tuple[torch.Tensor, float]:
        """fp32 logits on the model's device and the seconds the model took."""
        dev = self.device
        was_training = self.model.training
        self.model.eval()
        try:
            # no_grad, not inference_mode: a model may keep tensors from this pass (caches) for training
            with torch.no_grad():
                inputs = [batch[k].to(dev) for k in ("pixel_values", "input_ids", "attention_mask")]
                synchronize(dev)
                start = time.perf_counter()
                with inference_precision(dev, self.precision):
                    logits = self.model(*inputs).float()
                synchronize(dev)
                seconds = time.perf_counter() - start
        finally:
            self.model.train(was_training)
        return logits, seconds


__all__ = ["Predictor", "Prediction", "PredictionGroup", "to_original_size", "to_rgb"]
