"""Issue 19: one run per seed (vlsm sweep --seeds, or an experiment's sweep: section) and the table of their rows:
n seeds = 3, mean ± std across the seeds' means (NumPy's std), the hierarchical CI; tiny UNet-D on synthetic data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from vlsm.cli import main
from vlsm.runs import read_per_case


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    from vlsm.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("seeds")
    data = make_synthetic_dataset(root / "syn", n_train=8, n_val=4, n_test=6, image_size=32, seed=4)
    exp = {"name": "tiny", "model": {"name": "unet-d", "preset": "tiny", "overrides": {"image_size": 32}},
           "data": {"paths": [str(data)], "cache": False},
           "train": {"epochs": 2, "batch_size": 4, "lr": 0.01, "num_workers": 0, "progress_bar": False},
           "sweep": {"seeds": [5, 6]}}  # (the command line's --seeds replace these)
    (root / "tiny.yaml").write_text(yaml.safe_dump(exp))
    assert main(["sweep", str(root / "tiny.yaml"), "--out-root", str(root / "runs"), "--seeds", "0", "1", "2"]) == 0
    return root, sorted((root / "runs").iterdir())


def test_one_run_folder_per_seed(seed_runs):
    root, runs = seed_runs
    assert [r.name for r in runs] == ["tiny-seed0", "tiny-seed1", "tiny-seed2"]
    for seed, run in enumerate(runs):
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["train"]["seed"] == seed and config["name"] == f"tiny-seed{seed}"
        assert "sweep" not in config and json.loads((run / "summary.json").read_text())["results"]


def test_three_seeds_give_one_row_with_the_std_across_the_seeds(seed_runs, capsys):
    from vlsm.api import table

    root, runs = seed_runs
    means = [100 * np.mean(read_per_case(r / "eval" / "syn-test" / "per_case.csv").dice) for r in runs]
    cell = table(runs, bootstrap=1000).table.cell("UNet-D [tiny]", "syn")
    assert cell.n_seeds == 3 and cell.n == 6
    assert cell.mean == pytest.approx(np.mean(means)) and cell.std == pytest.approx(np.std(means)) and cell.std > 0
    assert cell.ci[0] <= cell.mean <= cell.ci[1]
    assert main(["table", *map(str, runs), "--bootstrap", "500"]) == 0
    assert "(3 seeds)" in capsys.readouterr().out


def test_the_seeds_ensemble_is_a_row_of_its_own(seed_runs):
    from vlsm.api import evaluate, table

    root, runs = seed_runs
    done = evaluate(runs, out=root / "ensemble", device="cpu")
    assert done.labels == ["UNet-D [tiny] (ensemble of 3 runs)"]
    labels = [r.label for r in table([*runs, root / "ensemble"], ci=False).table.rows]
    assert labels == ["UNet-D [tiny]", "UNet-D [tiny] (ensemble of 3 runs)"]


def test_the_sweep_plan_expands_seeds_folds_and_fractions(seed_runs, capsys):
    from vlsm.api import plan_sweep

    root, _ = seed_runs
    items = plan_sweep([root / "tiny.yaml"], root / "plan", expand={"folds": 2, "fractions": [0.5, 1]})
    names = [item.out.name for item in items]
    assert len(items) == 2 * 2 * 2 and names[0] == "tiny-frac0.5-fold0-seed5" and names[-1] == "tiny-frac1-fold1-seed6"
    first = items[0].config
    assert (first.data.train_fraction, first.data.folds, first.data.fold, first.train.seed) == (0.5, 2, 0, 5)
    assert main(["sweep", str(root / "tiny.yaml"), "--out-root", str(root / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 run(s) (2 new) from 1 experiment file(s)" in out  # the file's own seeds, 5 and 6
    assert main(["sweep", str(root / "tiny.yaml"), "--dry-run", "--seeds", "1", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seeds (sweep.seeds) must be distinct seeds" in err[0]
