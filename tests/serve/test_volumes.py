"""The web app on a volume or a multi-frame file: the middle plane first, a slider for the others (the
handlers of the page, without a browser), and the page builds with it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vlsm
from medical_samples import write_dicom, write_nifti
from vlsm.data.images import load_image
from vlsm.serve.session import Segmenter, load_runs, read_upload, upload_planes

gr = pytest.importorskip("gradio")

# a volume of 3 slices whose pixels differ per slice: (i, j, k) voxel order, planes 22 wide and 18 high
VOLUME = (np.arange(22 * 18 * 3).reshape(22, 18, 3) * 7 % 4000).astype(np.int16)


@pytest.fixture(scope="module")
def handlers(tmp_path_factory):
    from vlsm.serve.app import _Handlers, build_app

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "model"
    vlsm.create_model("unet-d", preset="tiny", image_size=32).save_pretrained(folder)
    runs = load_runs([folder], device="cpu")
    segmenter = Segmenter(runs, out_dir=tmp_path_factory.mktemp("masks"))
    build_app(runs, [], segmenter=segmenter)  # the page wires the slider
    return _Handlers(gr, runs, segmenter, {}, max_pixels=10**6)


def test_a_volume_shows_its_middle_slice_and_the_slider_the_others(handlers, tmp_path):
    path = write_nifti(tmp_path / "ct.nii.gz", VOLUME)
    assert upload_planes(path).planes == 3 and upload_planes(path).word == "slice"
    state, _, preview, _, _, plane, message, *_ = handlers.on_upload(str(path))
    assert np.array_equal(np.asarray(preview), np.asarray(load_image(path, 1)))  # the middle of 0..2
    assert plane["visible"] is True and (plane["maximum"], plane["value"]) == (2, 1)
    assert "slice 1 of its 3" in message and state["name"] == "ct_slice001"
    state, preview, message, *_ = handlers.on_plane(state, 2)
    assert np.array_equal(np.asarray(preview), np.asarray(load_image(path, 2)))
    assert not np.array_equal(np.asarray(load_image(path, 1)), np.asarray(load_image(path, 2)))
    assert state["name"] == "ct_slice002" and "slice 2" in message
    status, _, info, overlay, *_ = handlers.on_segment(state, "", [0])
    assert "Segmented **ct_slice002**" in status and np.asarray(overlay).shape[:2] == (18, 22)


def test_a_multi_frame_dicom_has_frames_and_a_picture_no_slider(handlers, tmp_path):
    frames = (np.arange(4 * 18 * 22).reshape(4, 18, 22) * 9 % 4096).astype(np.uint16)
    cine = write_dicom(tmp_path / "cine.dcm", frames, bits_stored=12)
    state, _, preview, _, _, plane, message, *_ = handlers.on_upload(str(cine))
    assert (plane["maximum"], plane["value"]) == (3, 2) and "frame 2 of its 4" in message
    assert np.array_equal(np.asarray(preview), np.asarray(read_upload(cine, slice_index=2)))
    single = write_dicom(tmp_path / "one.dcm", frames[0], bits_stored=12)
    assert upload_planes(single) is None and upload_planes(tmp_path / "missing.png") is None
    _, _, preview, _, _, plane, message, *_ = handlers.on_upload(str(single))
    assert plane == gr.update(visible=False) and preview.size == (22, 18) and "frame" not in message
