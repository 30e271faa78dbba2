"""The synthetic polyp dataset: layout, determinism, atomic writing, reuse."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naming import raises_naming
from vlsm.data import load_image, load_mask, load_split
from vlsm.data import synthetic as synthetic_mod
from vlsm.data.synthetic import make_synthetic_dataset


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_contents(tmp_path):
    root = make_synthetic_dataset(tmp_path / "syn", n_train=6, n_val=2, n_test=2, image_size=48, seed=1)
    splits = {s: load_split(root, s) for s in ("train", "val", "test")}
    assert [len(v) for v in splits.values()] == [6, 2, 2]
    rec = splits["train"][0]
    assert rec.dataset == "syn"
    assert set(rec.prompts) == {f"p{i}" for i in range(10)}
    assert rec.prompts["p0"] == "" and rec.prompts["p1"] == "polyp"
    assert rec.prompts["p6"].startswith(rec.prompts["p5"] + ", located in ")
    assert isinstance(rec.prompts["p9"], list) and len(rec.prompts["p9"]) == 3
    for r in (r for v in splits.values() for r in v):
        img, mask = load_image(r.image_path), load_mask(r.mask_path)
        assert img.size == (48, 48) and mask.shape == (48, 48)
        assert 0.005 < mask.mean() < 0.6  # every image has at least one polyp
        raw = np.unique(np.asarray(Image.open(r.mask_path)))
        assert set(raw.tolist()) <= {0, 255}
        # blobs differ from the background on average, but colours overlap
        arr = np.asarray(img, dtype=float)
        assert abs(arr[mask].mean() - arr[~mask].mean()) > 5


def test_same_seed_same_bytes(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", n_train=4, n_val=1, n_test=1, image_size=32, seed=7)
    b = make_synthetic_dataset(tmp_path / "b", n_train=4, n_val=1, n_test=1, image_size=32, seed=7)
    c = make_synthetic_dataset(tmp_path / "c", n_train=4, n_val=1, n_test=1, image_size=32, seed=8)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_reuse_refuse_overwrite(tmp_path):
    out = tmp_path / "syn"
    make_synthetic_dataset(out, n_train=2, n_val=1, n_test=1, image_size=32)
    stamp = (out / "anns" / "train.json").stat().st_mtime_ns
    make_synthetic_dataset(out, n_train=2, n_val=1, n_test=1, image_size=32)  # same arguments: reused
    assert (out / "anns" / "train.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="not empty"):
        make_synthetic_dataset(out, n_train=3, n_val=1, n_test=1, image_size=32)
    make_synthetic_dataset(out, n_train=3, n_val=1, n_test=1, image_size=32, overwrite=True)
    assert len(json.loads((out / "anns" / "train.json").read_text())) == 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        make_synthetic_dataset(other, n_train=1, n_val=1, n_test=1, image_size=32)


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic_mod._render

    def flaky(rng, s):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(rng, s)

    monkeypatch.setattr(synthetic_mod, "_render", flaky)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_dataset(tmp_path / "syn", n_train=4, n_val=1, n_test=1, image_size=32)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name,value,needle", [
    ("n_train", -1, "n_train must be an integer >= 0, got -1"), ("n_val", -2, "n_val must be an integer >= 0"),
    ("n_test", 1.5, "n_test must be an integer >= 0, got 1.5"), ("image_size", 8, "image_size must be an integer >= 16"),
    ("seed", -3, "seed must be an integer >= 0, got -3")])
def test_bad_arguments_are_named(tmp_path, name, value, needle):
    with pytest.raises(ValueError, match=needle):
        make_synthetic_dataset(tmp_path / "x", **{name: value})
    assert not (tmp_path / "x").exists()


def test_no_images_at_all_is_refused(tmp_path):
    with raises_naming(ValueError, "n_train", "n_val", "n_test", "at least one"):
        make_synthetic_dataset(tmp_path / "x", n_train=0, n_val=0, n_test=0)
    assert len(load_split(make_synthetic_dataset(tmp_path / "eval_only", n_train=0, n_val=0, n_test=1,
                                                 image_size=16), "test")) == 1
