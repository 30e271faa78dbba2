"""One preprocessing object: a model's input contract (:class:`~vlsm.models.base.Preprocess`) as operations.

:class:`Preprocessor` turns an image into the model's pixel tensor and a prompt into its tokens. The
dataset (training and evaluation), :class:`vlsm.Predictor` (``vlsm predict``, the web app) and the ONNX
export's ``preprocess.json`` (:func:`preprocess_json`) all go through it, so a model sees the same
inputs everywhere::

    pre = Preprocessor.for_model(model)
    pixels = pre.pixels(image)              # (3, S, S) float32, image: PIL image or numpy array
    tokens = pre.tokens(["polyp", "a round polyp"])   # {"input_ids": (2, L), "attention_mask": (2, L)}

The image: RGB (grey/RGBA converted, alpha dropped), resized to S x S with Pillow's filter named by
``preprocess.interpolation`` (antialiased when shrinking) as uint8, then ``float32 / 255`` and
``(x - mean) / std`` per channel. Those last two steps are looked up per uint8 value (the same float32
operations on the 256 values, so the result is bit for bit the formula's). A mask is resized with
nearest neighbour, so it stays exactly binary. A prompt: the tokenizer's ``input_ids`` and
``attention_mask``, padded to the context length; each distinct prompt is tokenised once.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from vlsm.data.decoded import resample_filter, resize_pair
from vlsm.data.images import to_rgb


class Preprocessor:
    """Image -> tensor and prompt -> tokens for one model (see the module docstring).

    Args:
        preprocess: the model's :class:`vlsm.models.base.Preprocess` (image_size, interpolation, mean, std,
            tokenizer, context_length).
        tokenizer: the model's tokenizer (``model.get_tokenizer()``); None means
            :class:`vlsm.text.tokenizers.NullTokenizer` (image-only models).
    """

    def __init__(self, preprocess, tokenizer=None):
        size = int(getattr(preprocess, "image_size", 0) or 0)
        if size <= 0:
            raise ValueError(f"preprocess.image_size must be a positive integer, got {size!r}")
        self.preprocess = preprocess
        self.image_size = size
        # the image resize filter (masks are always resized nearest), checked before any image is read
        self.interpolation = getattr(preprocess, "interpolation", "bilinear")
        resample_filter(self.interpolation)
        self.mean = torch.tensor(tuple(preprocess.mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(tuple(preprocess.std), dtype=torch.float32).view(-1, 1, 1)
        if self.mean.numel() != 3 or self.std.numel() != 3:
            raise ValueError("preprocess.mean and preprocess.std must have 3 values (RGB)")
        if tokenizer is None:
            from vlsm.text.tokenizers import NullTokenizer

            tokenizer = NullTokenizer()
        self.tokenizer = tokenizer
        # value -> float32 of each uint8 value, by the very operations the pipeline defines
        unit = np.arange(256, dtype=np.uint8).astype(np.float32) / 255.0
        self._unit_lut = np.stack([unit] * 3)
        self._normalise_lut = ((torch.from_numpy(unit).view(1, -1) - self.mean.view(3, 1)) / self.std.view(3, 1)).numpy()
        self._token_cache: dict = {}

    @classmethod
    def for_model(cls, model) -> "Preprocessor":
        """The preprocessor of a :class:`~vlsm.models.SegmentationModel` (its preprocess and tokenizer)."""
        return cls(model.preprocess, model.get_tokenizer())

    def __repr__(self) -> str:
        return (f"Preprocessor(image_size={self.image_size}, interpolation={self.interpolation!r}, "
                f"tokenizer={self.tokenizer!r})")

    # -- images -------------------------------------------------------------------------------
    def resize_pair(self, image: Image.Image, mask: Optional[np.ndarray] = None):
        """(uint8 (S, S, 3), bool (S, S) or None): the RGB image and its boolean mask at the model's size
        (:func:`vlsm.data.decoded.resize_pair`, what the decoded-image cache stores)."""
        return resize_pair(image, mask, self.image_size, self.interpolation)

    def normalise(self, resized: np.ndarray) -> torch.Tensor:
        """float32 (3, S, S) ``(resized / 255 - mean) / std`` of a uint8 (S, S, 3) image."""
        return self._lookup(resized, self._normalise_lut)

    def scale(self, resized: np.ndarray) -> torch.Tensor:
        """float32 (3, S, S) ``resized / 255`` (before photometric augmentation, then :meth:`standardise`)."""
        return self._lookup(resized, self._unit_lut)

    def standardise(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(pixels - mean) / std`` of (3, S, S) values in [0, 1]."""
        return (pixels - self.mean) / self.std

    def pixels(self, image: Union[Image.Image, np.ndarray]) -> torch.Tensor:
        """The model's float32 (3, S, S) input of an in-memory image (PIL or numpy, converted as files are)."""
        resized, _ = self.resize_pair(to_rgb(image))
        return self.normalise(resized)

    @staticmethod
    def _lookup(image: np.ndarray, lut: np.ndarray) -> torch.Tensor:
        """float32 (3, S, S) = ``lut[c][image[..., c]]``: the per-value arithmetic of the pipeline looked up
        instead of computed per pixel (the same float32 operations on the same 256 values: exact)."""
        out = np.empty((3,) + image.shape[:2], np.float32)
        for c in range(3):
            np.take(lut[c], image[..., c], out=out[c])
        return torch.from_numpy(out)

    # -- prompts ------------------------------------------------------------------------------
    def token_pair(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids (L,), attention_mask (L,)) of one prompt; each distinct prompt is tokenised once."""
        cached = self._token_cache.get(prompt)
        if cached is None:
            tokens = self.tokenizer([prompt])
            cached = self._token_cache[prompt] = (tokens["input_ids"][0], tokens["attention_mask"][0])
        return cached[0].clone(), cached[1].clone()

    def tokens(self, prompts: Union[str, Sequence[str]]) -> dict:
        """``{"input_ids": (n, L), "attention_mask": (n, L)}`` int64 of one prompt or a list of them."""
        pairs = [self.token_pair(p) for p in ([prompts] if isinstance(prompts, str) else prompts)]
        return {"input_ids": torch.stack([ids for ids, _ in pairs]),
                "attention_mask": torch.stack([mask for _, mask in pairs])}

    # -- as data ------------------------------------------------------------------------------
    def to_json(self, uses_text: bool = True) -> dict:
        """What a runtime without vlsm must do to an image and a prompt (preprocess.json's keys for them)."""
        pre = self.preprocess
        return {
            "image_size": self.image_size,
            "image": ("RGB (grey/RGBA converted, alpha dropped); resized to image_size x image_size with Pillow's "
                      f"{self.interpolation} resize (the interpolation field); float32 / 255; (x - mean) / std per "
                      "channel; layout (B, 3, H, W)"),
            "interpolation": self.interpolation,  # a Pillow filter name: Image.Resampling[interpolation.upper()]
            "mean": list(pre.mean), "std": list(pre.std),
            "tokenizer": pre.tokenizer,
            "context_length": pre.context_length if uses_text else 0,
        }


def preprocess_json(model, *, export_format: str, opset: int, input_names: list, threshold: float,
                    default_prompt: Optional[str], tokenizer_files: list, tta_flip_axes: Sequence = ((),),
                    postprocessing: Optional[dict] = None) -> dict:
    """``preprocess.json`` of an ONNX export of ``model``: everything a runtime must do around the graph
    (preprocess the image and prompt as :meth:`Preprocessor.to_json` says, run the graph on each test-time
    view (``tta_flip_axes``: the axes each view flips, ``[[]]`` for none), resize each view's logits back,
    sigmoid, average, threshold, then the ``postprocessing`` rule: ``{"rule": "none" | "largest_component" |
    "min_size", "min_size": fraction of the image's pixels or None}``)."""
    s = model.preprocess.image_size
    length = model.preprocess.context_length
    shapes = {"pixel_values": ["batch", 3, s, s], "input_ids": ["batch", length], "attention_mask": ["batch", length]}
    return {
        "format": export_format,
        "model": model.spec.name, "variant": model.spec.variant, "preset": model.spec.preset,
        "opset": opset,
        **Preprocessor(model.preprocess).to_json(uses_text=model.uses_text),
        # input_ids / attention_mask = the encodings of these files side by side (one file but for Ensemble-C)
        "tokenizer_files": tokenizer_files,
        "default_prompt": default_prompt,
        "inputs": {name: {"shape": shapes[name], "dtype": "float32" if name == "pixel_values" else "int64"}
                   for name in input_names},
        "outputs": {"logits": {"shape": ["batch", 1, s, s], "dtype": "float32"}},
        "threshold": threshold,
        "postprocess": ("resize logits[i, 0] to the image's original (height, width) with bilinear interpolation "
                        "(half-pixel centres, align_corners=False, no antialiasing), then sigmoid, then "
                        "mask = probability > threshold"),
        # test-time augmentation: run the graph on each view (pixel_values flipped on these axes), flip each view's
        # logits back on the same axes, resize and sigmoid each, then average the probabilities
        "tta": {"flip_axes": [list(axes) for axes in tta_flip_axes], "combine": "mean of the probabilities"},
        # then on the mask: keep every 8-connected component (none), only the largest (the first in raster order
        # among equals), or those of at least min_size x the image's pixels
        "postprocessing": {"rule": "none", "min_size": None, "connectivity": 8, **(postprocessing or {})},
    }


__all__ = ["Preprocessor", "preprocess_json"]
