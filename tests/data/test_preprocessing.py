"""The one preprocessing object: the dataset, vlsm.Predictor and preprocess.json all go through it, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from naming import raises_naming
from vlsm.data import Record, SegmentationDataset
from vlsm.data.preprocessing import Preprocessor
from vlsm.models.base import Preprocess
from vlsm.text.tokenizers import ClipBPETokenizer

CLIP = Preprocess(image_size=16, mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711),
                  tokenizer="clip-bpe", context_length=12, interpolation="bicubic")


@pytest.fixture()
def case(tmp_path):
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "im.png")
    return rgb, Record("c", tmp_path / "im.png", None, {"p1": "a round polyp"})


def test_pixels_and_tokens_are_the_dataset_items(case):
    rgb, rec = case
    pre = Preprocessor(CLIP, ClipBPETokenizer(12))
    item = SegmentationDataset([rec], pre, prompt="p1", require_masks=False)[0]
    assert torch.equal(pre.pixels(rgb), item["pixel_values"])          # a numpy array in memory
    assert torch.equal(pre.pixels(Image.fromarray(rgb)), item["pixel_values"])
    grey = rgb[..., 0]
    assert torch.equal(pre.pixels(grey), pre.pixels(np.repeat(grey[..., None], 3, -1)))
    resized, mask = pre.resize_pair(Image.fromarray(rgb), np.ones((37, 23), bool))
    assert resized.shape == (16, 16, 3) and resized.dtype == np.uint8 and mask.all()
    # the formula written out (bicubic resize, / 255, minus mean, over std)
    small = np.asarray(Image.fromarray(rgb).resize((16, 16), Image.BICUBIC), np.float32) / 255.0
    want = (torch.from_numpy(small).permute(2, 0, 1) - torch.tensor(CLIP.mean).view(3, 1, 1)) / torch.tensor(CLIP.std).view(3, 1, 1)
    assert torch.equal(pre.pixels(rgb), want)
    tokens = pre.tokens(["a round polyp", "polyp"])
    expected = ClipBPETokenizer(12)(["a round polyp", "polyp"])
    assert all(torch.equal(tokens[k], expected[k]) for k in ("input_ids", "attention_mask"))
    assert torch.equal(tokens["input_ids"][0], item["input_ids"]) and pre.tokens("polyp")["input_ids"].shape == (1, 12)


def test_the_dataset_takes_a_preprocessor_or_builds_one(case):
    _, rec = case
    pre = Preprocessor(CLIP, ClipBPETokenizer(12))
    built = SegmentationDataset([rec], CLIP, ClipBPETokenizer(12), prompt="p1", require_masks=False)
    shared = SegmentationDataset([rec], pre, prompt="p1", require_masks=False)
    assert shared.preprocessor is pre and isinstance(built.preprocessor, Preprocessor)
    assert all(torch.equal(built[0][k], shared[0][k]) for k in ("pixel_values", "input_ids", "attention_mask"))
    with pytest.raises(ValueError, match="brings its own tokenizer"):
        SegmentationDataset([rec], pre, ClipBPETokenizer(12), require_masks=False)
    with raises_naming(ValueError, "interpolation", "'cubic'", "bicubic"):
        Preprocessor(Preprocess(image_size=16, interpolation="cubic"))
    with pytest.raises(ValueError, match="image_size"):
        Preprocessor(Preprocess(image_size=0))


def test_for_model_and_to_json():
    import vlsm

    model = vlsm.create_model("clipseg", preset="tiny")
    pre = Preprocessor.for_model(model)
    assert pre.tokenizer is model.get_tokenizer() and pre.image_size == model.preprocess.image_size
    info = pre.to_json(uses_text=True)
    assert list(info) == ["image_size", "image", "interpolation", "mean", "std", "tokenizer", "context_length"]
    assert info["mean"] == list(model.preprocess.mean) and info["context_length"] == model.preprocess.context_length
    assert "bilinear resize" in info["image"] and pre.to_json(uses_text=False)["context_length"] == 0
