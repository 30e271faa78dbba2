"""DICOM, NIfTI and MetaImage files, written here by pydicom, nibabel and SimpleITK, read as 2-D planes."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medical_samples import write_dicom, write_metaimage, write_nifti
from naming import raises_naming
from vlsm.data import list_images
from vlsm.data.images import ImageReadError, check_pixel_limit, image_size, load_image, read_spacing
from vlsm.data.masks import load_mask
from vlsm.data.medical import nifti_mask_bytes, plane_info, read_plane

RAMP = (np.arange(12 * 10).reshape(12, 10) * 30).astype(np.uint16)  # 0..3570, 12-bit


def grey(image) -> np.ndarray:
    arr = np.asarray(image)
    assert arr.shape[-1] == 3 and (arr[..., 0] == arr[..., 2]).all()
    return arr[..., 0]


def test_dicom_16_bit_monochrome2_is_stretched_and_monochrome1_inverted(tmp_path):
    write_dicom(tmp_path / "m2.dcm", RAMP, bits_stored=12)
    write_dicom(tmp_path / "m1.dcm", RAMP, photometric="MONOCHROME1", bits_stored=12)
    m2, m1 = grey(load_image(tmp_path / "m2.dcm")), grey(load_image(tmp_path / "m1.dcm"))
    assert m2.shape == (12, 10) and m2[0, 0] == 0 and m2[-1, -1] == 255  # min..max without a window
    assert (m1 == 255 - m2).all()  # MONOCHROME1: high values are dark
    assert np.all(np.diff(m2.ravel().astype(int)) >= 0)


def test_dicom_window_and_voi_lut_are_applied(tmp_path):
    write_dicom(tmp_path / "w.dcm", RAMP, bits_stored=12, window=(1000, 1000))
    w = grey(load_image(tmp_path / "w.dcm"))
    values = RAMP.astype(float)
    assert (w[values <= 500] == 0).all() and (w[values >= 1500] == 255).all()
    middle = (values > 600) & (values < 1400)
    expected = np.round(np.clip((values - 999.5) / 999 + 0.5, 0, 1) * 255)
    assert np.abs(w[middle] - expected[middle]).max() <= 1
    lut = (np.arange(4096) // 16 * 257).astype(np.uint16)  # 16-bit output table
    write_dicom(tmp_path / "lut.dcm", RAMP, bits_stored=12, voi_lut=lut)
    assert np.abs(grey(load_image(tmp_path / "lut.dcm")).astype(int) - RAMP // 16).max() <= 1
    write_dicom(tmp_path / "ct.dcm", RAMP.astype(np.int16), bits_stored=16, rescale=(1.0, -1024.0), window=(40, 400))
    assert grey(load_image(tmp_path / "ct.dcm"))[0, 0] == 0  # -1024 HU: below the soft-tissue window


def test_dicom_8_bit_rgb_and_files_without_extension(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0], rgb[2:4, 2:6, 1] = 200, 90
    write_dicom(tmp_path / "IM000001", rgb, photometric="RGB")
    assert (np.asarray(load_image(tmp_path / "IM000001")) == rgb).all()
    assert [r.name for r in list_images(tmp_path)] == ["IM000001"]
    small = (np.arange(48).reshape(6, 8) * 5).astype(np.uint8)
    write_dicom(tmp_path / "u8.dcm", small)
    assert (grey(load_image(tmp_path / "u8.dcm")) == small).all()  # 8-bit data as stored


def test_multi_frame_dicom_is_refused_or_read_frame_by_frame(tmp_path):
    frames = np.stack([RAMP, RAMP[::-1], RAMP // 2])
    path = write_dicom(tmp_path / "cine.dcm", frames, bits_stored=12)
    assert plane_info(path).planes == 3 and image_size(path) == (10, 12)
    with raises_naming(ImageReadError, str(path), "3 frames", "--slice K", "--slice all"):
        load_image(path)
    assert (grey(load_image(path, 1)) == grey(load_image(write_dicom(tmp_path / "one.dcm", RAMP[::-1],
                                                                     bits_stored=12)))).all()
    with pytest.raises(ImageReadError, match="3 frames.*no frame 3"):
        load_image(path, 3)
    with pytest.raises(ValueError, match=r"cine\.dcm holds 3 frames"):
        list_images(tmp_path)
    records = list_images(path, slices="all")
    assert [(r.name, r.slice_index) for r in records] == [("cine_frame000", 0), ("cine_frame001", 1),
                                                          ("cine_frame002", 2)]
    assert [r.name for r in list_images(path, slices=2)] == ["cine_frame002"]


def test_nifti_2d_and_a_chosen_slice_of_a_volume(tmp_path):
    plane = np.zeros((10, 12), np.int16)  # voxel axes (i, j): 10 columns, 12 rows
    plane[2:5, 3:9] = 400
    two_d = write_nifti(tmp_path / "a.nii.gz", plane, zooms=(0.3, 0.6))
    image = grey(load_image(two_d))
    assert image.shape == (12, 10) and (image > 0).sum() == 18 and (image[3:9, 2:5] == 255).all()
    assert read_spacing(two_d) == (0.6, 0.3)
    volume = write_nifti(tmp_path / "v.nii", np.stack([plane * 0, plane, plane * 2], -1))
    with pytest.raises(ImageReadError, match="holds 3 slices"):
        load_image(volume)
    assert (grey(load_image(volume, 1)) == image).all()
    assert [r.name for r in list_images(volume, slices="all")] == ["v_slice000", "v_slice001", "v_slice002"]
    with raises_naming(ValueError, str(volume), "--slice 5", "0..2"):
        list_images(volume, slices=5)


def test_metaimage_reads_as_nifti_does_and_spacing(tmp_path):
    plane = np.zeros((12, 10), np.uint8)
    plane[3:9, 2:5] = 200
    mhd = write_metaimage(tmp_path / "a.mhd", plane, spacing=(0.3, 0.6))
    assert (grey(load_image(mhd)) == plane).all() and read_spacing(mhd) == pytest.approx((0.6, 0.3))
    mha = write_metaimage(tmp_path / "v.mha", np.stack([plane, plane // 2]))
    assert plane_info(mha).planes == 2 and (grey(load_image(mha, 0)) == plane).all()
    (tmp_path / "a.raw").unlink()
    with pytest.raises(ImageReadError, match=r"a\.mhd.*\.raw file"):
        load_image(mhd)


def test_read_spacing_of_pictures_is_none_and_dicom_spacing(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.tif")
    assert read_spacing(tmp_path / "a.png") is None and read_spacing(tmp_path / "a.tif") is None
    assert read_spacing(write_dicom(tmp_path / "s.dcm", RAMP, spacing=(0.7, 0.2))) == (0.7, 0.2)
    assert read_spacing(write_dicom(tmp_path / "n.dcm", RAMP, spacing=None)) is None
    with pytest.raises(FileNotFoundError):
        read_spacing(tmp_path / "missing.dcm")


def test_bad_medical_files_get_one_line_naming_them(tmp_path):
    for name in ("bad.dcm", "bad.nii.gz", "bad.nii", "bad.mha"):
        (tmp_path / name).write_bytes(b"not medical at all " * 40)
        with pytest.raises(ImageReadError) as err:
            load_image(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)


def test_decompression_limit_applies_before_decoding(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "big.dcm", np.zeros((40, 50), np.uint16))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # check_pixel_limit sets it
    with raises_naming(ValueError, str(path), "50x40", "--max-pixels"):
        check_pixel_limit([path], 1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="over the decompression limit"):
        load_image(path)


def test_label_maps_are_masks_and_nifti_masks_keep_the_geometry(tmp_path):
    import nibabel as nib

    labels = np.zeros((10, 12), np.uint8)
    labels[2:5, 3:9] = 1
    path = write_nifti(tmp_path / "gt.nii.gz", labels)
    assert (load_mask(path) == (labels.T == 1)).all()
    assert read_plane(path, raw=True).dtype == np.uint8
    volume = write_nifti(tmp_path / "v.nii.gz", np.stack([labels] * 4, -1))
    one = tmp_path / "one.nii.gz"
    one.write_bytes(nifti_mask_bytes(volume, {2: labels.T == 1}))
    out, src = nib.load(one), nib.load(volume)
    assert out.shape == (10, 12, 1) and (np.asarray(out.dataobj)[..., 0] == labels).all()
    assert np.allclose(out.affine, src.slicer[:, :, 2:3].affine) and out.get_data_dtype() == np.uint8
    every = tmp_path / "all.nii.gz"
    every.write_bytes(nifti_mask_bytes(volume, {k: labels.T == 1 for k in range(4)}))
    assert nib.load(every).shape == (10, 12, 4) and np.allclose(nib.load(every).affine, src.affine)
