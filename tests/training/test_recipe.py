"""The paper's recipe as settings: monitor (val_bce), min_delta, min_epochs, scheduler none,
reload_best_each_epoch, the batch Dice of the UNet-D script, and the model's resize interpolation and
mean/std reaching the data pipeline, the decode-once cache and the Predictor."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

import vlsm
from naming import raises_naming
from vlsm.config import config_from_dict, get_option, load_config
from vlsm.data import load_split
from vlsm.data.dataset import SegmentationDataset
from vlsm.data.decoded import RESAMPLING, DecodedCache
from vlsm.data.synthetic import make_synthetic_dataset
from vlsm.models.base import INTERPOLATIONS
from vlsm.predictor import Predictor
from vlsm.training import losses
from vlsm.training.callbacks import ReloadBestEachEpoch
from vlsm.training.module import SegmentationTask
from vlsm.training.run import train

SCRIPT_INPUT = {"interpolation": "bicubic", "image_mean": [0, 0, 0], "image_std": [1, 1, 1]}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    return make_synthetic_dataset(root / "synthetic_polyp", n_train=8, n_val=4, n_test=2, image_size=40, seed=3)


def _train(tmp_path, data, **train_options) -> Path:
    options = {"epochs": 4, "batch_size": 4, "seed": 1, "precision": "32-true", "device": "cpu", "lr": 0.05,
               "progress_bar": False, "num_workers": 0, "keep_checkpoints": "all", **train_options}
    cfg = config_from_dict({"out": str(tmp_path / "run"),
                            "model": {"name": "unet-d", "preset": "tiny", "overrides": {"image_size": 32}},
                            "data": {"paths": [str(data)], "augment": False, "cache_dir": str(tmp_path / "cache")},
                            "train": options})
    return train(cfg)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _val_bce(run: Path) -> list[float]:
    """val_bce per epoch from Lightning's CSV log (the epoch rows that have it)."""
    [log] = (run / "logs").rglob("metrics.csv")
    return [float(r["val_bce"]) for r in _rows(log) if r.get("val_bce")]


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_val_bce_drives_the_best_checkpoint_and_scheduler_none_keeps_the_rate(tmp_path, data):
    # a high rate and plateau patience 0 would cut the rate at the first epoch without progress
    run = _train(tmp_path, data, monitor="val_bce", scheduler="none", scheduler_patience=0, epochs=4)
    bce = _val_bce(run)
    assert len(bce) == 4
    best_epoch = int(np.argmin(bce))
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == best_epoch
    summary = json.loads((run / "summary.json").read_text())["train"]
    assert summary["monitor"] == "val_bce" and summary["best_score"] == pytest.approx(min(bce), rel=1e-6)
    assert "best_val_dice" not in summary  # that key means a Dice
    assert {r["lr"] for r in _rows(run / "metrics.csv")} == {"0.05"}
    assert not torch.load(run / "checkpoints" / "last.ckpt", weights_only=True).get("lr_schedulers")


def test_val_bce_is_the_bce_part_of_the_loss():
    torch.manual_seed(0)
    model = vlsm.create_model("unet-d", preset="tiny", image_size=32)
    task = SegmentationTask(model, bce_weight=0.3, dice_weight=1.0).eval()  # as in validation
    logged = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    batch = {"pixel_values": torch.randn(2, 3, 32, 32), "input_ids": None, "attention_mask": None,
             "mask": (torch.rand(2, 1, 32, 32) > 0.5).float()}
    with torch.no_grad():
        task.validation_step(batch, 0)
        want = F.binary_cross_entropy_with_logits(model(batch["pixel_values"]), batch["mask"])
        dice = losses.soft_dice_loss(model(batch["pixel_values"]), batch["mask"])
    assert logged["val_bce"] == pytest.approx(float(want), rel=1e-6)
    assert logged["val_loss"] == pytest.approx(0.3 * float(want) + float(dice), rel=1e-5)


def test_min_delta_and_min_epochs_reach_lightning(tmp_path, data):
    # no change can beat min_delta 1e6: early stopping (patience 1) ends the run after 2 epochs ...
    run = _train(tmp_path / "a", data, monitor="val_loss", min_delta=1e6, early_stopping_patience=1, epochs=10)
    assert len(_rows(run / "metrics.csv")) == 2
    # ... unless min_epochs asks for more
    run = _train(tmp_path / "b", data, monitor="val_loss", min_delta=1e6, early_stopping_patience=1, epochs=10,
                 min_epochs=4)
    assert len(_rows(run / "metrics.csv")) == 4


