"""``SegmentationDataset``: records -> model-ready tensors.

Each item is a dict:

=================  ==============================================================================
pixel_values       float32 (3, S, S): the image resized to S x S (Pillow's resize with the model's
                   ``preprocess.interpolation``, bilinear by default; antialiased when shrinking),
                   scaled to [0, 1], normalised with the model's mean/std
mask               float32 (1, S, S) of 0/1: the binarised mask resized with nearest neighbour
                   (as medvlsm does), so it stays exactly binary; zeros when the record has no mask
input_ids          int64 (L,) and attention_mask int64 (L,): the tokenised prompt
prompt             the prompt text; name: the record's name; index: position in the dataset
height, width      the original image size (for resizing predictions back)
has_mask           False for prediction records without a mask
=================  ==============================================================================

S is ``preprocess.image_size``. Randomness (the variant of a list-valued prompt, ``"random"``
prompts, augmentation) comes from generators seeded by (seed, epoch, index), so items are the
same on every run and with any number of DataLoader workers; :meth:`SegmentationDataset.set_epoch`
moves to another epoch's draws. The epoch lives in shared memory, so persistent workers see it too.

Augmentation (``augment=True``): horizontal and vertical flips (probability 0.5 each, applied to
image and mask alike) and mild brightness and contrast jitter of the image (factors in
[0.9, 1.1]). Photometric jitter is applied before normalisation; masks are never interpolated.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vlsm.data._util import preview
from vlsm.data.decoded import DecodedCache, DecodedCase, open_decoded_cache, resample_filter, resize_pair
from vlsm.data.images import load_image
from vlsm.data.masks import load_mask
from vlsm.data.prompts import RANDOM, is_prompt_key, prompt_keys, select_prompt
from vlsm.data.records import Record

JITTER = 0.1  # brightness and contrast factors are drawn from [1 - JITTER, 1 + JITTER]
_PROMPT_STREAM, _AUGMENT_STREAM = 0, 1


class SegmentationDataset(Dataset):
    """A torch ``Dataset`` over :class:`~vlsm.data.records.Record` objects (see module docstring).

    Args:
        records: the cases (e.g. from :func:`vlsm.data.load_split`).
        preprocess: the model's :class:`vlsm.models.base.Preprocess` (image_size, interpolation, mean, std).
        tokenizer: the model's tokenizer (``model.get_tokenizer()``); None means
            :class:`vlsm.text.tokenizers.NullTokenizer` (image-only models).
        prompt: ``"p0"``..``"p9"``, ``"random"`` or a fixed prompt text (see :mod:`vlsm.data.prompts`).
        augment: random flips and brightness/contrast jitter (training).
        seed: base seed of all random draws.
        require_masks: refuse records without a mask (False for prediction).
        cache: decode once (:mod:`vlsm.data.decoded`): each image and mask is decoded and resized on
            its first use and stored in the decoded-image cache on disk, which all DataLoader workers,
            epochs and later runs read instead of the files. True uses ``cache_dir``; a
            :class:`~vlsm.data.decoded.DecodedCache` is used as it is. Items are identical with and
            without it. An unwritable cache folder gives a warning and no cache.
        cache_dir: the cache folder (default :func:`vlsm.data.decoded.default_cache_dir`).
    """

    def __init__(self, records: Sequence[Record], preprocess, tokenizer=None, prompt: str = "p1",
                 augment: bool = False, seed: int = 0, require_masks: bool = True,
                 cache: Union[bool, DecodedCache] = False, cache_dir=None):
        self.records = list(records)
        size = int(getattr(preprocess, "image_size", 0) or 0)
        if size <= 0:
            raise ValueError(f"preprocess.image_size must be a positive integer, got {size!r}")
        self.image_size = size
        # the image resize filter (masks are always resized nearest)
        self.interpolation = getattr(preprocess, "interpolation", "bilinear")
        resample_filter(self.interpolation)  # a known filter, checked before any image is read
        self._decoded: Optional[DecodedCache] = None
        if isinstance(cache, DecodedCache):
            if cache.image_size != size:
                raise ValueError(f"the decoded-image cache holds {cache.image_size}px images but the model "
                                 f"takes {size}px: open it with image_size={size}")
            if cache.interpolation != self.interpolation:
                raise ValueError(f"the decoded-image cache holds {cache.interpolation}-resized images but the model "
                                 f"resizes {self.interpolation}: open it with interpolation={self.interpolation!r}")
            self._decoded = cache
        elif cache:
            self._decoded = open_decoded_cache(cache_dir, size, self.interpolation)
        # keys are taken now, so every epoch sees the files as they were when the dataset was built
        self._keys = ([self._decoded.key(r.image_path, r.mask_path) for r in self.records]
                      if self._decoded is not None else None)
        self.mean = torch.tensor(tuple(preprocess.mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(tuple(preprocess.std), dtype=torch.float32).view(-1, 1, 1)
        if self.mean.numel() != 3 or self.std.numel() != 3:
            raise ValueError("preprocess.mean and preprocess.std must have 3 values (RGB)")
        if tokenizer is None:
            from vlsm.text.tokenizers import NullTokenizer

            tokenizer = NullTokenizer()
        self.tokenizer = tokenizer
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a text, got {type(prompt).__name__}")
        self.prompt = prompt
        self.augment = bool(augment)
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self.require_masks = require_masks
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        # value -> float32 of each uint8 value, by the very operations the pipeline defines
        unit = np.arange(256, dtype=np.uint8).astype(np.float32) / 255.0
        self._unit_lut = np.stack([unit] * 3)
        self._normalise_lut = ((torch.from_numpy(unit).view(1, -1) - self.mean.view(3, 1)) / self.std.view(3, 1)).numpy()
        self._token_cache: dict = {}
        self._validate()

    def _validate(self) -> None:
        if self.require_masks:
            no_mask = [r.name for r in self.records if r.mask_path is None]
            if no_mask:
                raise ValueError(f"{len(no_mask)} record(s) have no mask: {preview(no_mask)}; "
                                 f"pass require_masks=False for prediction")
        if is_prompt_key(self.prompt):
            lacking = [r for r in self.records if self.prompt not in r.prompts]
            if lacking:
                keys = prompt_keys(lacking[0].prompts)
                raise ValueError(
                    f"prompt {self.prompt!r} is missing in {len(lacking)} of {len(self.records)} record(s) "
                    f"({preview([f'{r.dataset}/{r.name}' for r in lacking])}); "
                    f"{lacking[0].name!r} has: {', '.join(keys) or 'no prompts'}. Choose a prompt they all "
                    f"have, or a fixed prompt text")
        elif self.prompt == RANDOM:
            lacking = [r.name for r in self.records if not [k for k in prompt_keys(r.prompts) if k != "p0"]]
            if lacking:
                raise ValueError(f"prompt 'random' needs prompts p1..p9, missing in {len(lacking)} record(s): "
                                 f"{preview(lacking)}")

    # -- epochs and randomness -----------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use the random draws of ``epoch`` (prompts and augmentation)."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index), stream])

    # -- items --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def prompt_for(self, index: int) -> str:
        """The prompt text item ``index`` gets in the current epoch."""
        rec = self.records[index]
        # a generator only where a draw happens (seeding one costs more than the rest of the choice)
        drawn = self.prompt == RANDOM or (is_prompt_key(self.prompt) and not isinstance(rec.prompts.get(self.prompt), str))
        return select_prompt(rec.prompts, self.prompt, self._rng(index, _PROMPT_STREAM) if drawn else None,
                             name=rec.name)

    def _tokens(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of one prompt; each distinct prompt is tokenised once."""
        cached = self._token_cache.get(prompt)
        if cached is None:
            tokens = self.tokenizer([prompt])
            cached = self._token_cache[prompt] = (tokens["input_ids"][0], tokens["attention_mask"][0])
        return cached[0].clone(), cached[1].clone()

    def _pixels(self, image: np.ndarray, lut: np.ndarray) -> torch.Tensor:
        """float32 (3, S, S) = ``lut[c][image[..., c]]``: the per-value arithmetic of the pipeline looked up
        instead of computed per pixel (the same float32 operations on the same 256 values: exact)."""
        out = np.empty((3,) + image.shape[:2], np.float32)
        for c in range(3):
            np.take(lut[c], image[..., c], out=out[c])
        return torch.from_numpy(out)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        rec = self.records[index]
        image, small, height, width = self._resized(index, rec)
        s = self.image_size
        if small is not None:
            target = torch.from_numpy(small.astype(np.float32)).unsqueeze(0)
        else:
            target = torch.zeros(1, s, s, dtype=torch.float32)
        if self.augment:
            # scaled to [0, 1] (image / 255), jittered, then normalised
            pixels = self._pixels(image, self._unit_lut)
            pixels, target = self._augment(pixels, target, self._rng(index, _AUGMENT_STREAM))
            pixels = (pixels - self.mean) / self.std
        else:
            pixels = self._pixels(image, self._normalise_lut)  # (image / 255 - mean) / std
        prompt = self.prompt_for(index)
        input_ids, attention_mask = self._tokens(prompt)
        return {
            "pixel_values": pixels,
            "mask": target,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "prompt": prompt,
            "name": rec.name,
            "index": int(index),
            "height": int(height),
            "width": int(width),
            "has_mask": small is not None,
        }

    def read_image(self, rec: Record) -> Image.Image:
        """The record's image in RGB (a subclass may keep images in memory: vlsm.Predictor does)."""
        return load_image(rec.image_path)

    def _resized(self, index: int, rec: Record) -> tuple:
        """The item's pixels before normalisation: from the decoded-image cache when it has them."""
        key = self._keys[index] if self._keys is not None else None
        if key is None:
            return self._load_resized(rec)
        entry = self._decoded.read(key, rec.dataset)
        if entry is not None:
            return entry.image, entry.mask, entry.height, entry.width
        out = self._load_resized(rec)
        self._decoded.write(key, DecodedCase(*out), rec.dataset, files=(rec.image_path, rec.mask_path))
        return out

    def _load_resized(self, rec: Record) -> tuple:
        """(uint8 image (S,S,3), bool mask (S,S) or None, original height, original width)."""
        image = self.read_image(rec)
        width, height = image.size
        mask = None
        if rec.mask_path is not None:
            mask = load_mask(rec.mask_path, size=(width, height), image_path=rec.image_path, name=rec.name)
        resized, small = resize_pair(image, mask, self.image_size, self.interpolation)
        return resized, small, height, width

    @staticmethod
    def _augment(pixels: torch.Tensor, target: torch.Tensor, rng: np.random.Generator):
        if rng.random() < 0.5:
            pixels, target = pixels.flip(-1), target.flip(-1)
        if rng.random() < 0.5:
            pixels, target = pixels.flip(-2), target.flip(-2)
        brightness = float(rng.uniform(1 - JITTER, 1 + JITTER))
        contrast = float(rng.uniform(1 - JITTER, 1 + JITTER))
        grey_mean = (0.299 * pixels[0] + 0.587 * pixels[1] + 0.114 * pixels[2]).mean()
        pixels = ((pixels - grey_mean) * contrast + grey_mean) * brightness
        return pixels.clamp_(0.0, 1.0), target.contiguous()


__all__ = ["SegmentationDataset"]
