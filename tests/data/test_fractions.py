"""Issue 19: data.train_fraction — seeded, nested subsets of the training split, whole patients where names carry
one (vlsm.data.subsets.training_subset)."""
from __future__ import annotations

import re
from pathlib import Path

from naming import raises_naming
from vlsm.data import Record
from vlsm.data.subsets import record_units, training_subset

PATTERN = r"^(patient\d+)_"


def records(n: int, per_patient: int = 1) -> list:
    names = [f"patient{i // per_patient:03d}_img{i % per_patient}" if per_patient > 1 else f"case{i:03d}"
             for i in range(n)]
    return [Record(name, Path(f"/d/images/{name}.png"), Path(f"/d/masks/{name}.png")) for name in names]


def test_fractions_are_nested_seeded_and_sized():
    recs = records(200)
    fractions = (0.1, 0.25, 0.5, 1.0)
    subsets = [training_subset(recs, f, seed=7) for f in fractions]
    assert [len(s) for s in subsets] == [20, 50, 100, 200]
    for small, large in zip(subsets, subsets[1:]):
        assert {r.name for r in small} <= {r.name for r in large}  # 10% inside 25% inside 50% ...
    assert subsets[-1] == recs  # 1: the split as listed, in its order
    assert training_subset(recs, 0.25, seed=7) == subsets[1]  # the same seed, the same subset
    assert {r.name for r in training_subset(recs, 0.25, seed=8)} != {r.name for r in subsets[1]}
    # the listed order is kept; the subset does not depend on it
    assert [r.name for r in subsets[1]] == sorted(r.name for r in subsets[1])
    assert {r.name for r in training_subset(recs[::-1], 0.25, seed=7)} == {r.name for r in subsets[1]}
    assert len(training_subset(recs, 0.001, seed=7)) == 1  # at least one image


def test_a_subset_takes_whole_patients():
    recs = records(120, per_patient=4)  # 30 patients of 4 images
    units, unmatched = record_units(recs, PATTERN, Path("/d/images"))
    assert len(set(units)) == 30 and unmatched == 0
    for fraction in (0.1, 0.3, 0.5):
        subset = training_subset(recs, fraction, seed=1, pattern=PATTERN, images_root=Path("/d/images"))
        patients = {r.name.split("_")[0] for r in subset}
        assert len(subset) == 4 * len(patients) >= fraction * 120  # every image of each patient taken
    small, large = (training_subset(recs, f, seed=1, pattern=PATTERN) for f in (0.2, 0.6))
    assert {r.name for r in small} <= {r.name for r in large}


def test_bad_fractions_are_refused_in_one_line():
    with raises_naming(ValueError, "--train-fraction", "above 0 and at most 1", "1.5"):
        training_subset(records(4), 1.5, seed=0)
    from vlsm.config import COMMAND_LINE, ExperimentConfig, apply_overrides

    with raises_naming(ValueError, re.compile(r"^--train-fraction \(data\.train_fraction\)"), "between 0 and 1"):
        apply_overrides(ExperimentConfig(), [("data.train_fraction", 0.0)], where=COMMAND_LINE)
    with raises_naming(ValueError, re.compile(r"^--set: sweep\.fractions\b"), "distinct", "above 0 and at most 1"):
        apply_overrides(ExperimentConfig(), [("sweep.fractions", [0.5, 0.5])], where="--set")
