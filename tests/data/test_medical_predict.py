"""DICOM (MONOCHROME1/2, 16-bit), NIfTI and MetaImage inputs through `vlsm predict`, vlsm.Predictor and the web
app's upload and segmentation (files written here by pydicom, nibabel and SimpleITK)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import vlsm
from medical_samples import write_dicom, write_metaimage, write_nifti
from vlsm.cli import main
from vlsm.data.images import load_image
from vlsm.predictor import Predictor

RAMP = (np.arange(18 * 22).reshape(18, 22) * 10).astype(np.uint16)  # 16-bit data, 18 rows x 22 columns


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "model"
    vlsm.create_model("unet-d", preset="tiny", image_size=32).save_pretrained(folder)
    return folder


@pytest.fixture()
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_dicom(folder / "m2.dcm", RAMP, bits_stored=16)
    write_dicom(folder / "m1.dcm", RAMP, photometric="MONOCHROME1", bits_stored=16)
    write_nifti(folder / "ct.nii.gz", RAMP.T.astype(np.int16))  # voxel order (i, j)
    write_metaimage(folder / "echo.mha", (RAMP // 16).astype(np.uint8))
    return folder


def test_predict_writes_a_png_per_input_at_its_size(model_dir, inputs, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", "-i", str(inputs), "-o", str(out), "--checkpoint", str(model_dir), "--device", "cpu",
                 "--overlays", "--nifti"]) == 0
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert [n for n in names if n.endswith(".png") and "overlay" not in n] == ["ct.png", "echo.png", "m1.png",
                                                                               "m2.png"]
    want = Predictor(model_dir, device="cpu").predict(load_image(inputs / "m2.dcm"))[0].mask
    assert (np.asarray(Image.open(out / "m2.png")) > 127).shape == (18, 22)
    assert ((np.asarray(Image.open(out / "m2.png")) > 127) == want).all()
    assert "ct.nii.gz" in names and "m2.nii.gz" not in names  # NIfTI masks for NIfTI inputs only
    mask = nib.load(out / "ct.nii.gz")
    assert mask.shape == (22, 18) and np.allclose(mask.affine, nib.load(inputs / "ct.nii.gz").affine)
    assert ((np.asarray(mask.dataobj).T > 0) == (np.asarray(Image.open(out / "ct.png")) > 127)).all()


def test_volumes_and_multi_frame_files_need_a_slice(model_dir, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_nifti(folder / "vol.nii.gz", np.stack([RAMP.T, RAMP.T // 2, RAMP.T // 3], -1).astype(np.int16))
    write_dicom(folder / "cine.dcm", np.stack([RAMP, RAMP[::-1]]), bits_stored=16)
    common = ["--checkpoint", str(model_dir), "--device", "cpu"]
    assert main(["predict", "-i", str(folder / "vol.nii.gz"), "-o", str(tmp_path / "o0"), *common]) != 0
    assert "vol.nii.gz holds 3 slices: choose one with --slice K" in capsys.readouterr().err
    assert main(["predict", "-i", str(folder), "-o", str(tmp_path / "o1"), "--slice", "all", "--nifti", *common]) == 0
    written = sorted(p.name for p in (tmp_path / "o1").iterdir() if not p.name.startswith("."))
    assert written == ["cine_frame000.png", "cine_frame001.png", "vol.nii.gz", "vol_slice000.png",
                       "vol_slice001.png", "vol_slice002.png"]
    volume = nib.load(tmp_path / "o1" / "vol.nii.gz")
    assert volume.shape == (22, 18, 3)
    assert main(["predict", "-i", str(folder / "vol.nii.gz"), "-o", str(tmp_path / "o2"), "--frame", "1", "--nifti",
                 *common]) == 0
    one = nib.load(tmp_path / "o2" / "vol_slice001.nii.gz")
    assert one.shape == (22, 18, 1) and np.allclose(one.affine, nib.load(folder / "vol.nii.gz").slicer[:, :, 1:2].affine)
    assert main(["predict", "-i", str(folder / "vol.nii.gz"), "-o", str(tmp_path / "o3"), "--slice", "x", *common]) != 0
    assert "--slice must be a frame/slice number (0, 1, ...) or 'all'" in capsys.readouterr().err


def test_the_web_app_reads_and_segments_dicom_and_nifti_uploads(model_dir, inputs, tmp_path):
    from vlsm.serve.session import Segmenter, UploadError, load_runs, read_upload

    [run] = load_runs([model_dir], device="cpu")
    segmenter = Segmenter([run], out_dir=tmp_path)
    m1, m2 = read_upload(inputs / "m1.dcm"), read_upload(inputs / "m2.dcm")
    assert m1.size == m2.size == (22, 18) and m1.mode == "RGB"
    assert (np.asarray(m1) == 255 - np.asarray(m2)).all()  # MONOCHROME1 shown inverted
    for name in ("m1.dcm", "m2.dcm", "ct.nii.gz"):
        image = read_upload(inputs / name)
        [out] = segmenter.segment(image, "", [0], name=name)
        [want] = Predictor(model_dir, device="cpu").predict(image)
        assert out.mask.shape == (18, 22) and np.array_equal(out.mask > 127, want.mask)
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 64)
    with pytest.raises(UploadError, match="bad.dcm"):
        read_upload(tmp_path / "bad.dcm")
