"""Post-processing and threshold chosen on validation (issue 18): the rules, the choice (kept only when it raises
validation Dice), its record in a trained run, and its use by evaluate, predict and the ONNX example."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vlsm
from naming import raises_naming
from vlsm.evaluation.metrics import dice_score
from vlsm.evaluation.postprocessing import CANDIDATES, choose, rule_dice
from vlsm.models.unet_d import UNetD
from vlsm.predictor import Predictor, postprocess_mask
from vlsm.runs.results import PostProcessing


def test_the_rules():
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:8, 2:8] = True     # 36 pixels, the largest
    mask[12:14, 12:14] = True  # 4
    mask[15, 0] = mask[16, 1] = True  # 2 pixels, 8-connected (diagonal): one component
    largest = postprocess_mask(mask, PostProcessing("largest_component"))
    assert largest.sum() == 36 and largest[2:8, 2:8].all()
    assert postprocess_mask(mask, PostProcessing("min_size", 3 / 400)).sum() == 40  # drops the 2-pixel one
    assert postprocess_mask(mask, PostProcessing()) is mask
    tie = np.zeros((5, 9), dtype=bool)
    tie[1:3, 1:3] = tie[1:3, 5:7] = True
    assert postprocess_mask(tie, PostProcessing("largest_component"))[1:3, 1:3].all()  # the first in raster order
    assert not postprocess_mask(np.zeros((3, 3), bool), PostProcessing("largest_component")).any()


def test_rule_dice_is_the_dice_of_the_post_processed_mask():
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask, gt = rng.random((24, 30)) > 0.7, rng.random((24, 30)) > 0.6
        want = [dice_score(postprocess_mask(mask, r), gt) for r in CANDIDATES]
        np.testing.assert_allclose(rule_dice(mask, gt, CANDIDATES), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("text, match", [("biggest", "unknown"), ("min_size:2", r"in \(0, 1\)"),
                                         ("largest_component:0.1", "goes with rule min_size")])
def test_bad_rules_are_one_line(text, match):
    with pytest.raises(ValueError, match=match) as err:
        PostProcessing.parse(text)
    assert "\n" not in str(err.value)


def _crafted(folder, n: int, seed: int) -> None:
    """Dark images with a bright disk (the mask) and three bright specks (not in it)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    for image in sorted((folder / "images").iterdir())[:n] if n else sorted((folder / "images").iterdir()):
        cy, cx = rng.integers(16, 32, 2)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(36, 81)
        bright = disk.copy()
        for _ in range(3):
            y, x = rng.integers(0, 45, 2)
            if not disk[max(y - 4, 0):y + 7, max(x - 4, 0):x + 7].any():
                bright[y:y + 3, x:x + 3] = True
        Image.fromarray(np.where(bright[..., None], 230, 20).astype(np.uint8).repeat(3, axis=2)).save(image)
        Image.fromarray(disk.astype(np.uint8) * 255).save(folder / "masks" / image.name)


def _thresholding_forward(original):
    """UNet-D's forward made a fixed function of the image (bright -> foreground), still attached to the
    weights so that training runs: a model whose masks have spurious small components."""
    def forward(self, pixel_values, input_ids=None, attention_mask=None):
        out = original(self, pixel_values, input_ids, attention_mask)
        return out * 0 + 8 * pixel_values.mean(1, keepdim=True)
    return forward


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    from vlsm.data.synthetic import make_synthetic_dataset

    folder = make_synthetic_dataset(tmp_path_factory.mktemp("pp") / "specks", n_train=4, n_val=6, n_test=4,
                                    image_size=48)
    _crafted(folder, 0, seed=0)
    patch = pytest.MonkeyPatch()
    patch.setattr(UNetD, "forward", _thresholding_forward(UNetD.forward))
    yield folder
    patch.undo()


def test_choose_keeps_a_rule_only_when_it_raises_validation_dice(crafted):
    from vlsm.data import load_split

    torch.manual_seed(0)
    predictor = Predictor(vlsm.create_model("unet-d", preset="tiny", image_size=32), device="cpu")
    records = load_split(crafted, "val")
    choice = choose(predictor, records, prompt="p1", threshold=0.5)
    assert choice.postprocessing == PostProcessing("largest_component")  # (ties with min sizes: listed first)
    assert choice.dice["largest_component"] > choice.dice["none"] and choice.n == len(records)
    assert choose(predictor, records, prompt="p1", threshold=0.5, postprocess=False).postprocessing.rule == "none"
    tuned = choose(predictor, records, prompt="p1", threshold=0.05, tune_threshold=True, postprocess=False)
    assert tuned.threshold != 0.05 and tuned.threshold_dice[f"{tuned.threshold:g}"] == max(tuned.threshold_dice.values())
    clean = [r for r in records]
    for r in clean:  # masks that are the whole bright area: no rule raises Dice, so none is kept
        bright = np.asarray(Image.open(r.image_path))[..., 0] > 127
        Image.fromarray(bright.astype(np.uint8) * 255).save(r.mask_path)
    try:
        assert choose(predictor, clean, prompt="p1", threshold=0.5).postprocessing.rule == "none"
    finally:
        _crafted(crafted, 0, seed=0)