def test_reload_best_each_epoch_continues_from_the_best_weights(tmp_path, data, caplog):
    caplog.set_level("INFO", logger="vlsm")
    # (at this rate the tiny model's validation Dice stays put: epochs that do not improve on the first)
    run = _train(tmp_path, data, monitor="val_dice", reload_best_each_epoch=True, scheduler="none", lr=0.3, epochs=3)
    reloads = [r for r in caplog.records if "continuing from the best weights" in r.getMessage()]
    assert reloads, "these settings have epochs without improvement"
    # the last epoch's weights were replaced by the best ones (or were the best)
    best, last = _state(run / "checkpoints" / "best.ckpt"), _state(run / "checkpoints" / "last.ckpt")
    assert best.keys() == last.keys() and all(torch.equal(best[k], last[k]) for k in best)


def _fake_trainer(metric: str, value: float):
    return SimpleNamespace(sanity_checking=False, fit_loop=SimpleNamespace(restarting=False),
                           callback_metrics={metric: torch.tensor(value)}, current_epoch=3)


@pytest.mark.parametrize("mode, best, worse, better", [("min", 0.5, 0.7, 0.4), ("max", 0.5, 0.3, 0.6)])
def test_reload_loads_weights_only_when_the_epoch_does_not_improve(tmp_path, mode, best, worse, better):
    torch.manual_seed(0)
    task = SegmentationTask(vlsm.create_model("unet-d", preset="tiny", image_size=32))
    saved = {k: v.clone() for k, v in task.state_dict().items()}
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": saved}, path)
    with torch.no_grad():
        for p in task.parameters():
            p.add_(1.0)
    moved = {k: v.clone() for k, v in task.state_dict().items()}
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-3)
    task(  # one step gives the optimizer state that must survive the reload
        {"pixel_values": torch.randn(1, 3, 32, 32), "input_ids": None, "attention_mask": None}).sum().backward()
    optimizer.step()
    moments = {k: v["exp_avg"].clone() for k, v in optimizer.state.items()}
    stepped = {k: v.clone() for k, v in task.state_dict().items()}
    checkpoint = SimpleNamespace(monitor="val_x", mode=mode, best_model_score=torch.tensor(best),
                                 best_model_path=str(path))
    callback = ReloadBestEachEpoch(checkpoint)

    callback.on_train_epoch_end(_fake_trainer("val_x", better), task)  # improves: keeps its own weights
    assert all(torch.equal(task.state_dict()[k], stepped[k]) for k in stepped)
    callback.on_train_epoch_end(_fake_trainer("val_x", best), task)  # a tie is no improvement
    assert all(torch.equal(task.state_dict()[k], saved[k]) for k in saved)
    assert not all(torch.equal(saved[k], moved[k]) for k in saved if saved[k].is_floating_point())
    for p in task.parameters():
        p.data.add_(1.0)
    callback.on_train_epoch_end(_fake_trainer("val_x", worse), task)
    assert all(torch.equal(task.state_dict()[k], saved[k]) for k in saved)
    # the optimizer goes on (the script reloads the model's weights only)
    assert all(torch.equal(optimizer.state[k]["exp_avg"], m) for k, m in moments.items())


def test_batch_dice_is_one_dice_over_the_whole_batch():
    torch.manual_seed(0)
    logits, target = torch.randn(3, 1, 8, 8), (torch.rand(3, 1, 8, 8) > 0.6).float()
    p = torch.sigmoid(logits)
    want = 1 - (2 * (p * target).sum() + 1e-6) / (p.sum() + target.sum() + 1e-6)
    loss = losses.BCEDiceLoss(1.0, 1.0, "batch")(logits, target)
    assert float(loss["dice"]) == pytest.approx(float(want), rel=1e-6)
    assert float(loss["dice"]) != pytest.approx(float(losses.soft_dice_loss(logits, target)), rel=1e-3)
    assert set(get_option("train.dice_reduction").choices) == set(losses.DICE_REDUCTIONS)
    with raises_naming(ValueError, "dice_reduction", "'pixel'", "image, batch"):
        losses.BCEDiceLoss(1.0, 1.0, "pixel")


