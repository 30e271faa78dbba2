"""Issue 19: the grids make_grid.py writes (no post-processing in the paper and fixed grids, medvlsm's cross-dataset
polyp experiments, seed/fold/fraction grids), vlsm sweep --dry-run's count and its estimate from vlsm bench's
figures, and the learning curve (vlsm figure --curve)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fake_runs import fake_run
from vlsm.cli import main

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _make_grid():
    spec = importlib.util.spec_from_file_location("make_grid", EXPERIMENTS / "make_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_grids_turn_post_processing_off_and_cross_is_medvlsms_polyp_study():
    make_grid = _make_grid()
    for grid in ("paper", "fixed", "cross"):
        files = sorted((EXPERIMENTS / grid).glob("*.yaml"))
        assert len(files) == (14 if grid == "cross" else 35)
        assert all(yaml.safe_load(f.read_text())["eval"]["postprocess"] is False for f in files)
    assert "eval.postprocess: false" in make_grid.__doc__
    cross = yaml.safe_load((EXPERIMENTS / "cross" / "clipseg-b-kvasir_clinicdb_bkai.yaml").read_text())
    assert [Path(p).name for p in cross["data"]["paths"]] == ["kvasir_polyp", "clinicdb_polyp", "bkai_polyp"]
    assert [Path(p).name for p in cross["data"]["test_paths"]] == ["colondb_polyp", "etis_polyp", "cvc300_polyp"]
    fixed = yaml.safe_load((EXPERIMENTS / "fixed" / "clipseg-b-kvasir_polyp.yaml").read_text())
    assert cross["train"] == fixed["train"] and cross["model"] == fixed["model"]  # the fixed recipe
    assert make_grid.main(["--check"]) == 0


def test_make_grid_writes_seed_fold_and_fraction_grids(tmp_path, monkeypatch, capsys):
    make_grid = _make_grid()
    out = tmp_path / "efficiency"
    assert make_grid.main(["--grid", "fixed", "--models", "unet-d", "clipseg-b", "--datasets", "kvasir_polyp",
                           "--fractions", "0.1", "0.5", "1", "--seeds", "0", "1", "2", "--out", str(out)]) == 0
    files = sorted(out.glob("*.yaml"))
    assert [f.name for f in files] == ["clipseg-b-kvasir_polyp.yaml", "unet-d-kvasir_polyp.yaml"]
    assert yaml.safe_load(files[0].read_text())["sweep"] == {"seeds": [0, 1, 2], "fractions": [0.1, 0.5, 1.0]}
    monkeypatch.setenv("VLSM_DATA_ROOT", str(tmp_path / "data"))
    assert main(["sweep", *map(str, files), "--out-root", str(tmp_path / "runs"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "18 run(s) (18 new) from 2 experiment file(s)"
    assert any("/unet-d-kvasir_polyp-frac0.1-seed2  (unet-d" in line for line in lines)
    assert make_grid.main(["--seeds", "0"]) == 2 and "add --grid" in capsys.readouterr().err
    assert make_grid.main(["--grid", "cross", "--folds", "5", "--out", str(tmp_path / "cv")]) == 0
    assert len(list((tmp_path / "cv").glob("*.yaml"))) == 14


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    from vlsm.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("grid")
    data = make_synthetic_dataset(root / "syn", n_train=8, n_val=4, n_test=4, image_size=32, seed=1)
    exp = {"name": "tiny", "model": {"name": "unet-d", "preset": "tiny", "overrides": {"image_size": 32}},
           "data": {"paths": [str(data)]}, "train": {"epochs": 3, "batch_size": 4}}
    (root / "tiny.yaml").write_text(yaml.safe_dump(exp))
    return root


def _bench_entry(**values):
    entry = {"model": "unet-d", "variant": None, "preset": "tiny", "image_size": 32, "batch_size": 4,
             "precision": "32-true", "device": "cuda:0", "train_img_s": 10.0, "infer_img_s": 20.0}
    return {**entry, **values}


def test_the_dry_run_estimates_hours_from_bench_figures(tiny_grid, capsys):
    bench = tiny_grid / "bench.json"
    bench.write_text(json.dumps([_bench_entry(model="clipseg"), _bench_entry()]))
    args = ["sweep", str(tiny_grid / "tiny.yaml"), "--out-root", str(tiny_grid / "runs"), "--dry-run", "--bench",
            str(bench)]
    assert main([*args, "--fractions", "0.5", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # epochs x (train / 10 img/s + val / 20 img/s) + test / 20 img/s: 3 x (4/10 + 4/20) + 4/20 = 2.0 s at 50 %
    [half] = [line for line in lines if line.startswith("estimate ") and "tiny-frac0.5:" in line]
    [full] = [line for line in lines if line.startswith("estimate ") and "tiny-frac1:" in line]
    assert f"{2.0 / 3600:.3g} GPU-hours (4 train / 4 val images x 3 epochs" in half
    assert f"{3.2 / 3600:.3g} GPU-hours (8 train" in full
    assert lines[-1].startswith(f"estimate: {5.2 / 3600:.2f} GPU-hours for 2 of 2 run(s) (at most:")
    assert f"measured by vlsm bench in {bench} on cuda:0" in lines[-1]
    assert main([*args, "--estimate-epochs", "1"]) == 0
    assert f"{(8 / 10 + 4 / 20 + 4 / 20) / 3600:.3g} GPU-hours" in capsys.readouterr().out
    bench.write_text(json.dumps([_bench_entry(model="clipseg")]))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "no bench figures for unet-d (tiny, default, 32 px); measure it with `vlsm bench unet-d" in out
    assert "0 of 1 run(s)" in out and "1 run(s) without an estimate" in out


@pytest.mark.parametrize("content, message", [
    (None, "no such file"), ("[]", "expected the list `vlsm bench --json` prints"), ("{", "not the JSON of")])
def test_a_bad_bench_file_is_one_line(tiny_grid, content, message, capsys):
    bench = tiny_grid / "bad.json"
    bench.unlink(missing_ok=True)
    if content is not None:
        bench.write_text(content)
    assert main(["sweep", str(tiny_grid / "tiny.yaml"), "--dry-run", "--bench", str(bench)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--bench {bench}" in err[0] and message in err[0] and "vlsm bench" in err[0]


def test_bench_now_measures_the_grids_models_here(tiny_grid, capsys):
    assert main(["sweep", str(tiny_grid / "tiny.yaml"), "--out-root", str(tiny_grid / "runs"), "--dry-run",
                 "--bench-now"]) == 0
    out = capsys.readouterr().out
    assert "bench: unet-d (tiny, default, batch 4)" in out and "measured by vlsm bench here just now on cpu" in out
    assert " hours (8 train / 4 val images x 3 epochs" in out  # (on a CPU: hours, not GPU-hours)


def test_the_learning_curve(tmp_path, capsys):
    rng = np.random.default_rng(0)
    expected = {}
    for model, label in (("unet-d", "UNet-D"), ("clipseg-b", "CLIPSeg-B")):
        for fraction in (0.25, 0.5, 1.0):
            for seed in (0, 1, 2):
                dice = np.clip(rng.uniform(0.3, 0.6, 8) + 0.3 * fraction, 0, 1)
                expected.setdefault((label, fraction), []).append(100 * dice.mean())
                fake_run(tmp_path / "runs", f"{model}-{fraction}-{seed}", dice, model=model, label=label, seed=seed,
                         settings=[("data.train_fraction", fraction)])
    runs = sorted((tmp_path / "runs").iterdir())
    out = tmp_path / "curve.png"
    assert main(["figure", *map(str, runs), "--curve", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.stat().st_size > 10_000 and f"wrote {out}" in printed
    m, s = np.mean(expected[("UNet-D", 0.25)]), np.std(expected[("UNet-D", 0.25)])
    assert f"UNet-D on kvasir_polyp/test: 25%: {m:.2f} ± {s:.2f} (3 seeds)" in printed
    from vlsm.api import learning_curve

    info = learning_curve(runs, tmp_path / "curve.svg")
    assert info.summary("CLIPSeg-B", "kvasir_polyp")[1.0][2] == 3
    assert main(["figure", *map(str, runs[:3]), "--curve", "-o", str(tmp_path / "one.png")]) == 2
    assert "no model was trained on two or more fractions" in capsys.readouterr().err
    assert main(["figure", *map(str, runs), "-o", str(tmp_path / "x.png")]) == 2
    assert "give --images NAME" in capsys.readouterr().err
