"""What every segmentation model in `vlsm` promises to the rest of the toolkit.

A model is built only through :func:`vlsm.create_model`. It carries a :class:`ModelSpec` (how to
build it again) and a :class:`Preprocess` (what its inputs must look like), so datasets, training,
evaluation and prediction never hard-code an image size, a normalisation or a tokenizer.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

# SPEC_FILE, WEIGHTS_FILE: a model folder's config and weights files, named with the folder format
from vlsm.models.folder import SPEC_FILE, WEIGHTS_FILE, write_model_folder  # noqa: F401

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The image resize filters a model may ask for (Pillow's filters of the same names; vlsm.data.decoded maps them)
INTERPOLATIONS = ("bilinear", "bicubic", "lanczos", "nearest")


@dataclass
class Preprocess:
    """Input contract of a model: square image size, resize filter, normalisation and text tokenisation
    (data, like timm's pretrained_cfg; ``create_model(..., interpolation=, image_mean=, image_std=)`` sets them)."""

    image_size: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    # "clip-bpe", "wordpiece" or None for image-only models
    tokenizer: Optional[str] = None
    context_length: int = 0
    # Pillow filter of the image resize to image_size (one of INTERPOLATIONS; masks are always nearest)
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ModelSpec:
    """Everything :func:`vlsm.create_model` needs to rebuild the same architecture."""

    name: str
    preset: str = "paper"
    variant: Optional[str] = None
    pretrained: Optional[str] = None
    overrides: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def without_weights(self) -> "ModelSpec":
        """The same architecture with every weight source removed (top level and nested, e.g. an
        ensemble's ``clipseg={"pretrained": ...}`` or BiomedCLIPSeg-D's ``decoder_pretrained``):
        what a saved model or checkpoint needs, since its own file holds all the weights."""
        return dataclasses.replace(self, pretrained=None, overrides=_drop_weight_sources(self.overrides))

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        from vlsm.utils import dataclass_from_dict

        return dataclass_from_dict(cls, d, "model spec")


WEIGHT_SOURCE_KEYS = ("pretrained", "decoder_pretrained")


def _drop_weight_sources(value):
    if isinstance(value, dict):
        return {k: _drop_weight_sources(v) for k, v in value.items() if k not in WEIGHT_SOURCE_KEYS}
    return value


class SegmentationModel(nn.Module):
    """Base class: ``forward(pixel_values, input_ids, attention_mask) -> logits (B, 1, H, W)``.

    Logits come at the input's spatial size. Image-only models accept and ignore the text.
    Subclasses set ``self.preprocess`` and may override :meth:`get_tokenizer`.
    """

    uses_text: bool = False
    spec: ModelSpec
    preprocess: Preprocess

    def forward(self, pixel_values: torch.Tensor, input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    # -- the frozen image encoder, split off (what training's feature cache reuses) -----------------
    def has_frozen_image_features(self) -> bool:
        """Whether :meth:`frozen_image_features` returns features now: some image encoder of the model is
        frozen and deterministic, so its outputs are a fixed function of the image."""
        return False

    def frozen_image_features(self, pixel_values: torch.Tensor) -> Optional[tuple]:
        """The outputs of the model's frozen, deterministic image encoder(s) for ``pixel_values``: a tuple
        of tensors whose first axis is the batch, or ``None`` when no image encoder is frozen. Row ``i``
        depends on image ``i`` alone, so rows computed once may be reused for the same image later."""
        return None

    def forward_with_features(self, pixel_values: torch.Tensor, features: Optional[tuple],
                              input_ids: Optional[torch.Tensor] = None,
                              attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``forward`` with the frozen image features given (as :meth:`frozen_image_features` returns them
        for these images); ``features=None`` computes them. A model's ``forward`` is this with ``None``,
        so both paths run the same code after the frozen encoder."""
        if features is not None:
            raise ValueError(f"{type(self).__name__} has no frozen image encoder: pass features=None")
        return self(pixel_values, input_ids, attention_mask)

    def get_tokenizer(self):
        """The callable that turns prompts into ``input_ids``/``attention_mask`` for this model."""
        from vlsm.text.tokenizers import NullTokenizer

        return NullTokenizer()

    def parameter_counts(self) -> tuple[int, int]:
        """(total, trainable) number of parameters."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return total, trainable

    # -- what a model folder records (vlsm.models.folder) ------------------------------------------
    def architecture(self) -> dict:
        """The resolved architecture, JSON-serialisable: the model's builder rebuilds this model from it (the
        ``architecture`` of its folder's ``vlsm_config.json``)."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its architecture")

    def vlsms(self) -> dict:
        """The vision-language models inside this one, by name (an ensemble's VLSMs, Stack's ``vlsm``); a model
        folder keeps each one's tokenizer files in ``tokenizer/<name>/``. Empty for a single model."""
        return {}

    # -- persistence -------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, standalone: bool = False) -> Path:
        """Write the model folder (:mod:`vlsm.models.folder`) that :func:`vlsm.load_pretrained` rebuilds it from.

        Slim by default: frozen tensors that come from a weight source named in the spec (a pretrained
        encoder) are left out and rebuilt from that source on loading (:mod:`vlsm.models.frozen`);
        ``standalone=True`` writes every weight, so the folder loads without the source."""
        return write_model_folder(self, directory, standalone=standalone)
