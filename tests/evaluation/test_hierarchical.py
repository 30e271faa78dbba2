"""Issue 19: rows over several seeds in `vlsm table` — the hierarchical bootstrap (seeds, then images), the
across-seed mean ± std, and the paired test over the same images and seeds; from hand-made run folders."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy import stats as sstats

from fake_runs import fake_run
from naming import raises_naming
from vlsm.cli import main
from vlsm.evaluation import report, stats

RNG = np.random.default_rng(3)
IMAGES = 20


def test_the_hierarchical_ci_is_wider_than_the_image_only_ci_when_seeds_disagree():
    base = RNG.uniform(0.6, 0.9, IMAGES)
    agree = np.stack([base + RNG.normal(0, 0.002, IMAGES) for _ in range(3)])
    disagree = np.stack([base - 0.15, base, base + 0.1])  # (seeds x images): the seeds' means are far apart
    for matrix, wider in ((disagree, True), (agree, False)):
        low, high = stats.hierarchical_bootstrap_ci(matrix, n_resamples=4000, seed=0)
        img_low, img_high = stats.bootstrap_ci(matrix.mean(axis=0), n_resamples=4000, seed=0)
        assert low <= matrix.mean() <= high
        assert ((high - low) > 2 * (img_high - img_low)) is wider
    # one seed: the image bootstrap itself; a constant matrix: its value
    one = base[None, :]
    assert stats.hierarchical_bootstrap_ci(one, 2000, seed=1) == pytest.approx(stats.bootstrap_ci(base, n_resamples=2000, seed=1))
    assert stats.hierarchical_bootstrap_ci(np.full((3, 4), 0.5)) == (0.5, 0.5)
    dist = stats.hierarchical_bootstrap_distribution(disagree, 300, seed=2, batch=7)
    assert dist.shape == (300,) and np.array_equal(dist, stats.hierarchical_bootstrap_distribution(disagree, 300, seed=2, batch=7))
    with pytest.raises(ValueError, match="NaN"):
        stats.hierarchical_bootstrap_ci(np.array([[0.5, np.nan]]))


@pytest.fixture()
def seed_runs(tmp_path):
    """Two models, three seeds each (the same images), and one run of a third model."""
    scores = {}
    for model, label, shift in (("clipseg", "CLIPSeg", 0.0), ("clipseg-b", "CLIPSeg-B", 0.05)):
        for seed, offset in zip((0, 1, 2), (-0.1, 0.0, 0.08)):
            dice = np.clip(RNG.uniform(0.5, 0.85, IMAGES) + shift + offset, 0, 1)
            scores[(label, seed)] = dice
            fake_run(tmp_path, f"{model}-seed{seed}", dice, model=model, label=label, seed=seed)
    fake_run(tmp_path, "unet-d", RNG.uniform(0.4, 0.8, IMAGES), model="unet-d", label="UNet-D", seed=42)
    return tmp_path, scores


def test_a_table_groups_the_seeds_of_a_model(seed_runs):
    root, scores = seed_runs
    table = report.build_table(sorted(root.iterdir()), n_resamples=2000)
    cell = table.cell("CLIPSeg", "kvasir_polyp")
    means = [100 * scores[("CLIPSeg", s)].mean() for s in (0, 1, 2)]
    assert cell.n_seeds == 3 and cell.n == IMAGES
    assert cell.mean == pytest.approx(np.mean(means)) and cell.std == pytest.approx(np.std(means))
    matrix = 100 * np.stack([scores[("CLIPSeg", s)] for s in (0, 1, 2)])
    assert cell.ci == pytest.approx(stats.hierarchical_bootstrap_ci(matrix, 2000))
    gained = table.cell("CLIPSeg-B", "kvasir_polyp")
    assert gained.gain == pytest.approx(gained.mean - cell.mean) and gained.gain_over == "CLIPSeg"
    plain = table.cell("UNet-D", "kvasir_polyp")
    assert plain.n_seeds is None  # a single run: as before
    text = table.to_markdown()
    assert "(3 seeds)" in text and "hierarchical bootstrap" in text and len(table.rows) == 3
    rows = list(csv.DictReader(table.to_csv().splitlines()))
    assert {r["label"]: r["n_seeds"] for r in rows} == {"UNet-D": "1", "CLIPSeg": "3", "CLIPSeg-B": "3"}


def test_the_paired_test_pairs_the_same_images_and_seeds(seed_runs, tmp_path, capsys):
    root, scores = seed_runs
    table = report.build_table(sorted(root.iterdir()), ci=False, compare=("CLIPSeg-B", "CLIPSeg"))
    [comp] = table.comparisons
    a = np.concatenate([scores[("CLIPSeg-B", s)] for s in (0, 1, 2)])
    b = np.concatenate([scores[("CLIPSeg", s)] for s in (0, 1, 2)])
    expected = sstats.wilcoxon(a, b)
    assert comp.n == 3 * IMAGES and comp.pvalue == pytest.approx(expected.pvalue)
    assert comp.statistic == pytest.approx(expected.statistic)
    # three seeds against one run: no pairs of the same seeds, one line naming --compare
    assert main(["table", *map(str, sorted(root.iterdir())), "--no-ci", "--compare", "CLIPSeg", "UNet-D"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--compare CLIPSeg UNet-D" in err[0] and "seeds 0, 1, 2" in err[0] and "one run" in err[0]


def test_seeds_scored_on_other_images_and_runs_twice_are_refused(tmp_path):
    fake_run(tmp_path, "a-seed0", [0.5, 0.6, 0.7], seed=0)
    fake_run(tmp_path, "a-seed1", [0.5, 0.6, 0.7], seed=1, names=["x", "y", "z"])
    with raises_naming(ValueError, "seed 1", str(tmp_path / "a-seed1"), "evaluate every seed on the same split"):
        report.build_table(sorted(tmp_path.iterdir()))
    other = tmp_path / "other"
    fake_run(other, "b-seed0", [0.5, 0.6], seed=0)
    fake_run(other, "b-seed0-again", [0.5, 0.6], seed=0)  # the same seed twice is not a second seed
    with raises_naming(ValueError, "'CLIPSeg'", str(other / "b-seed0"), str(other / "b-seed0-again"), "Pass only one"):
        report.build_table(sorted(other.iterdir()))
    lr = tmp_path / "lr"
    fake_run(lr, "c-seed0", [0.5, 0.6], seed=0)
    fake_run(lr, "c-seed1", [0.5, 0.6], seed=1, settings=[("train.lr", 0.01)])  # other settings: not one group
    with pytest.raises(ValueError, match="two results for model"):
        report.build_table(sorted(lr.iterdir()))


def test_folds_and_fractions_get_rows_of_their_own(tmp_path):
    for fraction in (0.25, 1.0):
        fake_run(tmp_path, f"f{fraction}", [0.5, 0.7], settings=[("data.train_fraction", fraction)])
    for fold in (0, 1):
        fake_run(tmp_path, f"fold{fold}", [0.6, 0.7], settings=[("data.folds", 2), ("data.fold", fold)])
    labels = [r.label for r in report.build_table(sorted(tmp_path.iterdir()), ci=False).rows]
    assert sorted(labels) == ["CLIPSeg", "CLIPSeg (25% of train)", "CLIPSeg (fold 0 of 2)", "CLIPSeg (fold 1 of 2)"]
