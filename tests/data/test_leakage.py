"""Leakage (images in two splits), prompt lengths, mask sizes, and the data check filling the decoded cache."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naming import raises_naming
from vlsm.data import Record, load_records
from vlsm.data.check import check_dataset
from vlsm.data.decoded import DecodedCache
from vlsm.data.leakage import find_leakage, split_overlaps
from vlsm.data.masks import MaskSizeError, load_mask, save_mask
from vlsm.data.prompt_lengths import BERT_CONTEXT, CLIP_CONTEXT, context_length_notes, prompt_lengths


def _dataset_from_anns(root: Path, anns: Path, size=(8, 6)) -> Path:
    """A medvlsm-layout folder with tiny images for every entry of medvlsm's split files ``anns``."""
    (root / "anns").mkdir(parents=True)
    for sub in ("images", "masks"):
        (root / sub).mkdir()
    m = np.zeros(size[::-1], bool)
    m[1:4, 2:6] = True
    img = Image.new("RGB", size, (120, 60, 40))
    for f in sorted(anns.glob("*.json")):
        shutil.copy(f, root / "anns" / f.name)
        for e in json.loads(f.read_text()):
            if not (root / "images" / e["img_name"]).exists():
                img.save(root / "images" / e["img_name"], format="PNG")  # the name may say .jpeg: any format reads
                save_mask(root / "masks" / e["mask_name"], m)
    return root


@pytest.mark.parametrize("name, pairs", [("bkai_polyp", {("train", "val"): 2, ("train", "test"): 1}),
                                         ("isic", {("train", "test"): 3})])
def test_medvlsm_published_overlaps_are_reported_not_fatal(medvlsm_anns_root, tmp_path, name, pairs, caplog):
    root = _dataset_from_anns(tmp_path / name, medvlsm_anns_root / name)
    leak = split_overlaps(root)
    assert {k: len(v) for k, v in leak.pairs.items()} == pairs
    notes: list = []
    with caplog.at_level("WARNING", logger="vlsm"):
        [(ds, train)] = load_records([root], "train", notes=notes)  # the default: used as published
    assert ds == name and len(train) == len(json.loads((root / "anns" / "train.json").read_text()))
    assert any(n.startswith("leakage:") and leak.names("train")[0] in n for n in notes)
    report = check_dataset(root, splits=["test"])
    assert report.ok and report.leakage.names() == leak.names()
    assert not check_dataset(root, splits=["test"], strict=True).ok
    [(_, dropped)] = load_records([root], "train", drop_overlap=True, check=False)
    assert len(train) - len(dropped) == len(leak.names("train"))
    assert not {r.name for r in dropped} & set(leak.names())


def test_find_and_drop_leakage_by_image_file(tmp_path):
    a, b, c = (Record(n, tmp_path / f"{n}.png", None) for n in "abc")
    a2 = Record("a_again", tmp_path / "a.png", None)  # same file under another name: still the same image
    leak = find_leakage({"train": [a, b], "test": [c, a2]}, "toy")
    assert bool(leak) and leak.pairs == {("train", "test"): ["a"]} and leak.names("test") == ["a_again"]
    assert leak.to_dict() == {"train/test": ["a"]} and "1 image(s) in both train and test: a" in leak.describe()
    kept, dropped = leak.leave_out([a, b])
    assert kept == [b] and dropped == ["a"]
    assert not find_leakage({"train": [a], "val": [b]}) and "no image in two splits" in find_leakage({}, "x").describe()


def test_prompt_lengths_with_the_real_clip_tokenizer():
    from vlsm.text.tokenizers import ClipBPETokenizer

    long_text = "a polyp " * 60
    recs = [Record("short", "a.png", None, {"p0": "", "p1": "polyp", "p7": ["a round polyp", long_text]}),
            Record("long", "b.png", None, {"p1": long_text})]
    tok = ClipBPETokenizer(context_length=CLIP_CONTEXT)
    n_long = len(tok.encode(long_text)) + 2
    r = prompt_lengths(recs, "p1", tok)
    assert (r.limit, r.checked, r.over, r.longest, r.longest_name, r.over_names) == (77, 2, 1, n_long, "long", ["long"])
    assert "1 of 2 prompt(s) are longer than the CLIP context of 77" in r.describe("CLIP")
    r = prompt_lengths(recs, "random", tok)   # every key but p0, every variant
    assert (r.checked, r.over) == (4, 2)
    assert prompt_lengths(recs, "polyp", len, limit=4).over == 2     # a fixed text, a character counter
    assert prompt_lengths(recs, "p7", tok).checked == 2
    with pytest.raises(ValueError, match="limit"):
        prompt_lengths(recs, "p1", len)