def test_a_trained_run_records_its_choice_and_evaluation_applies_it(crafted, tmp_path):
    from vlsm.api import evaluate, train
    from vlsm.data import load_mask, load_split

    done = train(overrides=[("model.name", "unet-d"), ("model.preset", "tiny"), ("model.overrides.image_size", 32),
                            ("data.paths", [str(crafted)]), ("out", str(tmp_path / "run")), ("train.epochs", 1),
                            ("train.batch_size", 4), ("train.num_workers", 0), ("train.progress_bar", False),
                            ("train.device", "cpu"), ("train.tune_threshold", True)])
    record = done.summary["train"]["postprocessing"]
    assert record["rule"] == "largest_component" and record["threshold_tuned"] is True
    assert record["validation_dice"]["largest_component"] > record["validation_dice"]["none"]
    [result] = done.summary["results"]
    assert result["postprocessing"] == "largest_component" and result["threshold"] == record["threshold"]
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "keep only the largest connected component" in card and "| mask threshold | tuned on" in card

    predictor = Predictor(tmp_path / "run", device="cpu")
    assert predictor.postprocessing.rule == "largest_component" and predictor.threshold == record["threshold"]
    records = load_split(crafted, "test")
    raw = Predictor(tmp_path / "run", device="cpu", postprocess=False).predict_records(records)
    want = [dice_score(postprocess_mask(p.mask, predictor.postprocessing), load_mask(r.mask_path))
            for p, r in zip(raw, records)]
    again = evaluate(tmp_path / "run", out=tmp_path / "again", device="cpu").results[0]
    off = evaluate(tmp_path / "run", out=tmp_path / "off", device="cpu", postprocess=False).results[0]
    assert again.dice_mean == pytest.approx(np.mean(want)) == pytest.approx(result["dice_mean"])
    assert off.dice_mean < again.dice_mean and off.postprocessing is None
    summary_file = tmp_path / "run" / "summary.json"
    summary = json.loads(summary_file.read_text())
    summary["train"]["postprocessing"]["rule"] = "biggest"
    summary_file.write_text(json.dumps(summary))
    with raises_naming(ValueError, str(summary_file), "train.postprocessing", "'biggest'", "--no-postprocess"):
        Predictor(tmp_path / "run", device="cpu")
    assert Predictor(tmp_path / "run", device="cpu", postprocess=False).postprocessing.rule == "none"


def test_the_onnx_example_applies_the_runs_choice(crafted, tmp_path):
    """docs/inference.md's torch-free example with test-time augmentation and a post-processing rule."""
    import re
    import subprocess
    import sys

    from conftest import REPO
    from vlsm.api import export
    from vlsm.export.onnx_export import PREPROCESS_FILE

    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = vlsm.create_model("unet-d", preset="tiny", image_size=32)
    model.save_pretrained(tmp_path / "model")
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "inference.md").read_text(), re.S)
    [code] = [b for b in blocks if "import onnxruntime" in b]
    folder = re.search(r'folder = "([^"]+)"', code).group(1)
    rule = PostProcessing("min_size", 0.02)
    predictor = Predictor(tmp_path / "model", device="cpu", tta=True, postprocess=rule)
    export(tmp_path / "model", tmp_path / folder)
    info_file = tmp_path / folder / PREPROCESS_FILE
    info = json.loads(info_file.read_text())
    assert info["tta"]["flip_axes"] == [[]] and info["postprocessing"]["rule"] == "none"  # (a bare model: none)
    image = sorted((crafted / "images").iterdir())[0]
    [pred] = predictor.predict(image)
    # a threshold no probability is near (float rounding between onnxruntime and torch may flip only those)
    threshold = next(t for t in np.arange(0.5, 0.05, -0.01) if np.abs(pred.probabilities - t).min() > 1e-4)
    info.update(threshold=threshold, tta={"flip_axes": [[], [3], [2], [2, 3]], "combine": "mean"},
                postprocessing={"rule": rule.rule, "min_size": rule.min_size, "connectivity": 8})
    info_file.write_text(json.dumps(info))
    (tmp_path / "scan.png").write_bytes(image.read_bytes())
    prelude = "import sys\nsys.modules['torch'] = None  # the example must not need PyTorch\n"
    result = subprocess.run([sys.executable, "-c", prelude + code + "\nnp.save('p.npy', probabilities)\n"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert np.abs(np.load(tmp_path / "p.npy") - pred.probabilities).max() <= 1e-5
    [pred] = predictor.predict(image, threshold=threshold)
    mask = np.asarray(Image.open(tmp_path / re.search(r'mask_file = "([^"]+)"', code).group(1))) > 127
    assert np.array_equal(mask, pred.mask) and 0 < mask.sum() < (pred.probabilities > threshold).sum()

