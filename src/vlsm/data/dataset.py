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

S is ``preprocess.image_size``; the image and prompt go through the model's
:class:`~vlsm.data.preprocessing.Preprocessor` (the same object :class:`vlsm.Predictor` uses). Randomness (the variant of a list-valued prompt, ``"random"``
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
from torch.utils.data import Dataset

from vlsm.data._util import preview
from vlsm.data.decoded import DecodedCache, DecodedCase, open_decoded_cache
from vlsm.data.images import load_image
from vlsm.data.masks import load_mask
from vlsm.data.preprocessing import Preprocessor
from vlsm.data.prompts import RANDOM, is_prompt_key, prompt_keys, select_prompt
from vlsm.data.records import Record

JITTER = 0.1  # brightness and contrast factors are drawn from [1 - JITTER, 1 + JITTER]
_PROMPT_STREAM, _AUGMENT_STREAM = 0, 1


class SegmentationDataset(Dataset):
    """A torch ``Dataset`` over :class:`~vlsm.data.records.Record` objects (see module docstring).

    Args:
        records: the cases (e.g. from :func:`vlsm.data.load_split`).
        preprocess: the model's :class:`vlsm.models.base.Preprocess` (image_size, interpolation, mean, std),
            or a :class:`~vlsm.data.preprocessing.Preprocessor` (then without ``tokenizer``: it has its own).
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
        if isinstance(preprocess, Preprocessor):
            if tokenizer is not None:
                raise ValueError("a Preprocessor brings its own tokenizer: pass tokenizer=None with it")
            self.preprocessor = preprocess
        else:
            self.preprocessor = Preprocessor(preprocess, tokenizer)
        pre = self.preprocessor
        self.image_size, self.interpolation, self.tokenizer = pre.image_size, pre.interpolation, pre.tokenizer
        self._decoded = self._open_cache(cache, cache_dir)
        # keys are taken now, so every epoch sees the files as they were when the dataset was built
        self._keys = ([self._decoded.key(r.image_path, r.mask_path) if r.slice_index is None else None
                       for r in self.records] if self._decoded is not None else None)
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a text, got {type(prompt).__name__}")
        self.prompt = prompt
        self.augment = bool(augment)
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self.require_masks = require_masks
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._validate()

    def _open_cache(self, cache, cache_dir) -> Optional[DecodedCache]:
        """The decoded-image cache to read and fill, checked to hold this model's image size and filter."""
        size, interpolation = self.image_size, self.interpolation
        if isinstance(cache, DecodedCache):
            if cache.image_size != size:
                raise ValueError(f"the decoded-image cache holds {cache.image_size}px images but the model "
                                 f"takes {size}px: open it with image_size={size}")
            if cache.interpolation != interpolation:
                raise ValueError(f"the decoded-image cache holds {cache.interpolation}-resized images but the model "
                                 f"resizes {interpolation}: open it with interpolation={interpolation!r}")
            return cache
        return open_decoded_cache(cache_dir, size, interpolation) if cache else None

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
        pre = self.preprocessor
        if self.augment:
            # scaled to [0, 1] (image / 255), jittered, then normalised
            pixels, target = self._augment(pre.scale(image), target, self._rng(index, _AUGMENT_STREAM))
            pixels = pre.standardise(pixels)
        else:
            pixels = pre.normalise(image)  # (image / 255 - mean) / std
        prompt = self.prompt_for(index)
        input_ids, attention_mask = pre.token_pair(prompt)
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
        image = load_image(rec.image_path, rec.slice_index)
        width, height = image.size
        mask = None
        if rec.mask_path is not None:
            mask = load_mask(rec.mask_path, size=(width, height), image_path=rec.image_path, name=rec.name)
        resized, small = self.preprocessor.resize_pair(image, mask)
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
