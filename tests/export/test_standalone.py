"""`vlsm export RUN --standalone OUT`: a slim run becomes a model folder with every weight and the model card,
which loads without the weight source; output rules as for every export."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import vlsm
from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset
from weight_sources import frozen_clipseg_experiment, seeded_logits


@pytest.fixture(scope="module")
def slim_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("standalone")
    data = make_synthetic_dataset(root / "synthetic_polyp", n_train=4, n_val=4, n_test=4, image_size=48, seed=4)
    source, exp = frozen_clipseg_experiment(root)
    out = root / "run"
    assert main(["train", "-c", str(exp), "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size",
                 "4", "--num-workers", "0", "--no-progress", "--device", "cpu", "--precision", "32-true"]) == 0
    assert "frozen" in json.loads((out / "model" / "vlsm_config.json").read_text())
    return out, source


def test_standalone_export_loads_without_the_source(slim_run, tmp_path, capsys):
    run, source = slim_run
    out = tmp_path / "share"
    assert main(["export", str(run), "--standalone", str(out)]) == 0
    assert "standalone model folder" in capsys.readouterr().out
    assert "frozen" not in json.loads((out / "vlsm_config.json").read_text())
    card = (out / "README.md").read_text()
    assert "**standalone**" in card and "Results" in card
    assert "**slim**" in (run / "model" / "README.md").read_text() and str(source) in (run / "model" / "README.md").read_text()
    want = seeded_logits(vlsm.load_pretrained(run / "model"))
    moved = tmp_path / "away"
    shutil.move(source, moved)
    try:
        assert torch.equal(seeded_logits(vlsm.load_pretrained(out)), want)
        with pytest.raises(FileNotFoundError, match="is slim"):
            vlsm.load_pretrained(run / "model")
    finally:
        shutil.move(moved, source)


def test_standalone_output_rules(slim_run, tmp_path, capsys):
    run, _ = slim_run
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for argv, needle in ((["export", run, mine, "--standalone"], "already exists"),
                         (["export", run, mine, "--standalone", "--overwrite"], "not a folder written by"),
                         (["export", run, tmp_path / "x", "--standalone", "--format", "onnx"], "pass only one")):
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    assert (mine / "notes.txt").read_text() == "keep" and not (tmp_path / "x").exists()
    out = tmp_path / "again"
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), str(out), "--standalone"]) == 0
    assert main(["export", str(run), str(out), "--standalone", "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary folder left
