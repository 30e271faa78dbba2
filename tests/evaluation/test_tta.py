"""Test-time augmentation (issue 18): the probabilities are the mean of the flipped predictions, the uncertainty
their standard deviation, in Predictor, `vlsm predict` and `vlsm evaluate`; without TTA nothing changes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

import vlsm
from naming import raises_naming
from vlsm.predictor import TTA_FLIPS, Predictor


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(3)
    return vlsm.create_model("unet-d", preset="tiny", image_size=32).eval()


@pytest.fixture()
def rgb():
    return np.random.default_rng(1).integers(0, 256, (37, 52, 3), dtype=np.uint8)


def _views(model, rgb) -> list:
    """Each view's probabilities at the image's size, computed by hand: flip the model input, run the model, flip
    its logits back, resize, sigmoid."""
    x = Predictor(model, device="cpu").preprocessor.pixels(rgb)[None]
    out = []
    with torch.no_grad():
        for axes in ((), (3,), (2,), (2, 3)):
            logits = model(x.flip(axes) if axes else x, None, None).float()
            logits = logits.flip(axes) if axes else logits
            up = F.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=False)
            out.append(torch.sigmoid(up[0, 0]).numpy())
    return out


def test_tta_is_the_mean_of_the_manually_flipped_predictions(unet, rgb):
    views = _views(unet, rgb)
    [plain] = Predictor(unet, device="cpu").predict(rgb)
    [tta] = Predictor(unet, device="cpu", tta=True).predict(rgb, threshold=0.5)
    assert list(TTA_FLIPS) == ["none", "horizontal", "vertical", "both"]
    assert np.array_equal(plain.probabilities, views[0]) and plain.uncertainty is None  # no TTA: unchanged
    np.testing.assert_allclose(tta.probabilities, np.mean(views, axis=0), atol=1e-6)
    np.testing.assert_allclose(tta.uncertainty, np.std(views, axis=0), atol=1e-6)
    assert np.array_equal(tta.mask, tta.probabilities > 0.5)
    assert not np.allclose(tta.probabilities, plain.probabilities)  # (the flips do change something)


def test_tta_equals_predicting_the_flipped_images(unet, rgb):
    """The same from the user's side: predict the flipped images without TTA, flip the maps back, average."""
    predictor = Predictor(unet, device="cpu")
    flips = (lambda a: a, np.fliplr, np.flipud, lambda a: np.flipud(np.fliplr(a)))
    maps = [flip(p.probabilities) for flip, p in zip(flips, predictor.predict([np.ascontiguousarray(f(rgb))
                                                                              for f in flips]))]
    [tta] = Predictor(unet, device="cpu", tta=True).predict(rgb)
    np.testing.assert_allclose(tta.probabilities, np.mean(maps, axis=0), atol=1e-5)


def test_evaluate_and_predict_take_tta(unet, tmp_path, capsys):
    from vlsm.cli import main
    from vlsm.data.synthetic import make_synthetic_dataset
    from vlsm.runs import read_summary

    data = make_synthetic_dataset(tmp_path / "data", n_train=2, n_val=2, n_test=3, image_size=40)
    unet.save_pretrained(tmp_path / "model")
    for flag in ("--tta", "--no-tta"):
        assert main(["evaluate", str(tmp_path / "model"), "--data", str(data), flag, "-o", str(tmp_path / flag),
                     "--device", "cpu"]) == 0
    with_tta, without = (read_summary(tmp_path / f)["results"][0] for f in ("--tta", "--no-tta"))
    assert with_tta["tta"] is True and "tta" not in without
    image = next((data / "images").iterdir())
    out = tmp_path / "pred"
    assert main(["predict", "-i", str(image), "-o", str(out), "-m", str(tmp_path / "model"), "--tta",
                 "--uncertainty", "--probabilities"]) == 0
    spread = np.asarray(Image.open(out / f"{image.stem}_uncertainty.png"))
    [tta] = Predictor(tmp_path / "model", device="cpu", tta=True).predict(image)
    assert np.array_equal(spread, np.clip(np.round(tta.uncertainty * 510), 0, 255).astype(np.uint8))
    assert np.array_equal(np.asarray(Image.open(out / f"{image.stem}.png")) > 127, tta.mask)
    capsys.readouterr()
    assert main(["predict", "-i", str(image), "-o", str(tmp_path / "p2"), "-m", str(tmp_path / "model"),
                 "--uncertainty"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--uncertainty" in err and "--tta" in err and "\n" not in err and not (tmp_path / "p2").exists()


def test_the_session_of_vlsm_serve_shows_the_uncertainty(unet, tmp_path, rgb):
    from vlsm.serve.session import Segmenter, ServedRun

    runs = [ServedRun(tmp_path, Predictor(unet, device="cpu", tta=tta)) for tta in (True, False)]
    with_tta, plain = Segmenter(runs, out_dir=tmp_path).segment(Image.fromarray(rgb), "", [0, 1])
    assert with_tta.uncertainty.shape == rgb.shape and with_tta.uncertainty.dtype == np.uint8
    assert plain.uncertainty is None and "test-time augmentation" in with_tta.summary()


def test_tta_must_be_a_switch(unet):
    with raises_naming(TypeError, "tta", "'yes'", "True, False or None"):
        Predictor(unet, device="cpu", tta="yes")
