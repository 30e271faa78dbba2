"""Overlays and the qualitative figure, drawn from synthetic arrays."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from naming import raises_naming
from vlsm.evaluation import figures
from vlsm.evaluation.metrics import dice_score


def disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


def synthetic(n_images=2, shapes=((48, 64), (80, 60))):
    rng = np.random.default_rng(0)
    images, preds_a, preds_b = [], {}, {}
    for i, (h, w) in zip(range(n_images), shapes):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        gt = disk(h, w, h // 2, w // 2, min(h, w) // 4)
        name = f"img{i}.png"
        images.append((name, img, gt))
        preds_a[name] = disk(h, w, h // 2 + 3, w // 2 + 2, min(h, w) // 4)
        preds_b[name] = np.zeros((h, w), bool)
    return images, {"UNet-D": preds_a, "BiomedCLIPSeg-A": preds_b}


def test_overlay_colours_each_region():
    img = np.full((20, 20, 3), 100, np.uint8)
    gt = np.zeros((20, 20), bool)
    gt[2:10, 2:10] = True
    pred = np.zeros((20, 20), bool)
    pred[5:15, 5:15] = True
    out = figures.overlay(img, pred, gt, alpha=1.0, outline=0)
    assert out.dtype == np.uint8 and out.shape == (20, 20, 3)
    assert tuple(out[6, 6]) == figures.TP_COLOUR
    assert tuple(out[12, 12]) == figures.FP_COLOUR
    assert tuple(out[3, 3]) == figures.FN_COLOUR
    assert tuple(out[18, 1]) == (100, 100, 100)  # background untouched
    assert img.max() == 100  # input not modified


def test_overlay_blends_and_outlines():
    img = np.zeros((30, 30, 3), np.uint8)
    pred = disk(30, 30, 15, 15, 8)
    out = figures.overlay(img, pred, alpha=0.5, outline=1)
    centre = out[15, 15].astype(int)
    assert np.allclose(centre, np.rint(np.array(figures.PRED_COLOUR) * 0.5), atol=1)
    edge = figures.boundary(pred, 1)
    assert edge.any() and not edge[15, 15]
    assert (out[edge] == np.array(figures.PRED_COLOUR, np.uint8)).all()
    # Grayscale floats in [0, 1] and 0/1 integer masks are accepted too.
    gray = figures.overlay(np.full((30, 30), 0.5), pred.astype(np.uint8), outline=0)
    assert gray.shape == (30, 30, 3) and tuple(gray[0, 0]) == (128, 128, 128)


def test_overlay_rejects_bad_masks():
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="threshold probabilities first"):
        figures.overlay(img, np.full((10, 10), 0.7))
    with pytest.raises(ValueError, match="resize the mask"):
        figures.overlay(img, np.zeros((12, 10), bool))
    with pytest.raises(ValueError, match="alpha"):
        figures.overlay(img, np.zeros((10, 10), bool), alpha=2)
    with pytest.raises(ValueError, match="must be"):
        figures.overlay(np.zeros((10, 10, 5)), np.zeros((10, 10), bool))


def test_figure_png_size_and_dice(tmp_path):
    images, preds = synthetic()
    out = tmp_path / "fig.png"
    info = figures.draw_qualitative(images, preds, out, dpi=100, panel_inches=1.5)
    assert out.is_file() and info.path == out
    with Image.open(out) as im:
        assert im.size == (info.width_px, info.height_px)
    # 4 columns of 1.5 in plus margins; rows follow the images' aspect ratios.
    assert info.width_px == round((0.28 + 4 * 1.5 + 3 * 0.05 + 0.05) * 100)
    expected_h = 0.32 + (1.5 * 48 / 64 + 0.2) + (1.5 * 80 / 60 + 0.2) + 0.05 + 0.42
    assert info.height_px == round(expected_h * 100)
    for name, _, gt in images:
        assert info.dice["UNet-D"][name] == pytest.approx(dice_score(preds["UNet-D"][name], gt))
        assert info.dice["BiomedCLIPSeg-A"][name] == 0.0
    assert list(info.dice) == ["UNet-D", "BiomedCLIPSeg-A"]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_figure_pdf_by_extension(tmp_path):
    images, preds = synthetic(1)
    out = tmp_path / "fig.pdf"
    figures.draw_qualitative(images, preds, out)
    assert out.read_bytes()[:5] == b"%PDF-"


def test_figure_errors(tmp_path):
    images, preds = synthetic()
    with raises_naming(ValueError, str(tmp_path / "fig.gif"), ".png", ".pdf"):
        figures.draw_qualitative(images, preds, tmp_path / "fig.gif")
    missing = {"UNet-D": {"img0.png": preds["UNet-D"]["img0.png"]}}
    with raises_naming(ValueError, "'UNet-D'", "'img1.png'", "img0.png"):
        figures.draw_qualitative(images, missing, tmp_path / "fig.png")
    probs = {"UNet-D": {k: v * 0.7 for k, v in preds["UNet-D"].items()}}
    with pytest.raises(ValueError, match="threshold probabilities first"):
        figures.draw_qualitative(images, probs, tmp_path / "fig.png")
    with pytest.raises(ValueError, match="no images"):
        figures.draw_qualitative([], preds, tmp_path / "fig.png")
    with pytest.raises(ValueError, match="listed twice"):
        figures.draw_qualitative([images[0], images[0]], preds, tmp_path / "fig.png")
    (tmp_path / "old.png").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="--overwrite"):
        figures.draw_qualitative(images, preds, tmp_path / "old.png", overwrite=False)
    assert (tmp_path / "old.png").read_bytes() == b"keep"
    assert not (tmp_path / "fig.png").exists()
