"""ONNX export: parity with onnxruntime for every exported model kind, the folder's files, the CLI,
and the README's torch-free example."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vlsm
from naming import raises_naming
from vlsm.cli import main
from vlsm.export import export_onnx, verify
from vlsm.export.onnx_export import example_inputs

ort = pytest.importorskip("onnxruntime", reason='ONNX tests need pip install -e ".[onnx,test]"')
onnx = pytest.importorskip("onnx")

README = Path(__file__).resolve().parents[2] / "docs" / "inference.md"  # its torch-free example
TOLERANCE = 1e-4
PROMPTS = ["polyp", "", "A small, round POLYP at the top-left!", "  two   polyps\tnear 3 o'clock ",
           "café naïve", "lesion " * 120, "it's they're we've", "50% of 12.5mm", "<start_of_text> hi", "中文"]
FAST = [("unet-d", None), ("clipseg", None), ("biomedclipseg", None), ("biomedclipseg-a", "fixed"),
        ("biomedclipseg-a", "reference"), ("clipseg-b", "fixed"), ("ensemble-c", "fixed")]
# the reference CLIPSeg-B adapter attends across the batch: exported through torch.export (~1 min each)
SLOW = [("clipseg-b", "reference"), ("ensemble-c", "reference")]


def _tiny(name, variant):
    torch.manual_seed(0)
    return vlsm.create_model(name, preset="tiny", **({"variant": variant} if variant else {})).eval()


def _check_parity(model, folder: Path):
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 2):
        inputs = example_inputs(model, batch, prompt="a small round polyp")
        with torch.no_grad():
            expected = model(*inputs.values()).numpy()
        got = session.run(["logits"], {k: v.numpy() for k, v in inputs.items()})[0]
        assert got.shape == expected.shape == (batch, 1, model.preprocess.image_size, model.preprocess.image_size)
        assert np.abs(got - expected).max() <= TOLERANCE, (model.spec.name, batch)
    assert verify(model, folder, batch=3) <= TOLERANCE


def _check_folder(model, folder: Path):
    info = json.loads((folder / "preprocess.json").read_text())
    graph = onnx.load(str(folder / "model.onnx"))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    names = [i.name for i in graph.graph.input]
    s, pre = model.preprocess.image_size, model.preprocess
    assert info["image_size"] == s and info["mean"] == list(pre.mean) and info["std"] == list(pre.std)
    assert info["threshold"] == 0.5 and "sigmoid" in info["postprocess"]
    assert info["max_abs_logit_diff_vs_torch"] <= TOLERANCE
    for node in graph.graph.input:
        dims = node.type.tensor_type.shape.dim
        assert dims[0].dim_param, f"{node.name}: batch axis is not dynamic"
        assert [d.dim_value for d in dims[1:]] == info["inputs"][node.name]["shape"][1:]
    if model.uses_text:
        assert names == ["pixel_values", "input_ids", "attention_mask"]
        assert info["context_length"] == pre.context_length and info["tokenizer"] == pre.tokenizer
        # torch-free tokenization (the README's way) gives the model tokenizer's ids and mask
        from tokenizers import Tokenizer

        files = [Tokenizer.from_file(str(folder / name)) for name in info["tokenizer_files"]]
        expected = model.get_tokenizer()(PROMPTS)
        for key, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask")):
            got = np.concatenate([np.array([getattr(e, attr) for e in f.encode_batch(PROMPTS)]) for f in files], 1)
            assert np.array_equal(got, expected[key].numpy()), key
    else:
        assert names == ["pixel_values"] and info["tokenizer_files"] == []


@pytest.mark.parametrize("name,variant", FAST)
def test_parity_with_onnxruntime(name, variant, tmp_path):
    model = _tiny(name, variant)
    folder = export_onnx(model, tmp_path / "onnx")
    assert model.training is False
    _check_folder(model, folder)
    _check_parity(model, folder)


@pytest.mark.slow
@pytest.mark.parametrize("name,variant", SLOW)
def test_parity_batch_dependent_reference_variants(name, variant, tmp_path):
    model = _tiny(name, variant)
    folder = export_onnx(model, tmp_path / "onnx")
    _check_folder(model, folder)
    _check_parity(model, folder)  # batch 1, 2 and 3 from one graph: the step count follows the batch



@pytest.mark.parametrize("tokenizer", ["clip-bpe", "wordpiece"])
def test_tokenizer_json_matches_the_model_tokenizer(tokenizer, tmp_path):
    from tokenizers import Tokenizer

    from vlsm.export.tokenizer import hf_tokenizer
    from vlsm.text.tokenizers import ClipBPETokenizer, WordPieceTokenizer

    tok = ClipBPETokenizer(77) if tokenizer == "clip-bpe" else WordPieceTokenizer.character_level(24)
    hf_tokenizer(tok).save(str(tmp_path / "tokenizer.json"))
    loaded = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    expected = tok(PROMPTS)
    enc = loaded.encode_batch(PROMPTS)
    assert np.array_equal(np.array([e.ids for e in enc]), expected["input_ids"].numpy())
    assert np.array_equal(np.array([e.attention_mask for e in enc]), expected["attention_mask"].numpy())


@pytest.fixture(scope="module")
def clipseg_run(_synthetic_data, tmp_path_factory):
    """Tiny CLIPSeg trained on the session's synthetic data with a fixed prompt text, "polyp", which the export
    carries as its default prompt (the session's shared CLIPSeg run draws p1 per image, so it has none)."""
    from tiny_runs import train_tiny

    return train_tiny(_synthetic_data, tmp_path_factory.mktemp("export") / "clipseg",
                      {"model.name": "clipseg", "model.overrides.image_size": 64, "data.prompt": "polyp",
                       "train.epochs": 1})


def test_cli_export_and_refusals(clipseg_run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(clipseg_run), "--format", "onnx", str(out)]) == 0
    assert "max |logit diff|" in capsys.readouterr().out
    info = json.loads((out / "preprocess.json").read_text())
    assert info["model"] == "clipseg" and info["default_prompt"] == "polyp"
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "preprocess.json", "tokenizer.json",
                                                     "vlsm_tokenizer.json"]

    assert main(["export", str(clipseg_run), "--format", "tflite", str(tmp_path / "x")]) == 2
    assert "unknown --format 'tflite'; valid formats: onnx" in capsys.readouterr().err
    assert main(["export", str(clipseg_run), str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["export", str(clipseg_run), str(other), "--overwrite"]) == 2
    assert "not a folder written by `vlsm export`" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "mine"
    before = (out / "model.onnx").stat().st_mtime_ns
    assert main(["export", str(clipseg_run), str(out), "--overwrite"]) == 0
    assert (out / "model.onnx").stat().st_mtime_ns != before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"


def test_missing_onnx_packages_is_one_line(clipseg_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["export", str(clipseg_run), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and 'pip install "vlsm-ensemble[onnx]"' in err
    assert not (tmp_path / "x").exists()


def _readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    [code] = [b for b in blocks if "import onnxruntime" in b]
    return code


def test_readme_example_runs_without_torch_and_matches_predictor(clipseg_run, tmp_path):
    """The docs' onnxruntime example (docs/inference.md), run as written (torch made unimportable), gives Predictor's mask."""
    code = _readme_example()
    folder, image_file, mask_file = (re.search(rf'{k} = "([^"]+)"', code).group(1)
                                     for k in ("folder", "image_file", "mask_file"))
    assert main(["export", str(clipseg_run), str(tmp_path / folder)]) == 0
    rng = np.random.default_rng(5)
    from PIL import Image

    for size in ((61, 90), (30, 20)):  # larger and smaller than the model's 64 px input
        rgb = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / image_file)
        [pred] = vlsm.Predictor(clipseg_run, device="cpu", precision="32-true").predict(
            tmp_path / image_file, prompts=re.search(r'prompt = "([^"]+)"', code).group(1))
        # a threshold inside this image's probabilities, so that the mask compared is not all one value
        threshold = float(np.median(pred.probabilities))
        info_file = tmp_path / folder / "preprocess.json"
        info_file.write_text(json.dumps({**json.loads(info_file.read_text()), "threshold": threshold}))
        prelude = "import sys\nsys.modules['torch'] = None  # the example must not need PyTorch\n"
        keep = "\nnp.save('probabilities.npy', probabilities)\n"
        result = subprocess.run([sys.executable, "-c", prelude + code + keep], cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        mask = np.asarray(Image.open(tmp_path / mask_file)) > 127
        expected = pred.probabilities > threshold
        assert mask.shape == expected.shape == size and 0 < expected.sum() < expected.size
        near = np.abs(pred.probabilities - threshold) < TOLERANCE  # float rounding may flip only these
        assert np.array_equal(mask[~near], expected[~near])
        assert np.abs(np.load(tmp_path / "probabilities.npy") - pred.probabilities).max() <= 1e-5


def test_a_model_that_does_not_export_is_refused_and_nothing_is_left(tmp_path):
    # CRIS convolves each image with weights computed from its own text (groups = batch size), which an
    # ONNX Conv cannot take as a dynamic batch: the check at batch sizes 1 and 3 catches it
    from vlsm.errors import UserError

    model = _tiny("cris", None)
    with raises_naming(UserError, "cris", "dynamic batch", "UNet-D, CLIPSeg"):
        export_onnx(model, tmp_path / "cris")
    assert list(tmp_path.iterdir()) == []
