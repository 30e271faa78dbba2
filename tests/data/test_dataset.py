"""SegmentationDataset: shapes, dtypes, normalisation, masks, prompts, epochs, augmentation, workers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vlsm.data import Record, SegmentationDataset
from vlsm.data.masks import save_mask
from vlsm.models.base import Preprocess
from vlsm.text.tokenizers import NullTokenizer


class FakeTokenizer:
    """Picklable stand-in: one id per character, padded to context_length."""

    context_length = 12

    def __call__(self, texts):
        ids = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        att = torch.zeros_like(ids)
        for i, t in enumerate(texts):
            codes = [ord(c) for c in t][: self.context_length]
            ids[i, : len(codes)] = torch.tensor(codes, dtype=torch.long)
            att[i, : len(codes)] = 1
        return {"input_ids": ids, "attention_mask": att}


@pytest.fixture()
def records(tmp_path):
    out = []
    for i in range(4):
        h, w = 30 + i, 40
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = 255                     # red image
        img[:, : w // 2, 1] = 128             # left half has some green
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        m = np.zeros((h, w), bool)
        m[:, w // 2:] = True                  # right half is foreground
        save_mask(tmp_path / f"m{i}.png", m)
        out.append(Record(f"case{i}", tmp_path / f"im{i}.png", tmp_path / f"m{i}.png",
                          {"p0": "", "p1": "polyp", "p7": ["aa", "bb", "cc", "dd"]}, "toy"))
    return out


def test_item_shapes_dtypes_normalisation(records):
    pp = Preprocess(image_size=16, mean=(0.5, 0.25, 0.0), std=(0.5, 0.5, 1.0))
    ds = SegmentationDataset(records, pp, NullTokenizer())
    assert len(ds) == 4
    item = ds[1]
    assert set(item) >= {"pixel_values", "mask", "input_ids", "attention_mask", "prompt", "name", "index"}
    assert item["pixel_values"].shape == (3, 16, 16) and item["pixel_values"].dtype == torch.float32
    assert item["mask"].shape == (1, 16, 16) and item["mask"].dtype == torch.float32
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert item["input_ids"].shape == (1,) and item["attention_mask"].shape == (1,)
    assert item["input_ids"].dtype == torch.long
    assert (item["prompt"], item["name"], item["index"]) == ("polyp", "case1", 1)
    assert (item["height"], item["width"], item["has_mask"]) == (31, 40, True)
    px = item["pixel_values"]
    # red channel 1.0 -> (1 - 0.5) / 0.5 = 1; blue 0 -> (0 - 0) / 1 = 0
    assert torch.allclose(px[0], torch.ones(16, 16)) and torch.allclose(px[2], torch.zeros(16, 16))
    # green: 128/255 on the left -> (0.502 - 0.25) / 0.5 ~ 0.504; 0 on the right -> -0.5
    assert abs(px[1, 8, 2].item() - (128 / 255 - 0.25) / 0.5) < 1e-5 and abs(px[1, 8, 13].item() + 0.5) < 1e-6
    assert item["mask"][0, :, 9:].all() and not item["mask"][0, :, :7].any()


def test_fake_tokenizer_and_prompt_choices(records):
    pp = Preprocess(image_size=8)
    ds = SegmentationDataset(records, pp, FakeTokenizer(), prompt="p7")
    item = ds[0]
    assert item["input_ids"].shape == (12,) and item["attention_mask"].shape == (12,)
    assert item["prompt"] in {"aa", "bb", "cc", "dd"}
    assert item["attention_mask"].sum() == 2 and item["input_ids"][0] == ord(item["prompt"][0])
    fixed = SegmentationDataset(records, pp, FakeTokenizer(), prompt="a small bump")
    assert fixed[2]["prompt"] == "a small bump"
    with pytest.raises(ValueError, match=r"prompt 'p5' is missing in 4 of 4.*'case0' has: p0, p1, p7"):
        SegmentationDataset(records, pp, FakeTokenizer(), prompt="p5")


def test_prompts_reproducible_per_epoch(records):
    pp = Preprocess(image_size=8)
    a = SegmentationDataset(records * 5, pp, prompt="p7", seed=3)
    b = SegmentationDataset(records * 5, pp, prompt="p7", seed=3)
    first = [a.prompt_for(i) for i in range(len(a))]
    assert first == [b.prompt_for(i) for i in range(len(b))]
    a.set_epoch(1)
    second = [a.prompt_for(i) for i in range(len(a))]
    assert second != first and a.epoch == 1
    a.set_epoch(0)
    assert [a.prompt_for(i) for i in range(len(a))] == first
    c = SegmentationDataset(records * 5, pp, prompt="p7", seed=4)
    assert [c.prompt_for(i) for i in range(len(c))] != first


def test_augmentation_keeps_image_and_mask_aligned(records):
    pp = Preprocess(image_size=16, mean=(0, 0, 0), std=(1, 1, 1))
    ds = SegmentationDataset(records, pp, augment=True, seed=0)
    flips = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        item = ds[0]
        green, mask = item["pixel_values"][1], item["mask"][0]
        # green was on the background half before any flip: it must still be exactly there
        assert ((green > 0.3) == (mask == 0)).float().mean() > 0.95
        flips.add(bool(mask[0, 0] == 1))
        assert item["pixel_values"].min() >= 0 and item["pixel_values"].max() <= 1
    assert flips == {True, False}  # horizontal flips happen
    ds.set_epoch(5)
    one, two = ds[2], ds[2]
    assert torch.equal(one["pixel_values"], two["pixel_values"]) and torch.equal(one["mask"], two["mask"])


def test_dataloader_workers_match_main_process(records):
    pp = Preprocess(image_size=8)
    ds = SegmentationDataset(records * 2, pp, FakeTokenizer(), prompt="random", augment=True, seed=1)
    ds.set_epoch(2)
    expected = [ds[i]["prompt"] for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, persistent_workers=True)
    got = [p for batch in loader for p in batch["prompt"]]
    assert got == expected
    ds.set_epoch(3)  # persistent workers see the new epoch (shared memory)
    expected3 = [ds[i]["prompt"] for i in range(len(ds))]
    got3 = [p for batch in loader for p in batch["prompt"]]
    assert got3 == expected3


def test_records_without_masks(records):
    pp = Preprocess(image_size=8)
    nomask = [Record(r.name, r.image_path, None, {}, "x") for r in records]
    with pytest.raises(ValueError, match="no mask.*require_masks=False"):
        SegmentationDataset(nomask, pp)
    ds = SegmentationDataset(nomask, pp, prompt="polyp", require_masks=False)
    item = ds[0]
    assert item["has_mask"] is False and item["mask"].shape == (1, 8, 8) and not item["mask"].any()
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["pixel_values"].shape == (4, 3, 8, 8)


def test_size_mismatch_names_both_files(records, tmp_path):
    save_mask(tmp_path / "small.png", np.zeros((5, 5), bool))
    bad = [Record("odd", records[0].image_path, tmp_path / "small.png", {"p1": "x"}, "toy")]
    ds = SegmentationDataset(bad, Preprocess(image_size=8))
    with pytest.raises(ValueError, match=r"sizes differ for 'odd'.*im0.png is 40x30.*small.png is 5x5"):
        ds[0]


def test_bad_preprocess():
    with pytest.raises(ValueError, match="image_size"):
        SegmentationDataset([], Preprocess(image_size=0))


def test_real_kvasir_item(kvasir_root):
    from vlsm.data import load_split

    recs = load_split(kvasir_root, "test")[:2]
    ds = SegmentationDataset(recs, Preprocess(image_size=32), prompt="p9")
    item = ds[0]
    assert item["pixel_values"].shape == (3, 32, 32) and 0 < item["mask"].mean() < 1
    assert item["prompt"] in recs[0].prompts["p9"]


def test_cache_gives_identical_items_without_rereading(tmp_path):
    from vlsm.data import load_split
    from vlsm.data.dataset import SegmentationDataset
    from vlsm.data.synthetic import make_synthetic_dataset
    from vlsm.models.base import Preprocess

    root = make_synthetic_dataset(tmp_path / "syn", n_train=3, n_val=1, n_test=1, image_size=32, seed=2)
    records = load_split(root, "train")
    pre = Preprocess(image_size=16)
    plain = SegmentationDataset(records, pre, augment=True, seed=3)
    cached = SegmentationDataset(records, pre, augment=True, seed=3, cache=True)
    expected = [plain[i] for i in range(3)]
    for i in range(3):
        cached[i]
    for r in records:  # a cached dataset must not touch the files again
        r.image_path.unlink()
    for i in range(3):
        a, b = expected[i], cached[i]
        assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["mask"], b["mask"])
        assert (a["height"], a["width"], a["prompt"]) == (b["height"], b["width"], b["prompt"])
    cached.set_epoch(1)
    assert cached[0]["pixel_values"].shape == (3, 16, 16)
