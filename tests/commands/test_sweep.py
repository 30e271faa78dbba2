import json
from pathlib import Path

import pytest
import yaml

from vlsm.api.sweeps import plan_sweep as plan
from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset
from vlsm.models import list_models

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "experiments" / "paper").glob("*.yaml"))


def test_paper_grid_is_complete_and_loads(monkeypatch, tmp_path):
    monkeypatch.setenv("VLSM_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("VLSM_WEIGHTS", str(tmp_path / "weights"))
    items = plan(EXPERIMENTS, str(tmp_path / "runs"))
    grid = {(cfg.model.name, Path(cfg.data.paths[0]).name) for _, cfg, _, _ in items}
    models = {"unet-d", "clipseg", "biomedclipseg", "cris", "biomedclipseg-a", "clipseg-b", "ensemble-c"}
    datasets = {"kvasir_polyp", "clinicdb_polyp", "bkai_polyp", "busi", "chexlocalize"}
    assert grid == {(m, d) for m in models for d in datasets}
    registered = set(list_models())
    assert all(cfg.model.name in registered for _, cfg, _, _ in items if cfg.model.name != "cris")
    assert all(status == "new" for *_, status in items)


@pytest.fixture()
def two_experiments(tmp_path):
    data = make_synthetic_dataset(tmp_path / "syn", n_train=6, n_val=3, n_test=3, image_size=32, seed=1)
    files = []
    for name in ("a", "b"):
        exp = {"name": f"exp-{name}", "model": {"name": "unet-d", "preset": "tiny", "overrides": {"image_size": 32}},
               "data": {"paths": [str(data)]},
               "train": {"epochs": 1, "batch_size": 3, "num_workers": 0, "progress_bar": False, "seed": 1}}
        f = tmp_path / f"{name}.yaml"
        f.write_text(yaml.safe_dump(exp))
        files.append(f)
    return files


def test_sweep_runs_skips_finished_and_dry_run(two_experiments, tmp_path, capsys):
    root = tmp_path / "runs"
    assert main(["sweep", *map(str, two_experiments), "--out-root", str(root), "--dry-run"]) == 0
    assert "new" in capsys.readouterr().out and not root.exists()
    assert main(["sweep", *map(str, two_experiments), "--out-root", str(root)]) == 0
    for name in ("exp-a", "exp-b"):
        assert json.loads((root / name / "summary.json").read_text())["results"][0]["n"] == 3
    stamp = (root / "exp-a" / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["sweep", *map(str, two_experiments), "--out-root", str(root)]) == 0
    assert capsys.readouterr().out.count("done") == 2
    assert (root / "exp-a" / "summary.json").stat().st_mtime_ns == stamp
    # the same run names with other settings (the paper and fixed grids share names): not "done", refused
    assert main(["sweep", *map(str, two_experiments), "--out-root", str(root), "--set", "train.lr=0.01",
                 "--keep-going"]) == 1
    captured = capsys.readouterr()
    assert "exp-a holds a finished run of other settings" in captured.err and "train.lr: 0.001 -> 0.01" in captured.err
    assert "own --out-root" in captured.err
    assert (root / "exp-a" / "summary.json").stat().st_mtime_ns == stamp


def test_sweep_set_override_validation(two_experiments, tmp_path, capsys):
    assert main(["sweep", str(two_experiments[0]), "--dry-run", "--set", "train.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "--set: train: unknown key(s) ['nope']" in err and "'epochs'" in err
    assert main(["sweep", str(two_experiments[0]), "--dry-run", "--set", "train.epochs=many"]) == 2
    assert "train.epochs: expected an integer" in capsys.readouterr().err
    assert main(["sweep", str(two_experiments[0]), "--dry-run", "--set", "epochs"]) == 2
    assert "--set: expected KEY=VALUE" in capsys.readouterr().err


def test_sweep_reruns_an_experiment_whose_first_run_failed_at_start(two_experiments, tmp_path, monkeypatch, capsys):
    """A crash before the first checkpoint leaves config.yaml and no checkpoint; the next sweep starts that
    run again by itself (no --overwrite: sweep has none)."""
    from vlsm.training.module import SegmentationTask

    root = tmp_path / "runs"
    argv = ["sweep", *map(str, two_experiments), "--out-root", str(root), "--keep-going"]
    real = SegmentationTask.training_step

    def crash_in_a(self, batch, batch_idx):
        if "exp-a" in str(self.trainer.default_root_dir):
            raise RuntimeError("simulated crash in epoch 0")
        return real(self, batch, batch_idx)

    with monkeypatch.context() as m:
        m.setattr(SegmentationTask, "training_step", crash_in_a)
        assert main(argv) == 1
    out = capsys.readouterr()
    assert "exp-a" in out.out and "simulated crash" in out.err
    assert (root / "exp-a" / "config.yaml").is_file() and not (root / "exp-a" / "summary.json").exists()
    assert (root / "exp-b" / "summary.json").is_file()

    assert main(argv) == 0
    plan_lines = capsys.readouterr().out
    assert "new" in plan_lines and "done" in plan_lines
    assert json.loads((root / "exp-a" / "summary.json").read_text())["results"][0]["n"] == 3
