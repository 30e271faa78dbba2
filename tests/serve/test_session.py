"""The web app's logic without a browser: uploads, examples, per-run outputs, and the CLI's refusals."""
from __future__ import annotations

import socket
import sys

import numpy as np
import pytest
from PIL import Image

import vlsm
from naming import raises_naming
from vlsm.cli import main
from vlsm.evaluation.metrics import dice_score
from vlsm.serve.session import Segmenter, UploadError, load_examples, load_runs, read_upload


@pytest.fixture()
def trained(synthetic_data, unet_run, clipseg_run):
    """The session's synthetic dataset and its tiny UNet-D and CLIPSeg runs (tests/conftest.py), read-only."""
    return synthetic_data, [unet_run, clipseg_run]


def test_uploads_are_checked(tmp_path):
    good = tmp_path / "scan.png"
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(good)  # 16-bit grey becomes RGB
    assert read_upload(good).mode == "RGB" and read_upload(good).size == (30, 20)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with raises_naming(UploadError, "notes.png", "PNG, JPEG"):
        read_upload(text)
    with raises_naming(UploadError, "scan.png", "30 × 20", "--max-pixels"):
        read_upload(good, max_pixels=599)
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), "red").save(tmp_path / "full.png")
    truncated.write_bytes((tmp_path / "full.png").read_bytes()[:60])
    with pytest.raises(UploadError):
        read_upload(truncated)


def test_segment_matches_predictor_and_scores_examples(trained, tmp_path):
    data, run_dirs = trained
    runs = load_runs(run_dirs, device="cpu")
    assert [r.label for r in runs] == ["UNet-D [tiny]", "CLIPSeg [tiny]"]
    examples = load_examples(runs, per_dataset=2)
    assert [e.key for e in examples] == [f"synthetic_polyp / {e.record.name}" for e in examples] and len(examples) == 2
    prompts = examples[0].prompts()
    assert prompts[0][0].startswith("p1: ") and all(text for _, text in prompts)

    example = examples[0]
    image = vlsm.data.load_image(example.record.image_path)
    gt = vlsm.data.load_mask(example.record.mask_path)
    segmenter = Segmenter(runs, out_dir=tmp_path)
    outputs = segmenter.segment(image, "polyp", [0, 1], name=example.record.name, gt=gt)
    for run, out in zip(run_dirs, outputs):
        [expected] = vlsm.Predictor(run, device="cpu").predict(image, prompts="polyp")
        assert np.array_equal(out.mask > 127, expected.mask)
        assert np.array_equal(np.asarray(Image.open(out.mask_file)) > 127, expected.mask)
        assert out.dice == dice_score(expected.mask, gt) and f"Dice {100 * out.dice:.2f} %" in out.summary()
        assert out.overlay.shape == out.errors.shape == out.probabilities.shape == image.size[::-1] + (3,)
    assert outputs[0].prompt == "" and outputs[1].prompt == "polyp"

    only_second = segmenter.segment(image, "", [1])
    assert only_second[0] is None and "needs a text prompt" in only_second[1].summary()
    [unet_out, _] = segmenter.segment(image, "", [0])
    assert unet_out.errors is None and unet_out.dice is None and "Dice" not in unet_out.summary()


def test_missing_gradio_is_one_line(trained, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)
    assert main(["serve", str(trained[1][0])]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and 'pip install "vlsm-ensemble[serve]"' in err


def test_busy_port_and_bad_flags_are_one_line(trained, capsys):
    assert main(["serve", str(trained[1][0]), "--port", "0"]) == 2
    assert "--port must be between 1 and 65535" in capsys.readouterr().err
    assert main(["serve", str(trained[1][0] / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", str(trained[1][0]), "--port", str(port), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "another --port" in err