# -- interpolation and normalisation as model data ---------------------------------------------------
def test_preprocess_options_for_every_model_and_their_errors(tmp_path):
    assert set(INTERPOLATIONS) == set(RESAMPLING)
    for name in ("unet-d", "clipseg", "clipseg-b"):
        model = vlsm.create_model(name, preset="tiny", **SCRIPT_INPUT)
        pre = model.preprocess
        assert (pre.interpolation, pre.mean, pre.std) == ("bicubic", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "vlsm_config.json").read_text())["preprocess"]["interpolation"] == "bicubic"
    assert vlsm.load_pretrained(tmp_path / "m").preprocess == model.preprocess
    from vlsm.export.onnx_export import preprocess_info  # what an ONNX runtime is told

    info = preprocess_info(model, ["pixel_values"], 0.5, 18, None, [])
    assert info["interpolation"] == "bicubic" and "bicubic resize" in info["image"] and info["std"] == [1.0] * 3
    with raises_naming(ValueError, "unet-d", "interpolation", "'cubic'", "bilinear, bicubic, lanczos, nearest"):
        vlsm.create_model("unet-d", preset="tiny", interpolation="cubic")
    with raises_naming(ValueError, "unet-d: image_std", "[1, 0, 1]", "3 positive numbers"):
        vlsm.create_model("unet-d", preset="tiny", image_std=[1, 0, 1])
    with raises_naming(ValueError, "unet-d: image_mean", "0.5", "3 numbers"):
        vlsm.create_model("unet-d", preset="tiny", image_mean=0.5)
    assert vlsm.create_model("unet-d", preset="tiny").preprocess.interpolation == "bilinear"


def _script_item(image_path, mask_path, size):
    """What the paper's UNet-D script feeds the network, written out: PIL bicubic resize of the 8-bit
    image, / 255 in float64, then float32; the mask resized nearest."""
    img = np.asarray(Image.open(image_path).convert("RGB").resize((size, size), Image.BICUBIC))
    pixels = torch.as_tensor(img.transpose(2, 0, 1) / 255.0).float()
    mask = np.asarray(Image.open(mask_path).convert("L").resize((size, size), Image.NEAREST)) > 127
    return pixels, torch.from_numpy(mask).float()[None]


def test_bicubic_items_equal_the_script_computation_with_and_without_the_cache(tmp_path, data):
    model = vlsm.create_model("unet-d", preset="tiny", image_size=32, **SCRIPT_INPUT)
    records = load_split(data, "train")
    scaled_only = {k: v for k, v in SCRIPT_INPUT.items() if k != "interpolation"}
    bilinear = SegmentationDataset(records, vlsm.create_model("unet-d", preset="tiny", image_size=32,
                                                              **scaled_only).preprocess)
    cache = DecodedCache(tmp_path / "cache", 32, "bicubic")
    for ds in (SegmentationDataset(records, model.preprocess),
               SegmentationDataset(records, model.preprocess, cache=cache),  # writes the entries
               SegmentationDataset(records, model.preprocess, cache=cache)):  # reads them
        for i, rec in enumerate(records[:3]):
            pixels, mask = _script_item(rec.image_path, rec.mask_path, 32)
            item = ds[i]
            assert torch.equal(item["pixel_values"], pixels)
            assert torch.equal(item["mask"], mask)
    assert list((tmp_path / "cache").glob("*-32px-bicubic/*.bin"))
    assert not torch.equal(bilinear[0]["pixel_values"], ds[0]["pixel_values"])  # the filter matters
    with raises_naming(ValueError, "bilinear", "bicubic", "interpolation='bicubic'"):
        SegmentationDataset(records, model.preprocess, cache=DecodedCache(tmp_path / "cache", 32))


def test_the_cache_key_and_folder_carry_the_interpolation(tmp_path, data):
    rec = load_split(data, "train")[0]
    bilinear, bicubic = DecodedCache(tmp_path, 32), DecodedCache(tmp_path, 32, "bicubic")
    assert bilinear.key(rec.image_path, rec.mask_path) != bicubic.key(rec.image_path, rec.mask_path)
    assert bilinear.path("k", "ds").parent.name == "ds-32px" and bicubic.path("k", "ds").parent.name == "ds-32px-bicubic"
    with raises_naming(ValueError, "interpolation", "'cubic'", "bicubic"):
        DecodedCache(tmp_path, 32, "cubic")


