"""The device-side evaluation loop scores exactly what the per-image loop before it scored.

``_old_evaluate`` is the previous implementation, kept here only as the reference: batches
through the model, every image's logits resized to its original size on the CPU one at a time,
then the sigmoid and the threshold in numpy, then the mask read and scored with numpy. The new
loop (:func:`vlsm.evaluation.evaluate_records`) must write the same ``per_case.csv`` byte for byte
on tiny trained models, on images of several original sizes, at the same batch size. (The CPU
forward pass itself can differ in the last bit between batch sizes — oneDNN/MKL block by batch —
in the old loop as in the new one; the batch size is the caller's choice, the loop adds nothing.)
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader

import vlsm
from naming import raises_naming
from vlsm.data import SegmentationDataset, load_mask, load_split
from vlsm.data.records import Record
from vlsm.data.synthetic import make_synthetic_dataset
from vlsm.evaluation.evaluate import evaluate_records
from vlsm.evaluation.metrics import MetricAccumulator, score_case
from vlsm.predictor import Predictor
from vlsm.runs import write_per_case


def _old_probabilities(logits: torch.Tensor, size_hw) -> np.ndarray:
    up = F.interpolate(logits[None].float(), size=tuple(size_hw), mode="bilinear", align_corners=False)
    return torch.sigmoid(up[0, 0]).cpu().numpy().astype(np.float32)


def _old_predictions(model, records, prompt: str, threshold: float, batch_size: int):
    inputs = [dataclasses.replace(r, mask_path=None) for r in records]
    dataset = SegmentationDataset(inputs, model.preprocess, model.get_tokenizer(), prompt=prompt, augment=False,
                                  require_masks=False)
    model.eval()
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
        with torch.no_grad():
            logits = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).float().cpu()
        for i in range(len(logits)):
            prob = _old_probabilities(logits[i], (int(batch["height"][i]), int(batch["width"][i])))
            yield prob, prob > threshold, batch["prompt"][i]


def _old_evaluate(model, records, prompt: str, threshold: float, batch_size: int) -> MetricAccumulator:
    acc = MetricAccumulator()
    for record, (_, mask, text) in zip(records, _old_predictions(model, records, prompt, threshold, batch_size)):
        acc.add(score_case(record.name, mask, load_mask(record.mask_path), text))
    return acc


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Synthetic test cases of several original sizes: two square sizes and cropped, non-square copies."""
    root = tmp_path_factory.mktemp("sizes")
    out = []
    for size in (40, 57):
        data = make_synthetic_dataset(root / f"syn{size}", n_train=0, n_val=0, n_test=6, image_size=size, seed=size)
        out += load_split(data, "test")
    crops = root / "crops"
    crops.mkdir()
    for k, rec in enumerate(out[::3]):
        box = (k % 3, 2, 33 + k, 30 + 2 * k)  # left, top, right, bottom: a new size each
        image, mask = Image.open(rec.image_path).crop(box), Image.open(rec.mask_path).crop(box)
        image.save(crops / f"i{k}.png")
        mask.save(crops / f"m{k}.png")
        out.append(Record(f"crop{k}", crops / f"i{k}.png", crops / f"m{k}.png", dict(rec.prompts)))
    return out


def _trained(name: str, records, **options):
    """A tiny model after a few optimiser steps, so its masks are neither empty nor full."""
    torch.manual_seed(0)
    model = vlsm.create_model(name, preset="tiny", **options)
    data = SegmentationDataset(records, model.preprocess, model.get_tokenizer(), prompt="p1")
    batch = next(iter(DataLoader(data, batch_size=len(records))))
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(8):
        optimiser.zero_grad()
        logits = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        F.binary_cross_entropy_with_logits(logits, batch["mask"]).backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def models(records):
    return {"unet-d": _trained("unet-d", records, image_size=32), "clipseg": _trained("clipseg", records)}


def _csv(tmp_path, name: str, acc: MetricAccumulator) -> bytes:
    write_per_case(tmp_path / name, acc.cases)
    return (tmp_path / name).read_bytes()


@pytest.mark.parametrize("name", ["unet-d", "clipseg"])
def test_per_case_rows_are_identical_to_the_per_image_loop(models, records, tmp_path, name):
    model = models[name]
    assert len({tuple(load_mask(r.mask_path).shape) for r in records}) >= 5
    # a threshold inside the probabilities' range, so that the masks are neither empty nor full
    median = float(np.median(np.concatenate([p.ravel() for p, _, _ in _old_predictions(model, records, "p1", 0.5, 4)])))
    for prompt, threshold, batch_size in (("p1", median, 4), ("p3", 0.5, 16), ("p1", median, 3)):
        old = _old_evaluate(model, records, prompt, threshold, batch_size)
        if threshold == median:
            assert any(0 < c.pred_area < c.height * c.width for c in old.cases), "masks are trivial"
        new = evaluate_records(model, records, prompt=prompt, threshold=threshold, device="cpu",
                               batch_size=batch_size)
        assert new.cases == old.cases, (name, prompt, batch_size)
        assert _csv(tmp_path, "new.csv", new) == _csv(tmp_path, "old.csv", old)


@pytest.mark.parametrize("name", ["unet-d", "clipseg"])
def test_predictions_are_identical_to_the_per_image_loop(models, records, name):
    model = models[name]
    old = list(_old_predictions(model, records, "p1", 0.5, 5))
    new = list(Predictor(model, device="cpu", batch_size=5).predict_records(records, prompt="p1"))
    assert [p.name for p in new] == [r.name for r in records]
    for (prob, mask, text), p in zip(old, new):
        assert p.probabilities.dtype == np.float32 and p.probabilities.shape == prob.shape
        assert np.array_equal(p.probabilities, prob) and np.array_equal(p.mask, mask) and p.prompt == text


def test_a_mask_of_another_size_is_named(models, records, tmp_path):
    rec = records[0]
    Image.open(rec.mask_path).crop((0, 0, 20, 20)).save(tmp_path / "small.png")
    bad = dataclasses.replace(rec, mask_path=tmp_path / "small.png")
    with raises_naming(ValueError, repr(rec.name), str(tmp_path / "small.png"), "20x20", "vlsm data check"):
        evaluate_records(models["unet-d"], [records[1], bad], device="cpu")


def test_resize_and_sigmoid_of_a_group_equal_the_per_image_ones():
    """Large originals (a CPU sigmoid over many images would round some pixels differently)."""
    from vlsm.predictor import _probabilities

    logits = torch.randn(5, 1, 44, 44, generator=torch.Generator().manual_seed(0)) * 4
    for size in ((531, 623), (1000, 1000)):
        group = _probabilities(logits.clone(), size)
        for i in range(len(logits)):
            assert torch.equal(group[i], torch.from_numpy(_old_probabilities(logits[i], size)))
