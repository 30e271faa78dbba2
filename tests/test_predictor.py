"""vlsm.Predictor: sources, inputs (paths, PIL, numpy grey/RGB/RGBA/16-bit), prompts, and the same
maths as `vlsm evaluate` (logits resized to the original size, then sigmoid, then threshold)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

import vlsm
from naming import raises_naming
from vlsm.config import ExperimentConfig
from vlsm.data.records import Record
from vlsm.evaluation.evaluate import evaluate_records
from vlsm.evaluation.metrics import dice_score
from vlsm.predictor import Prediction, Predictor
from vlsm.runs import RunFolder


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return vlsm.create_model("unet-d", preset="tiny", image_size=32)


@pytest.fixture(scope="module")
def clipseg():
    torch.manual_seed(0)
    return vlsm.create_model("clipseg", preset="tiny")


@pytest.fixture()
def image(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    path = tmp_path / "scan.png"
    Image.fromarray(rgb).save(path)
    return rgb, path


def _reference(model, rgb: np.ndarray) -> np.ndarray:
    """The evaluation maths written out: resize, normalise, forward, logits back to (H, W), sigmoid."""
    s = model.preprocess.image_size
    small = np.asarray(Image.fromarray(rgb).resize((s, s), Image.BILINEAR), dtype=np.float32) / 255.0
    x = torch.from_numpy(small).permute(2, 0, 1)
    mean = torch.tensor(model.preprocess.mean).view(3, 1, 1)
    std = torch.tensor(model.preprocess.std).view(3, 1, 1)
    with torch.no_grad():
        logits = model.eval()(((x - mean) / std)[None], None, None)
    up = F.interpolate(logits.float(), size=rgb.shape[:2], mode="bilinear", align_corners=False)
    return torch.sigmoid(up[0, 0]).numpy()


def test_paths_pil_and_arrays_give_the_evaluation_maths(unet, image):
    rgb, path = image
    predictor = Predictor(unet, device="cpu")
    want = _reference(unet, rgb)
    preds = predictor.predict([path, Image.open(path), rgb], threshold=0.4)
    assert [p.name for p in preds] == ["scan", "scan", "image-2"]
    for p in preds:
        assert isinstance(p, Prediction) and p.prompt == "" and p.seconds > 0
        assert p.probabilities.dtype == np.float32 and p.probabilities.shape == (45, 70)
        np.testing.assert_allclose(p.probabilities, want, atol=1e-6)
        assert p.mask.dtype == bool and np.array_equal(p.mask, p.probabilities > 0.4)
    [single] = predictor.predict(rgb)  # one image in, a list of one out
    np.testing.assert_allclose(single.probabilities, preds[2].probabilities, atol=1e-6)


def test_array_kinds_are_converted_like_image_files(unet, image):
    rgb, _ = image
    predictor = Predictor(unet, device="cpu")
    grey = rgb[..., 0]
    [from_grey, from_grey_rgb, from_16bit, from_rgba, from_float] = predictor.predict(
        [grey, np.repeat(grey[..., None], 3, -1), grey.astype(np.uint16) * 257,
         np.dstack([rgb, np.full(grey.shape, 7, np.uint8)]), rgb.astype(np.float32) / 255.0])
    np.testing.assert_allclose(from_grey.probabilities, from_grey_rgb.probabilities, atol=1e-6)
    np.testing.assert_allclose(from_16bit.probabilities, from_grey.probabilities, atol=1e-6)
    want = predictor.predict(rgb)[0].probabilities
    np.testing.assert_allclose(from_rgba.probabilities, want, atol=1e-6)
    np.testing.assert_allclose(from_float.probabilities, want, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        predictor.predict(np.zeros((4, 4, 2), np.uint8))
    with raises_naming(TypeError, "int", "paths, PIL images or numpy arrays"):
        predictor.predict([3])


def test_batches_do_not_change_results(unet, image):
    rgb, _ = image
    images = [rgb, rgb[:30], rgb[:, :20], rgb[5:, 3:]]
    one = Predictor(unet, device="cpu", batch_size=1).predict(images)
    many = Predictor(unet, device="cpu", batch_size=3).predict(images)
    assert [p.probabilities.shape for p in many] == [(45, 70), (30, 70), (45, 20), (40, 67)]
    for a, b in zip(one, many):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_images_in_memory_and_records_are_preprocessed_alike(clipseg, image):
    """One Preprocessor: an image given in memory and the same image read as a dataset record give the
    same prediction, bit for bit."""
    rgb, path = image
    predictor = Predictor(clipseg, device="cpu", batch_size=2)
    assert predictor.preprocessor.image_size == clipseg.preprocess.image_size
    records = [Record("scan", path, None, {"p1": "polyp"})] * 3
    from_records = list(predictor.predict_records(records, prompt="p1"))
    from_memory = predictor.predict([rgb, path, Image.open(path)], prompts="polyp")
    for a, b in zip(from_records, from_memory):
        assert np.array_equal(a.probabilities, b.probabilities) and a.prompt == b.prompt == "polyp"


def test_text_models_need_prompt_texts(clipseg, image):
    rgb, _ = image
    predictor = Predictor(clipseg, device="cpu")
    assert predictor.default_prompt is None and predictor.label == "CLIPSeg [tiny]"
    with pytest.raises(ValueError, match="needs a text prompt"):
        predictor.predict(rgb)
    with raises_naming(ValueError, "'p10'", "predict_records"):
        predictor.predict(rgb, prompts="p10")
    with raises_naming(ValueError, "2 prompts", "1 images", "one per image"):
        predictor.predict(rgb, prompts=["a", "b"])
    preds = predictor.predict([rgb, rgb], prompts=["a polyp", "a round pink polyp"])
    assert [p.prompt for p in preds] == ["a polyp", "a round pink polyp"]
    [again] = predictor.predict(rgb, prompts="a round pink polyp")
    np.testing.assert_allclose(again.probabilities, preds[1].probabilities, atol=1e-6)


def test_records_resolve_prompt_keys_and_match_evaluate(clipseg, tmp_path):
    rng = np.random.default_rng(1)
    records = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(tmp_path / f"i{i}.png")
        mask = (rng.random((20 + i, 30)) > 0.5).astype(np.uint8) * 255
        Image.fromarray(mask).save(tmp_path / f"m{i}.png")
        records.append(Record(f"c{i}", tmp_path / f"i{i}.png", tmp_path / f"m{i}.png",
                              {"p0": "", "p1": "polyp", "p10": f"polyp number {i}"}))
    predictor = Predictor(clipseg, device="cpu", batch_size=2)
    preds = list(predictor.predict_records(records, prompt="p10", threshold=0.5))
    assert [p.name for p in preds] == ["c0", "c1", "c2"]
    assert [p.prompt for p in preds] == ["polyp number 0", "polyp number 1", "polyp number 2"]
    acc = evaluate_records(clipseg, records, prompt="p10", device="cpu")
    from vlsm.data import load_mask

    for case, pred, rec in zip(acc.cases, preds, records):
        assert case.prompt == pred.prompt
        assert case.dice == dice_score(pred.mask, load_mask(rec.mask_path))


def test_sources_run_folder_checkpoint_and_names(unet, tmp_path):
    run = RunFolder(tmp_path / "run").prepare()
    cfg = ExperimentConfig()
    cfg.model.name, cfg.model.preset, cfg.data.prompt = "unet-d", "tiny", "polyp"
    run.write_config(cfg)
    unet.save_pretrained(run.model_dir)
    run.write_summary({"model": {"name": "unet-d", "label": "UNet-D (mine)"}, "results": []})
    x = np.full((9, 11, 3), 100, np.uint8)
    want = Predictor(unet, device="cpu").predict(x)[0].probabilities
    for source in (run.path, str(run.model_dir)):
        p = Predictor(source, device="cpu")
        assert p.config.model.name == "unet-d" and p.default_prompt == "polyp" and p.label == "UNet-D (mine)"
        np.testing.assert_allclose(p.predict(x)[0].probabilities, want, atol=1e-6)

    fresh = Predictor("unet-d", device="cpu", preset="tiny", image_size=32)
    assert fresh.config is None and fresh.label == "UNet-D [tiny]" and fresh.model.preprocess.image_size == 32
    with pytest.raises(ValueError, match="registered model name .*unet-d"):
        Predictor("no-such-model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Predictor(tmp_path / "missing-run")
    with raises_naming(ValueError, "pretrained=", "model object"):
        Predictor(unet, preset="tiny")
    with raises_naming(ValueError, repr(str(run.path)), "pretrained=", "unet-d"):
        Predictor(str(run.path), preset="tiny")
    with pytest.raises(TypeError, match="source must be"):
        Predictor(3)


def test_device_and_precision_are_checked(unet):
    with pytest.raises(ValueError, match="unknown precision"):
        Predictor(unet, device="cpu", precision="fp13")
    with pytest.raises(ValueError, match="not supported for inference"):
        Predictor(unet, device="cpu", precision="64-true")
    assert Predictor(unet, device="cpu").precision == "32-true"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Predictor(unet, device="cuda")
    bf16 = Predictor(unet, device="cpu", precision="bf16-mixed").predict(np.zeros((8, 8, 3), np.uint8))[0]
    assert bf16.probabilities.dtype == np.float32


def test_public_export():
    assert vlsm.Predictor is Predictor and vlsm.Prediction is Prediction