def test_training_and_the_predictor_resize_with_the_model_interpolation(tmp_path, data):
    cfg = config_from_dict({"out": str(tmp_path / "run"),
                            "model": {"name": "unet-d", "preset": "tiny", "overrides": {"image_size": 32, **SCRIPT_INPUT}},
                            "data": {"paths": [str(data)], "augment": False, "cache_dir": str(tmp_path / "cache")},
                            "train": {"epochs": 1, "batch_size": 4, "precision": "32-true", "device": "cpu",
                                      "progress_bar": False, "num_workers": 0}})
    run = train(cfg)
    assert list((tmp_path / "cache").glob("synthetic_polyp-32px-bicubic/*.bin"))
    assert not list((tmp_path / "cache").glob("synthetic_polyp-32px/*.bin"))
    predictor = Predictor(run, device="cpu")
    assert predictor.model.preprocess.interpolation == "bicubic"
    rec = load_split(data, "test")[0]
    [pred] = predictor.predict(rec.image_path)
    pixels, _ = _script_item(rec.image_path, rec.mask_path, 32)
    with torch.no_grad():
        logits = predictor.model.eval()(pixels[None], None, None)
    h, w = pred.probabilities.shape
    want = torch.sigmoid(F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)[0, 0]).numpy()
    np.testing.assert_allclose(pred.probabilities, want, atol=1e-6)


def test_resume_stays_exact_with_reload_best_each_epoch(tmp_path, data, caplog):
    """A run continued from its last.ckpt ends as the run that was never stopped: the reload happens before
    the epoch's checkpoints are written, and the best score lives in the checkpoint callback's state."""
    caplog.set_level("INFO", logger="vlsm")
    options = dict(monitor="val_dice", reload_best_each_epoch=True, scheduler="none", lr=0.3)
    whole = _train(tmp_path / "whole", data, epochs=3, **options)
    assert any("continuing from the best weights" in r.getMessage() for r in caplog.records)
    part = _train(tmp_path / "part", data, epochs=1, **options)
    cfg = config_from_dict({"out": str(part), "model": {"name": "unet-d", "preset": "tiny",
                                                        "overrides": {"image_size": 32}},
                            "data": {"paths": [str(data)], "augment": False, "cache_dir": str(tmp_path / "cache")},
                            "train": {"epochs": 3, "batch_size": 4, "seed": 1, "precision": "32-true",
                                      "device": "cpu", "progress_bar": False, "num_workers": 0,
                                      "keep_checkpoints": "all", **options}})
    train(cfg, resume=True)

    def curve(run):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in _rows(run / "metrics.csv")]

    assert curve(part) == curve(whole)
    a, b = _state(whole / "checkpoints" / "last.ckpt"), _state(part / "checkpoints" / "last.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_unknown_dice_reduction_is_one_line_naming_the_key(data, tmp_path):
    with raises_naming(ValueError, re.compile(r"^exp\.yaml: train\.dice_reduction\b"), "'pixel'", "image, batch"):
        config_from_dict({"out": str(tmp_path / "run"), "data": {"paths": [str(data)]},
                          "train": {"dice_reduction": "pixel"}}, "exp.yaml")


def test_a_finished_run_resumed_for_more_epochs_reloads_its_best_from_model_when_best_ckpt_was_pruned(
        tmp_path, data, caplog):
    """keep_checkpoints=last removes best.ckpt once the run has finished; resumed for more epochs, an epoch
    that does not improve continues from model/ (the same best weights)."""
    options = dict(monitor="val_dice", reload_best_each_epoch=True, scheduler="none", lr=0.3, epochs=1,
                   keep_checkpoints="last")
    run = _train(tmp_path, data, **options)
    assert not (run / "checkpoints" / "best.ckpt").exists()
    cfg = load_config(run / "config.yaml")
    cfg.train.epochs = 3
    caplog.set_level("INFO", logger="vlsm")
    train(cfg, resume=True)
    reloads = [r.getMessage() for r in caplog.records if "continuing from the best weights" in r.getMessage()]
    assert reloads and all("(model)" in message for message in reloads), reloads
    assert (run / "summary.json").is_file()
