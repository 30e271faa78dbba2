"""The debugging modes of `vlsm train`, through Lightning: --fast-dev-run (one batch of training and validation),
--overfit-batches N and --profiler. A debug run never leaves a folder that looks finished: its status stays "new",
it is never resumed, `vlsm table` refuses it, and training its folder again replaces it."""
from __future__ import annotations

import csv
import re

import pytest

from naming import raises_naming
from tiny_runs import TRAIN
from vlsm.cli import build_parser, main
from vlsm.commands.train import config_from_args
from vlsm.data.synthetic import make_synthetic_dataset
from vlsm.runs import DONE, NEW, RunFolder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("debug") / "synthetic_polyp", n_train=8, n_val=4, n_test=2,
                                  image_size=32, seed=1)


def _rows(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_flags_and_their_checks():
    def cfg(*argv):
        return config_from_args(build_parser().parse_args(["train", *argv])).train

    assert cfg("--fast-dev-run").fast_dev_run is True and cfg().fast_dev_run is False
    assert cfg("--overfit-batches", "1").overfit_batches == 1  # one batch, not the whole (1.0) epoch
    assert cfg("--overfit-batches", "0.25").overfit_batches == 0.25 and cfg().overfit_batches is None
    assert cfg("--profiler", "advanced").profiler == "advanced"
    with raises_naming(ValueError, re.compile(r"^--overfit-batches \(train\.overfit_batches\)"), "at least 1",
                       "above 0, at most 1", "got 0"):
        cfg("--overfit-batches", "0")
    with raises_naming(ValueError, re.compile(r"^--profiler \(train\.profiler\)"), "simple, advanced, pytorch",
                       "'bogus'"):
        cfg("--profiler", "bogus")


def test_fast_dev_run_leaves_no_run_that_looks_finished(data, tmp_path, capsys):
    out = tmp_path / "fdr"
    assert main([*TRAIN, "--data", str(data), "--out", str(out), "--epochs", "3", "--fast-dev-run"]) == 0
    run = RunFolder(out)
    assert run.debug == "fast_dev_run" and run.status == NEW and not run.failed_start
    assert not run.summary_file.exists() and not run.model_dir.exists() and not run.has_checkpoint
    assert [row["step"] for row in _rows(out)] == ["1"]  # one training batch, one epoch
    assert "fast_dev_run: one training and one validation batch ran" in run.log_file.read_text()
    capsys.readouterr()
    assert main(["table", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"vlsm table: error: {out} is a debug run (fast_dev_run): its scores "
                                               f"are no results; train it again without --fast-dev-run/"
                                               f"--overfit-batches")
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert "it holds a debug run (fast_dev_run), which is never continued" in capsys.readouterr().err
    # the same folder trained for real: the debug run is replaced without --overwrite
    assert main([*TRAIN, "--data", str(data), "--out", str(out), "--epochs", "1"]) == 0
    assert run.debug is None and run.status == DONE and main(["table", str(out)]) == 0
    assert "held a debug run (fast_dev_run): starting afresh" in run.log_file.read_text()
    # ...but a debug run never replaces a finished one
    assert main([*TRAIN, "--data", str(data), "--out", str(out), "--fast-dev-run"]) == 2
    assert "already holds a finished run" in capsys.readouterr().err


def test_overfit_batches_and_the_profiler(data, tmp_path, capsys):
    out = tmp_path / "overfit"
    assert main([*TRAIN, "--data", str(data), "--out", str(out), "--epochs", "2", "--overfit-batches", "1",
                 "--profiler", "simple"]) == 0
    run = RunFolder(out)
    assert [row["step"] for row in _rows(out)] == ["1", "2"]  # one batch an epoch (8 images would be 2)
    assert run.summary_file.is_file() and run.debug == "overfit_batches=1" and run.status == NEW
    assert "FIT Profiler Report" in (run.profile_dir / "fit-profile.txt").read_text()
    capsys.readouterr()
    for path in (out, out / "summary.json", next((out / "eval").iterdir())):
        assert main(["table", str(path)]) == 2
        assert f"{out} is a debug run (overfit_batches=1)" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3"]) == 2
    assert "cannot resume" in capsys.readouterr().err
