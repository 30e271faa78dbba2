"""`vlsm figure` on hand-made run folders (tiny random models saved with save_pretrained)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from vlsm.cli import main


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A plain-folder dataset: 5 RGB images (40x56) with disk masks and a split file."""
    root = tmp_path_factory.mktemp("figdata") / "tiny_polyp"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :56]
    for i in range(5):
        img = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
        mask = ((yy - 20) ** 2 + (xx - 20 - 3 * i) ** 2 < (8 + i) ** 2)
        img[mask] = (220, 120, 110)
        Image.fromarray(img).save(root / "images" / f"c{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"c{i}.png")
    (root / "splits.json").write_text(json.dumps({"train": ["c0", "c1"], "val": ["c2"], "test": ["c3", "c4"]}))
    return root


def _make_run(folder, name, data, label=None, threshold=0.5, **overrides):
    import torch

    from vlsm.config import ExperimentConfig, save_config
    from vlsm.models import create_model

    torch.manual_seed(0)
    model = create_model(name, preset="tiny", **overrides)
    folder.mkdir(parents=True)
    model.save_pretrained(folder / "model")
    cfg = ExperimentConfig(out=str(folder))
    cfg.model.name, cfg.model.preset, cfg.model.overrides = name, "tiny", overrides
    cfg.data.paths = [str(data)]
    cfg.eval.threshold = threshold
    save_config(cfg, folder / "config.yaml")
    if label:
        (folder / "summary.json").write_text(json.dumps({"model": {"name": name, "label": label}, "results": []}))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dataset):
    base = tmp_path_factory.mktemp("figruns")
    return (_make_run(base / "unet", "unet-d", dataset, image_size=32),
            _make_run(base / "clipseg", "clipseg", dataset, label="CLIPSeg tiny", threshold=0.4, image_size=32))


def _printed_dice(out: str) -> dict:
    result = {}
    for line in out.splitlines():
        m = re.match(r"(.+): Dice \(%\) (.+)", line)
        if m:
            result[m.group(1)] = {k: float(v) for k, v in (p.rsplit(" ", 1) for p in m.group(2).split(", "))}
    return result


def test_figure_from_runs_matches_evaluation(runs, dataset, tmp_path, capsys):
    from vlsm.data import load_split
    from vlsm.evaluation.evaluate import evaluate_records
    from vlsm.runs import load_trained_model

    out = tmp_path / "fig.png"
    # c3 is in the test split, c1 only in train (found after test); "c1.png" is its file name.
    assert main(["figure", str(runs[0]), str(runs[1]), "--images", "c3", "c1.png", "-o", str(out),
                 "--dpi", "80"]) == 0
    printed = capsys.readouterr().out
    m = re.search(r"\((\d+)x(\d+) px at 80 dpi\)", printed)
    with Image.open(out) as im:
        assert im.size == (int(m.group(1)), int(m.group(2)))
    dice = _printed_dice(printed)
    assert list(dice) == ["UNet-D [tiny]", "CLIPSeg tiny"]
    assert list(dice["UNet-D [tiny]"]) == ["c3", "c1"]
    # Each panel's Dice is what `vlsm evaluate` scores for that image (same prompt, threshold, size).
    records = {r.name: r for split in ("test", "train") for r in load_split(dataset, split)}
    for run, label, thr in ((runs[0], "UNet-D [tiny]", 0.5), (runs[1], "CLIPSeg tiny", 0.4)):
        model, cfg = load_trained_model(run)
        acc = evaluate_records(model, [records["c3"], records["c1"]], prompt=cfg.data.resolved_eval_prompt(),
                               threshold=thr, device="cpu")
        for case in acc.cases:
            assert dice[label][case.name] == pytest.approx(100 * case.dice, abs=0.006)


def test_figure_threshold_override_and_pdf(runs, dataset, tmp_path, capsys):
    out = tmp_path / "fig.pdf"
    # a threshold of 1 (every mask empty) is refused, naming the flag and the valid range
    assert main(["figure", str(runs[0]), "--images", "c4", "-o", str(out), "--threshold", "1.0"]) == 2
    assert "--threshold" in capsys.readouterr().err and not out.exists()
    assert main(["figure", str(runs[0]), "--images", "c4", "-o", str(out), "--threshold", "0.99999",
                 "--data", str(dataset)]) == 0
    assert out.read_bytes()[:5] == b"%PDF-"
    # Nothing of the tiny model exceeds this probability: an empty prediction against a non-empty mask scores 0.
    assert _printed_dice(capsys.readouterr().out) == {"UNet-D [tiny]": {"c4": 0.0}}


def test_figure_errors(runs, dataset, tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert main(["figure", str(runs[0]), "--images", "c9", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'c9'" in err and "closest: c4" in err and not out.exists()
    out.write_bytes(b"keep")
    assert main(["figure", str(runs[0]), "--images", "c3", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep"
    assert main(["figure", str(runs[0]), "--images", "c3", "-o", str(tmp_path / "fig.bmp")]) == 2
    assert "cannot tell the figure format" in capsys.readouterr().err
    assert main(["figure", str(runs[0]), str(runs[0]), "--images", "c3", "-o", str(tmp_path / "f.png")]) == 2
    assert "both labelled" in capsys.readouterr().err
    assert main(["figure", str(tmp_path / "nope"), "--images", "c3", "-o", str(tmp_path / "f.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
