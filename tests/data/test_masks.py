"""The one binarisation rule on every mask encoding, and image reading (incl. TIFF and truncated files)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naming import raises_naming
from vlsm.data import ImageReadError, binarize_mask, load_image, load_mask
from vlsm.data.masks import mask_intensity, save_mask


def _disc(h=40, w=50, r=12) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < r ** 2


# -- synthetic files of every encoding -----------------------------------------------------------
def _write(tmp_path: Path, name: str, img: Image.Image, **kw) -> Path:
    p = tmp_path / name
    img.save(p, **kw)
    return p


@pytest.mark.parametrize("encoding", ["1bit", "L255", "L01", "RGB", "RGBA_opaque", "RGBA_alpha_only", "LA",
                                      "P", "P_voc", "I16_65535", "I16_01", "I32", "F"])
def test_binarize_every_png_encoding(tmp_path, encoding):
    m = _disc()
    u8 = m.astype(np.uint8) * 255
    if encoding == "1bit":
        img = Image.fromarray(m).convert("1")
    elif encoding == "L255":
        img = Image.fromarray(u8, "L")
    elif encoding == "L01":
        img = Image.fromarray(m.astype(np.uint8), "L")
    elif encoding == "RGB":
        img = Image.fromarray(np.stack([u8] * 3, -1), "RGB")
    elif encoding == "RGBA_opaque":
        img = Image.fromarray(np.stack([u8] * 3 + [np.full_like(u8, 255)], -1), "RGBA")
    elif encoding == "RGBA_alpha_only":  # mask drawn as transparency over black
        img = Image.fromarray(np.stack([np.zeros_like(u8)] * 3 + [u8], -1), "RGBA")
    elif encoding == "LA":
        img = Image.fromarray(np.stack([u8, np.full_like(u8, 255)], -1), "LA")
    elif encoding == "P":
        img = Image.fromarray(m.astype(np.uint8), "P")
        img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    elif encoding == "P_voc":  # Pascal-VOC style palette: class 1 is dark red (128, 0, 0)
        img = Image.fromarray(m.astype(np.uint8), "P")
        img.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    elif encoding == "I16_65535":
        img = Image.fromarray(m.astype(np.uint16) * 65535)
    elif encoding == "I16_01":
        img = Image.fromarray(m.astype(np.uint16))
    elif encoding == "I32":
        img = Image.fromarray(m.astype(np.int32) * 255)
    else:  # "F" -> TIFF (PNG cannot store float or 32-bit integers)
        img = Image.fromarray(m.astype(np.float32) * 255.0)
    suffix = ".tif" if encoding in ("F", "I32") else ".png"
    path = _write(tmp_path, f"mask_{encoding}{suffix}", img)
    out = load_mask(path)
    assert out.dtype == bool and out.shape == m.shape
    np.testing.assert_array_equal(out, m)
    np.testing.assert_array_equal(binarize_mask(Image.open(path)), m)


def test_jpeg_noise_is_thresholded(tmp_path):
    m = _disc(80, 96, 30)
    path = _write(tmp_path, "mask.jpg", Image.fromarray(m.astype(np.uint8) * 255, "L"), quality=70)
    raw = np.asarray(Image.open(path))
    assert len(np.unique(raw)) > 2  # compression really added noise
    out = load_mask(path)
    assert (out != m).mean() < 0.005  # only a few edge pixels may flip


def test_rgb_jpeg_mask_with_noise(tmp_path):
    m = _disc(64, 64, 20)
    rgb = np.stack([m.astype(np.uint8) * 255] * 3, -1)
    path = _write(tmp_path, "mask_rgb.jpg", Image.fromarray(rgb), quality=75)
    assert (load_mask(path) != m).mean() < 0.005


def test_colour_masks_use_the_strongest_channel():
    m = _disc()
    red = np.zeros(m.shape + (3,), np.uint8)
    red[m] = (255, 0, 0)  # luma of pure red is 76: a plain L threshold would lose it
    assert np.asarray(Image.fromarray(red).convert("L")).max() < 128
    np.testing.assert_array_equal(binarize_mask(red), m)
    assert mask_intensity(red).source == "colour"
    green_blue = np.zeros(m.shape + (3,), np.uint8)
    green_blue[m] = (0, 200, 0)
    np.testing.assert_array_equal(binarize_mask(Image.fromarray(green_blue)), m)


def test_arrays_follow_the_same_rule():
    m = _disc()
    np.testing.assert_array_equal(binarize_mask(m), m)
    np.testing.assert_array_equal(binarize_mask(m.astype(np.uint8)), m)          # 0/1 labels
    np.testing.assert_array_equal(binarize_mask(m.astype(np.uint8) * 255), m)
    np.testing.assert_array_equal(binarize_mask(m.astype(np.float32) * 0.9), m)  # fractions > 0.5
    np.testing.assert_array_equal(binarize_mask(m.astype(np.uint16) * 300), m)  # clipped like Pillow
    grey = np.where(m, 128, 127).astype(np.uint8)
    np.testing.assert_array_equal(binarize_mask(grey), m)                      # threshold is > 127
    assert not binarize_mask(np.zeros((4, 4), np.uint8)).any()
    with pytest.raises(ValueError, match="shape"):
        binarize_mask(np.zeros((2, 3, 5), np.uint8))


def test_tiff_masks_pillow_cannot_read(tmp_path):
    import tifffile

    m = _disc()
    u8 = m.astype(np.uint8) * 255
    path = tmp_path / "mask_minisblack3.tif"  # like the CVC-ClinicDB originals: 3 samples, min-is-black
    tifffile.imwrite(path, np.stack([u8] * 3, -1), photometric="minisblack", planarconfig="contig")
    with pytest.raises(Exception):  # noqa: B017 (Pillow raises various types)
        Image.open(path).load()
    np.testing.assert_array_equal(load_mask(path), m)
    planar = tmp_path / "mask_planar.tif"
    tifffile.imwrite(planar, np.stack([u8] * 3, 0), planarconfig="separate", photometric="rgb")
    np.testing.assert_array_equal(load_mask(planar), m)


def test_save_mask_roundtrip(tmp_path):
    m = _disc()
    save_mask(tmp_path / "m.png", m)
    img = Image.open(tmp_path / "m.png")
    assert img.mode == "L" and set(np.unique(np.asarray(img))) == {0, 255}
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png"), m)


# -- real files from ../shared ------------------------------------------------------------------
def test_kvasir_jpeg_masks(kvasir_root):
    for path in sorted((kvasir_root / "masks").iterdir())[:5]:
        raw = np.asarray(Image.open(path).convert("L"))
        values = set(np.unique(raw).tolist())
        assert values <= set(range(0, 9)) | set(range(247, 256))  # compression noise only
        assert len(values) > 2
        out = load_mask(path)
        np.testing.assert_array_equal(out, raw > 127)
        assert 0.001 < out.mean() < 0.9


def test_clinicdb_png_masks_with_antialiased_edges(clinicdb_root):
    path = clinicdb_root / "masks" / "1.png"
    img = Image.open(path)
    assert img.mode == "L"
    raw = np.asarray(img)
    assert ((raw > 0) & (raw < 255)).any()  # anti-aliased edge pixels exist
    out = load_mask(path)
    np.testing.assert_array_equal(out, raw > 127)
    assert out.any()


def test_busi_1bit_and_rgb_masks(raw_samples_root):
    base = raw_samples_root / "busi" / "Dataset_BUSI_with_GT"
    one_bit = base / "benign" / "benign (1)_mask.png"
    assert Image.open(one_bit).mode == "1"
    m = load_mask(one_bit)
    np.testing.assert_array_equal(m, np.asarray(Image.open(one_bit)))
    assert m.any()
    rgb = base / "normal" / "normal (1)_mask.png"
    assert Image.open(rgb).mode == "RGB"
    assert not load_mask(rgb).any()  # BUSI "normal" masks are empty by design


def test_busi_rgba_mask(raw_samples_root, tmp_path):
    """BUSI also ships RGBA masks: the same lesion stored as RGBA binarises identically."""
    src = raw_samples_root / "busi" / "Dataset_BUSI_with_GT" / "benign" / "benign (2)_mask.png"
    rgba = Image.open(src).convert("RGBA")
    rgba.save(tmp_path / "rgba_mask.png")
    assert Image.open(tmp_path / "rgba_mask.png").mode == "RGBA"
    np.testing.assert_array_equal(load_mask(tmp_path / "rgba_mask.png"), load_mask(src))


def test_bkai_rgb_colour_masks(raw_samples_root):
    gt = sorted((raw_samples_root / "bkai_igh_neopolyp" / "train_gt" / "train_gt").glob("*.jpeg"))
    assert gt
    for path in gt[:3]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        expected = (rgb[..., 0] > 127) | (rgb[..., 1] > 127)  # red or green = polyp
        out = load_mask(path)
        assert expected.any()
        assert (out == expected).mean() > 0.999


def test_clinicdb_ground_truth_tiff(raw_samples_root, clinicdb_root):
    tif = raw_samples_root / "cvc_clinicdb" / "Ground Truth" / "1.tif"
    np.testing.assert_array_equal(load_mask(tif), load_mask(clinicdb_root / "masks" / "1.png"))


# -- images ---------------------------------------------------------------------------------------
def test_load_image_tiff_via_tifffile(raw_samples_root, clinicdb_root):
    tif = raw_samples_root / "cvc_clinicdb" / "Original" / "1.tif"
    with pytest.raises(Exception):  # noqa: B017 (Pillow raises various types)
        Image.open(tif).load()  # Pillow cannot decode these
    img = load_image(tif)
    assert img.mode == "RGB" and img.size == (384, 288)
    # shared/data's PNG was made losslessly from the same TIFF
    np.testing.assert_array_equal(np.asarray(img), np.asarray(load_image(clinicdb_root / "images" / "1.png")))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "1"])
def test_load_image_converts_to_rgb(tmp_path, mode):
    arr = (np.random.default_rng(0).random((12, 10)) * 255).astype(np.uint8)
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 257)
    elif mode == "1":
        img = Image.fromarray(arr > 127)
    else:
        img = Image.fromarray(arr, "L").convert(mode)
    img.save(tmp_path / "x.png")
    out = load_image(tmp_path / "x.png")
    assert out.mode == "RGB" and out.size == (10, 12)
    if mode == "I;16":
        np.testing.assert_array_equal(np.asarray(out)[..., 0], arr)


def test_bmp_image(tmp_path):
    Image.new("RGB", (7, 5), (10, 20, 30)).save(tmp_path / "x.bmp")
    assert load_image(tmp_path / "x.bmp").getpixel((0, 0)) == (10, 20, 30)


def test_truncated_and_garbage_files_name_the_file(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    buf = io.BytesIO()
    Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8), "L").save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) - 200])
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "text.tif").write_text("not a TIFF either")
    for name in ("cut.jpg", "cut.png", "text.png", "text.tif"):
        with raises_naming(ImageReadError, "image", str(tmp_path / name), "Re-copy or re-export it"):
            load_image(tmp_path / name)
        with raises_naming(ImageReadError, "mask", str(tmp_path / name), "Re-export the mask"):
            load_mask(tmp_path / name)
    with pytest.raises(ImageReadError, match="tifffile: "):  # both readers' complaints
        load_mask(tmp_path / "text.tif")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_mask(tmp_path / "nope.png")
