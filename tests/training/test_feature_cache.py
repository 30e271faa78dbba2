"""The frozen-encoder feature cache (vlsm.training.feature_cache): the same training with and without it.

A tiny BiomedCLIPSeg run (fp32, CPU) gives the same metrics.csv with the cache as without, while its frozen
ViT runs in the first epoch only; the store keeps rows bit for bit in memory and on disk and leaves no
file behind; `--feature-cache on` where caching is not exact is one line; and at paper size the logits
from cached features equal the plain forward pass.
"""
from __future__ import annotations

import csv
import logging
import re

import pytest
import torch

import vlsm
from naming import raises_naming
from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset
from vlsm.training.feature_cache import (
    SAMPLE_KEY,
    FeatureCache,
    NumberedConcatDataset,
    memory_available,
    resolve_feature_cache,
)


def _features(n, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 5, 4, generator=g).to(dtype), torch.randn(n, 3, generator=g).to(dtype))


@pytest.mark.parametrize("budget", [None, 0], ids=["memory", "disk"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_store_returns_what_it_kept(tmp_path, budget, dtype):
    cache = FeatureCache({"train": 10, "val": 4}, tmp_path / "features", memory_budget=budget)
    computed = []

    def compute(rows):
        def run():
            computed.append(rows.tolist())
            return tuple(f[rows] for f in _features(10, dtype=dtype))
        return run

    first = torch.tensor([3, 7, 1])
    a = cache.features("train", first, compute(first), "cpu")
    b = cache.features("train", torch.tensor([7, 1, 3]), compute(torch.tensor([7, 1, 3])), "cpu")  # all stored
    assert computed == [[3, 7, 1]]
    for x, y in zip(a, b, strict=True):
        assert torch.equal(y, x[[1, 2, 0]]) and y.dtype == dtype
    # one row missing: the whole batch is computed (as the plain forward pass would) and stored
    c = cache.features("train", torch.tensor([1, 2]), compute(torch.tensor([1, 2])), "cpu")
    assert computed[-1] == [1, 2] and cache.misses == 5 and cache.hits == 3
    assert all(torch.equal(x, f[[1, 2]]) for x, f in zip(c, _features(10, dtype=dtype)))
    # stages are apart: the same positions in the val set are other images
    cache.features("val", torch.tensor([1]), compute(torch.tensor([1])), "cpu")
    assert computed[-1] == [1]
    on_disk = budget == 0
    assert (cache.disk_bytes > 0) == on_disk and (cache.memory_bytes > 0) == (not on_disk)
    assert any((tmp_path / "features").rglob("*.bin")) == on_disk
    cache.close()
    assert not any((tmp_path / "features").rglob("*")) if on_disk else True
    assert cache.features("train", first, compute(first), "cpu") is not None and computed[-1] == [3, 7, 1]
    cache.close()


def test_nothing_frozen_means_nothing_stored(tmp_path):
    cache = FeatureCache({"train": 4}, tmp_path)
    assert cache.features("train", torch.tensor([0, 1]), lambda: None, "cpu") is None
    assert cache.memory_bytes == 0 and cache.misses == 0


def test_no_room_anywhere_is_a_warning_and_no_cache(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = FeatureCache({"train": 4}, blocker / "features", memory_budget=0)
    calls = []

    def compute():
        calls.append(1)
        return _features(2)

    with caplog.at_level(logging.WARNING, logger="vlsm"):
        for _ in range(2):
            assert cache.features("train", torch.tensor([0, 1]), compute, "cpu") is not None
    assert len(calls) == 2  # computed every time, never stored
    assert "fit neither in memory" in caplog.text and "--cache-dir" in caplog.text
    cache.close()


def test_memory_available_is_a_positive_byte_count():
    assert memory_available() > 2**20


def test_numbered_concat_dataset_keys_are_global():
    class Items(torch.utils.data.Dataset):
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return {"index": i}

    ds = NumberedConcatDataset([Items(3), Items(2)])
    assert [ds[i][SAMPLE_KEY] for i in range(5)] == [0, 1, 2, 3, 4]
    assert [ds[i]["index"] for i in range(5)] == [0, 1, 2, 0, 1]
    assert ds[-1][SAMPLE_KEY] == 4


def test_auto_on_and_off_resolve_with_reasons():
    frozen = vlsm.create_model("biomedclipseg", preset="tiny")
    trained = vlsm.create_model("clipseg", preset="tiny")
    assert resolve_feature_cache("auto", frozen, augment=False)[0]
    assert not resolve_feature_cache("auto", frozen, augment=True)[0]
    assert not resolve_feature_cache("auto", trained, augment=False)[0]
    assert not resolve_feature_cache("off", frozen, augment=False)[0]
    assert resolve_feature_cache("on", frozen, augment=False)[0]
    with raises_naming(ValueError, "--feature-cache on", "train.feature_cache", "--no-augment", "--feature-cache auto"):
        resolve_feature_cache("on", frozen, augment=True)
    with raises_naming(ValueError, "--feature-cache on", "train.feature_cache", "freeze_encoder=true",
                       "--feature-cache auto"):
        resolve_feature_cache("on", trained, augment=False)


# -- a tiny training run with and without the cache --------------------------------------------------
TINY = ["train", "--model", "biomedclipseg", "--preset", "tiny", "--img-size", "32", "--batch-size", "4",
        "--num-workers", "0", "--no-progress", "--seed", "1", "--device", "cpu", "--no-augment", "--epochs", "3",
        "--patience", "10"]


def _curve(run):
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("featcache")
    data = make_synthetic_dataset(root / "synthetic_polyp", n_train=10, n_val=4, n_test=2, image_size=32, seed=2)
    cache_dir = root / "cache"
    for name, mode in (("off", "off"), ("on", "on")):
        argv = TINY + ["--data", str(data), "--out", str(root / name), "--feature-cache", mode,
                       "--cache-dir", str(cache_dir)]
        assert main(argv) == 0
    return root


def test_same_losses_with_and_without_the_cache(runs):
    off, on = _curve(runs / "off"), _curve(runs / "on")
    assert len(on) == 3 and [r["epoch"] for r in on] == [r["epoch"] for r in off]
    for a, b in zip(off, on):
        for key in ("train_loss", "val_loss", "val_dice"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-5, abs=1e-7), (a["epoch"], key)


def test_the_frozen_encoder_runs_in_the_first_epoch_only(runs):
    log_on = (runs / "on" / "log.txt").read_text()
    assert "feature cache: on: the image encoder is frozen" in log_on
    assert "feature cache (train): 10 images x" in log_on and "in memory" in log_on
    # 3 epochs of 8 train images (batches of 4 of the 10, the partial one dropped) and 4 val images: an image
    # first drawn in a later epoch is computed then; the val set is computed once
    line = next(ln for ln in log_on.splitlines() if "served from the cache" in ln)
    served, computed = (int(w) for w in re.findall(r"(\d+) image\(s\) served from the cache, (\d+) computed", line)[0])
    assert served + computed == 3 * (8 + 4) and served >= 2 * 4 + 8 and line.endswith("removed")
    assert "feature cache: off (--feature-cache off)" in (runs / "off" / "log.txt").read_text()
    assert not any((runs / "cache" / "features").rglob("*.bin"))


def test_on_where_it_cannot_be_exact_is_one_line_before_the_run_folder(tmp_path, capsys):
    data = make_synthetic_dataset(tmp_path / "synthetic_polyp", n_train=4, n_val=2, n_test=1, image_size=32, seed=2)
    argv = [a for a in TINY if a != "--no-augment"]
    out = tmp_path / "run"
    assert main(argv + ["--data", str(data), "--out", str(out), "--feature-cache", "on"]) != 0
    err = capsys.readouterr().err
    assert "--feature-cache on (train.feature_cache)" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow  # paper size: 197 M parameters, a forward pass at 224 px
def test_paper_size_logits_from_cached_features(tmp_path):
    """BiomedCLIPSeg at paper size (random init): features through the store give the plain logits."""
    torch.manual_seed(0)
    model = vlsm.create_model("biomedclipseg").train()
    s, n = model.preprocess.image_size, 2
    x = torch.randn(n, 3, s, s, generator=torch.Generator().manual_seed(1))
    ids = torch.randint(1, 1000, (n, 12), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        torch.manual_seed(3)  # BERT's dropout (train mode) draws the same in both passes
        want = model(x, ids, mask)
        cache = FeatureCache({"train": 4}, tmp_path, memory_budget=0)  # through the memory-mapped file
        rows = torch.tensor([2, 0])
        cache.features("train", rows, lambda: model.frozen_image_features(x), "cpu")
        feats = cache.features("train", rows, lambda: pytest.fail("recomputed"), "cpu")
        torch.manual_seed(3)
        got = model.forward_with_features(x, feats, ids, mask)
        cache.close()
    assert torch.equal(got, want)


def test_bench_measures_the_cached_train_step():
    from vlsm.bench import bench_model, format_table

    frozen = bench_model("biomedclipseg", preset="tiny", device="cpu", steps=1, warmup=0)
    trained = bench_model("clipseg", preset="tiny", device="cpu", steps=1, warmup=0)
    assert frozen.cached_train_img_s > 0 and trained.cached_train_img_s is None
    table = format_table([frozen, trained])
    assert "cached img/s" in table.splitlines()[0]