def test_data_check_reports_prompt_lengths(tmp_path):
    from vlsm.data.synthetic import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "syn", n_train=2, n_val=1, n_test=1, image_size=32)
    train = json.loads((root / "anns" / "train.json").read_text())
    train[0]["prompts"]["p6"] = "polyp " * 300
    (root / "anns" / "train.json").write_text(json.dumps(train))
    notes = context_length_notes(root)
    assert "1 of" in notes[0] and "CLIP context of 77" in notes[0] and "synth_0000, p6" in notes[0]
    assert f"may exceed {BERT_CONTEXT} tokens" in notes[1] and "1 prompt(s)" in notes[1]


def test_mask_size_is_checked_by_name(tmp_path):
    save_mask(tmp_path / "m.png", np.ones((5, 7), bool))
    assert load_mask(tmp_path / "m.png", size=(7, 5)).shape == (5, 7)
    with raises_naming(MaskSizeError, "'c1'", f"{tmp_path / 'im.png'} is 8x5", f"{tmp_path / 'm.png'} is 7x5"):
        load_mask(tmp_path / "m.png", size=(8, 5), image_path=tmp_path / "im.png", name="c1")


def test_the_check_fills_the_decoded_cache_and_reuses_its_verdicts(tmp_path, monkeypatch):
    from vlsm.data import SegmentationDataset, load_split
    from vlsm.data import check as check_mod
    from vlsm.data.synthetic import make_synthetic_dataset
    from vlsm.models.base import Preprocess

    root = make_synthetic_dataset(tmp_path / "syn", n_train=4, n_val=1, n_test=1, image_size=40)
    Image.fromarray(np.full((40, 40), 100, np.uint8)).save(root / "masks" / "synth_0001.png")  # a grey mask
    cache = DecodedCache(tmp_path / "c", 24)
    first = check_dataset(root, splits=["train"], decoded=cache)
    entries = list((tmp_path / "c").rglob("*.bin"))
    assert len(entries) == 3  # the grey-mask case is an error: not cached
    plain = check_dataset(root, splits=["train"])
    real = check_mod.load_image

    def only_the_bad_one(path):
        assert Path(path).name == "synth_0001.png", f"decoded {path} again"
        return real(path)

    monkeypatch.setattr(check_mod, "load_image", only_the_bad_one)
    again = check_dataset(root, splits=["train"], decoded=cache)  # no file decoded again, except the bad one
    monkeypatch.undo()
    for r in (first, again):
        assert [(i.kind, i.file) for i in r.errors] == [(i.kind, i.file) for i in plain.errors]
        assert [(i.kind, i.file, i.problem) for i in r.warnings] == [(i.kind, i.file, i.problem) for i in plain.warnings]
        assert r.counts == plain.counts and r.empty_masks == plain.empty_masks
    recs = [r for r in load_split(root, "train") if r.name != "synth_0001"]
    ds = SegmentationDataset(recs, Preprocess(image_size=24), cache=cache)
    monkeypatch.setattr("vlsm.data.dataset.load_image", lambda p: (_ for _ in ()).throw(AssertionError("decoded")))
    items = [ds[i] for i in range(len(ds))]  # epoch 1 reads what the check stored
    monkeypatch.undo()
    ref = SegmentationDataset(recs, Preprocess(image_size=24))
    for i, item in enumerate(items):
        assert all(np.array_equal(item[k], ref[i][k]) for k in ("pixel_values", "mask"))
    notes: list = []
    with pytest.raises(ValueError, match="synth_0001.png"):
        load_records([root], "train", decoded=cache, notes=notes)
