"""SegmentationDataset: shapes, dtypes, normalisation, masks, prompts, epochs, augmentation, workers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from naming import raises_naming
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
    with raises_naming(ValueError, "'p5'", "4 of 4", "'case0'", "p0, p1, p7"):
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
    with raises_naming(ValueError, "'odd'", f"{records[0].image_path} is 40x30", f"{tmp_path / 'small.png'} is 5x5"):
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


def _items_equal(a, b):
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.fixture()
def mixed_records(tmp_path):
    """Cases that exercise the pipeline: JPEG, 16-bit and palette images, odd sizes, an upscale,
    a JPEG mask with compression noise, a 0/1 label mask, list-valued prompts, one case without a mask."""
    rng = np.random.default_rng(0)
    out = []
    for i, (h, w) in enumerate([(37, 51), (64, 64), (12, 9), (80, 33), (50, 50)]):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if i == 1:
            Image.fromarray((rng.integers(0, 65536, (h, w))).astype(np.uint16)).save(tmp_path / f"im{i}.png")
        elif i == 2:
            Image.fromarray(img).convert("P").save(tmp_path / f"im{i}.png")
        else:
            Image.fromarray(img).save(tmp_path / f"im{i}.{'jpg' if i == 0 else 'png'}", quality=80)
        m = np.zeros((h, w), bool)
        m[h // 4: 3 * h // 4, w // 3:] = True
        if i == 0:
            Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / f"m{i}.jpg", quality=70)
        elif i == 3:
            Image.fromarray(m.astype(np.uint8)).save(tmp_path / f"m{i}.png")  # 0/1 labels
        else:
            save_mask(tmp_path / f"m{i}.png", m)
        image = next(tmp_path.glob(f"im{i}.*"))
        mask = None if i == 4 else next(tmp_path.glob(f"m{i}.*"))
        out.append(Record(f"case{i}", image, mask, {"p0": "", "p1": "polyp", "p2": f"round {i}",
                                                    "p7": ["aa", "bb", "cc"]}, "toy"))
    return out


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("prompt", ["p1", "p7", "random"])
def test_decoded_cache_gives_identical_items(mixed_records, tmp_path, augment, prompt):
    pre = Preprocess(image_size=24, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    tok = FakeTokenizer()
    plain = SegmentationDataset(mixed_records, pre, tok, prompt=prompt, augment=augment, seed=5, require_masks=False)
    kw = dict(prompt=prompt, augment=augment, seed=5, require_masks=False, cache=True, cache_dir=tmp_path / "c")
    first = SegmentationDataset(mixed_records, pre, tok, **kw)   # epoch 0 decodes and writes the entries
    for epoch in (0, 1, 2):
        for ds in (plain, first):
            ds.set_epoch(epoch)
        for i in range(len(plain)):
            _items_equal(plain[i], first[i])
    assert len(list((tmp_path / "c" / "toy-24px").glob("*.bin"))) == len(mixed_records)
    second = SegmentationDataset(mixed_records, pre, tok, **kw)  # a later run: reads only the cache
    second.set_epoch(2)
    expected = [plain[i] for i in range(len(plain))]
    from vlsm.data import dataset as dataset_mod

    def no_decoding(*_a, **_k):
        raise AssertionError("decoded a file although the cache has it")

    orig_image, orig_mask = dataset_mod.load_image, dataset_mod.load_mask
    try:
        dataset_mod.load_image = dataset_mod.load_mask = no_decoding
        for i in range(len(plain)):
            _items_equal(expected[i], second[i])
    finally:
        dataset_mod.load_image, dataset_mod.load_mask = orig_image, orig_mask


def test_decoded_cache_with_workers_and_default_folder(mixed_records, private_cache_dir):
    from torch.utils.data import DataLoader

    pre = Preprocess(image_size=16)
    recs = [r for r in mixed_records if r.mask_path is not None]
    plain = SegmentationDataset(recs, pre, augment=True, seed=1)
    cached = SegmentationDataset(recs, pre, augment=True, seed=1, cache=True)  # $VLSM_CACHE_DIR/decoded
    loader = DataLoader(cached, batch_size=2, num_workers=2)
    for _ in range(2):  # epoch 0 (workers write), then epoch 0 again from the cache
        got = [b for b in loader]
        want = [b for b in DataLoader(plain, batch_size=2)]
        for a, b in zip(want, got):
            assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["mask"], b["mask"])
    assert len(list((private_cache_dir / "decoded" / "toy-16px").glob("*.bin"))) == len(recs)
    assert not list((private_cache_dir / "decoded" / "toy-16px").glob(".*"))  # no temporary files left


def test_decoded_cache_follows_file_changes_and_repairs_damage(mixed_records, tmp_path):
    import os

    pre = Preprocess(image_size=16)
    recs = mixed_records[1:2]
    kw = dict(cache=True, cache_dir=tmp_path / "c")
    before = SegmentationDataset(recs, pre, **kw)[0]
    entry = next((tmp_path / "c").rglob("*.bin"))
    entry.write_bytes(entry.read_bytes()[:100])  # a damaged entry is rebuilt, not trusted
    _items_equal(before, SegmentationDataset(recs, pre, **kw)[0])
    Image.new("RGB", (64, 64), (200, 10, 10)).save(recs[0].image_path)  # the file changes: new entry
    st = recs[0].image_path.stat()
    os.utime(recs[0].image_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = SegmentationDataset(recs, pre, **kw)[0]
    _items_equal(SegmentationDataset(recs, pre)[0], after)
    assert not torch.equal(before["pixel_values"], after["pixel_values"])


def test_unwritable_cache_folder_warns_and_decodes(mixed_records, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    pre = Preprocess(image_size=16)
    with caplog.at_level("WARNING", logger="vlsm"):
        ds = SegmentationDataset(mixed_records[:2], pre, cache=True, cache_dir=blocker / "cache")
    assert "cache disabled: cannot write to" in caplog.text and str(blocker / "cache") in caplog.text
    _items_equal(SegmentationDataset(mixed_records[:2], pre)[1], ds[1])


def test_decoded_cache_of_another_size_is_refused(mixed_records, tmp_path):
    from vlsm.data.decoded import DecodedCache

    with raises_naming(ValueError, "32px", "16px", "image_size=16"):
        SegmentationDataset(mixed_records, Preprocess(image_size=16), cache=DecodedCache(tmp_path, 32),
                            require_masks=False)


@pytest.mark.parametrize("augment", [False, True])
def test_pixels_equal_the_formula_written_out(tmp_path, augment):
    """The looked-up normalisation is bit for bit (image / 255 - mean) / std, for every uint8 value."""
    rng = np.random.default_rng(3)
    img = rng.permutation(np.arange(48 * 16 * 3) % 256).astype(np.uint8).reshape(48, 16, 3)
    Image.fromarray(np.ascontiguousarray(img)).save(tmp_path / "im.png")
    save_mask(tmp_path / "m.png", np.ones((48, 16), bool))
    rec = Record("c", tmp_path / "im.png", tmp_path / "m.png", {"p1": "x"})
    pre = Preprocess(image_size=16, mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
    ds = SegmentationDataset([rec], pre, augment=augment, seed=0)
    resized = np.asarray(Image.open(tmp_path / "im.png").convert("RGB").resize((16, 16), Image.BILINEAR))
    pixels = torch.from_numpy(resized.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
    mean, std = torch.tensor(pre.mean).view(-1, 1, 1), torch.tensor(pre.std).view(-1, 1, 1)
    if augment:
        target = torch.ones(1, 16, 16)
        pixels, _ = SegmentationDataset._augment(pixels, target, ds._rng(0, 1))
    assert torch.equal(ds[0]["pixel_values"], (pixels - mean) / std)
    lut_values = torch.arange(256, dtype=torch.float32).numpy() / 255.0  # every value, not only the image's
    assert np.array_equal(ds.preprocessor._normalise_lut, ((torch.from_numpy(lut_values)[None] - mean.view(3, 1)) / std.view(3, 1)).numpy())
