"""``vlsm.Predictor``: apply a model to images — the one prediction implementation.

``vlsm predict``, ``vlsm evaluate``, the end-of-training evaluation, ``vlsm figure`` and the web app
all run their images through :class:`Predictor`::

    import vlsm
    predictor = vlsm.Predictor("runs/kvasir-clipseg")          # a run, model/ folder, .ckpt or a name
    [p] = predictor.predict("scan.png", prompts="polyp")
    p.mask.shape == p.probabilities.shape == (height, width)   # the image's original size

The maths is that of ``vlsm evaluate``: the image is preprocessed as the model's config says (the
same :class:`vlsm.data.SegmentationDataset` path as training), the logits are resized to the
image's original size (bilinear, ``align_corners=False``), then the sigmoid, then the threshold.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from vlsm.data.dataset import SegmentationDataset
from vlsm.data.images import array_to_uint8, load_image
from vlsm.data.prompts import RANDOM, is_prompt_key
from vlsm.data.records import Record
from vlsm.devices import autocast_dtype, inference_precision, resolve_device, resolve_precision, synchronize
from vlsm.models import SegmentationModel

ImageInput = Union[str, Path, Image.Image, np.ndarray]
# Per-image prompts travel as each record's own prompt under this key (a plain text, never a draw).
_OWN_PROMPT = "p1"


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


def to_rgb(image: Union[Image.Image, np.ndarray]) -> Image.Image:
    """An in-memory image in RGB, converted as :func:`vlsm.data.load_image` converts files: 16-bit and
    float values scaled to 8 bits, grey and RGBA to RGB (alpha dropped)."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
            raise ValueError(f"an image array must be (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, "
                             f"got shape {image.shape}")
        image = Image.fromarray(array_to_uint8(arr))
    elif not isinstance(image, Image.Image):
        raise TypeError(f"images are paths, PIL images or numpy arrays, got {type(image).__name__}")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = Image.fromarray(array_to_uint8(np.asarray(image)))
    return image if image.mode == "RGB" else image.convert("RGB")


class _Inputs(SegmentationDataset):
    """Images held in memory, preprocessed exactly like dataset images."""

    def __init__(self, images: Sequence[Image.Image], records: Sequence[Record], *args, **kwargs):
        self.images = list(images)
        super().__init__(records, *args, **kwargs)

    def read_image(self, rec: Record) -> Image.Image:
        return self.images[int(rec.name)]  # records are named by their position


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

    def __repr__(self) -> str:
        return f"Predictor({self.label!r}, device={str(self.device)!r}, precision={self.precision!r})"

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
        names, pictures, records = [], [], []
        for i, (image, text) in enumerate(zip(images, texts)):
            if isinstance(image, (str, Path)):
                pictures.append(load_image(image))
                name = Path(image).stem
            else:
                pictures.append(to_rgb(image))
                name = Path(getattr(image, "filename", "") or "").stem or f"image-{i}"
            names.append(name)
            records.append(Record(name=str(i), image_path=Path(name), mask_path=None, prompts={_OWN_PROMPT: text}))
        dataset = _Inputs(pictures, records, self.model.preprocess, self.model.get_tokenizer(),
                          prompt=_OWN_PROMPT, augment=False, require_masks=False)
        return [dataclasses.replace(p, name=names[int(p.name)])
                for p in self._run(dataset, threshold)]

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
        dataset = self._records_dataset(list(records), prompt)
        return self._run(dataset, threshold)

    # -- the one inference loop ---------------------------------------------------------------
    def predict_record_groups(self, records: Sequence[Record], prompt: str = "p1",
                              threshold: float = 0.5) -> Iterator[PredictionGroup]:
        """:meth:`predict_records` without leaving the device: one :class:`PredictionGroup` per
        original size within each forward batch (for callers that score on the device, like
        :func:`vlsm.evaluation.evaluate_records`). ``indices`` are positions in ``records``."""
        for groups in self._batches(self._records_dataset(records, prompt), threshold):
            yield from groups

    def _records_dataset(self, records: Sequence[Record], prompt: str) -> SegmentationDataset:
        # model inputs only: a caller that scores reads the masks itself, at their original size
        inputs = [dataclasses.replace(r, mask_path=None) for r in records]
        return SegmentationDataset(inputs, self.model.preprocess, self.model.get_tokenizer(), prompt=prompt,
                                   augment=False, require_masks=False)

    def _run(self, dataset: SegmentationDataset, threshold: float) -> Iterator[Prediction]:
        """Predictions in dataset order, converted to numpy one forward batch at a time."""
        for groups in self._batches(dataset, threshold):
            batch = {}
            for group in groups:
                probabilities, mask = group.probabilities.cpu().numpy(), group.mask.cpu().numpy()
                for j, index in enumerate(group.indices):
                    batch[index] = Prediction(name=dataset.records[index].name, probabilities=probabilities[j],
                                              mask=mask[j], prompt=group.prompts[j], seconds=group.seconds)
            yield from (batch[i] for i in sorted(batch))

    def _batches(self, dataset: SegmentationDataset, threshold: float) -> Iterator[list]:
        """Each forward batch's :class:`PredictionGroup` list (one group per original size)."""
        from torch.utils.data import DataLoader

        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=0)
        for batch in loader:
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
