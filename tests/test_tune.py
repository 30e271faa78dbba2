"""`vlsm tune`: the search space checked against the schema, the study in its SQLite database (resumed, refused when
its settings change), trials as ordinary run folders, the best trial's experiment reproducing its score, the
report, pruning, the dry run and the one-line errors. The two-worker and SIGKILL tests are in
tests/test_tune_workers.py (slow: subprocesses)."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from naming import raises_naming, refused

optuna = pytest.importorskip("optuna")

from vlsm.cli import main  # noqa: E402
from vlsm.data.synthetic import make_synthetic_dataset  # noqa: E402
from vlsm.tuning.space import FORMS, parse_entry, parse_param, space_of, tunable_keys  # noqa: E402

EXPERIMENT = {"name": "tiny", "model": {"name": "unet-d", "preset": "tiny", "overrides": {"image_size": 32}},
              "train": {"epochs": 2, "batch_size": 4, "num_workers": 0, "progress_bar": False, "seed": 1,
                        "monitor": "val_loss"},
              "search": {"space": {"train.lr": "log(1e-3, 3e-1)", "train.batch_size": [2, 4]}, "trials": 3,
                         "startup_trials": 2, "pruner": "none"}}


def write_experiment(folder: Path, data: Path, **search) -> Path:
    exp = json.loads(json.dumps(EXPERIMENT))
    exp["data"] = {"paths": [str(data)]}
    exp["search"].update(search)
    path = folder / "tune.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("tune-data") / "synthetic_polyp", n_train=8, n_val=4,
                                  n_test=2, image_size=32, seed=1)


# --------------------------------------------------------------------------------------------- the space
@pytest.mark.parametrize("key, spec, canonical", [
    ("train.lr", "log(1e-6,1e-3)", "log(1e-06, 0.001)"),
    ("train.batch_size", "choice(8, 16, 32)", "choice(8, 16, 32)"),
    ("train.batch_size", "log(4,64)", "log(4, 64)"),
    ("train.epochs", "int(2,10,2)", "int(2, 10, 2)"),
    ("train.weight_decay", "uniform(0,1e-2)", "uniform(0, 0.01)"),
    ("data.prompt", ["p1", "p2"], "choice(p1, p2)"),
    ("model.overrides.freeze_encoder", "choice(true,false)", "choice(true, false)"),
])
def test_space_entries(key, spec, canonical):
    assert parse_param(key, spec).spec == canonical


@pytest.mark.parametrize("key, spec, names", [  # besides the entry itself: what is wrong, or what to write instead
    ("train.lr", "logg(1,2)", (FORMS, "--space train.lr=log(1e-5,1e-3)")),
    ("train.lr", "log(0,1e-3)", ("positive low end",)),
    ("train.lr", "uniform(1e-3,1e-4)", ("low end", "high end")),
    ("train.batch_size", "choice(0,8)", ("train.batch_size", "at least 1", "got 0")),
    ("eval.threshold", "uniform(0,0.9)", ("eval.threshold", "between 0 and 1", "got 0")),
    ("train.scheduler_factor", "uniform(0.1,1.5)", ("train.scheduler_factor", "between 0 and 1", "got 1.5")),
    ("train.batch_size", "uniform(4,8)", ("whole numbers", "int(a,b)", "int(a,b,step)", "log(a,b)")),
    ("train.scheduler", "choice(plateau, cosine)", ("train.scheduler", "plateau, none", "'cosine'")),
    ("train.scheduler", "uniform(1,2)", ("not a number", "choice(...)")),
    ("train.lr", "log(1e-6)", ("log(a,b)", "two numbers")),
])
def test_bad_space_entries_are_one_line_naming_the_entry(key, spec, names):
    with raises_naming(ValueError, re.compile("^" + re.escape(f"--space {key}={spec}: ")), *names):
        parse_param(key, spec)


def test_a_key_outside_the_schema_names_the_valid_keys():
    with raises_naming(ValueError, "--space train.lrr", "model.name", "train.lr,", "train.batch_size",
                       "(a create_model option)"):
        parse_param("train.lrr", "log(1e-6,1e-3)")
    assert "train.monitor" not in tunable_keys() and "train.device" not in tunable_keys()  # (not what a search sets)
    with raises_naming(ValueError, "--space 'train.lr'", "KEY=SPEC", FORMS):
        parse_entry("train.lr")


def test_the_experiment_files_search_section(tmp_path, data):
    """search: is read by vlsm tune, ignored by vlsm train and never written to a run's config.yaml; a --space entry
    replaces the file's for its key; a bad file entry names the file."""
    from vlsm.config import load_config, save_config

    exp = write_experiment(tmp_path, data)
    cfg = load_config(exp)
    assert cfg.search.trials == 3 and "search" not in cfg.to_dict()
    save_config(cfg, tmp_path / "config.yaml")
    assert "search" not in yaml.safe_load((tmp_path / "config.yaml").read_text())
    space = space_of(cfg.search.space, cfg.source, ["train.lr=log(1e-4,1e-2)"])
    assert [(p.key, p.spec) for p in space] == [("train.lr", "log(0.0001, 0.01)"), ("train.batch_size", "choice(2, 4)")]
    with raises_naming(ValueError, str(exp), "search.space", "train.lr=log(1e-4", FORMS):
        space_of({"train.lr": "log(1e-4"}, str(exp))
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: {trails: 3}\n")
    with raises_naming(ValueError, str(bad), "search", "'trails'", "'trials'"):
        load_config(bad)


# --------------------------------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize("argv, names", [  # the flag or key at fault, and its range or the fix
    (["--trials", "0"], ("--trials (search.trials)", "at least 1", "got 0")),
    (["--space", "train.lr=log(0,1)"], ("--space train.lr=log(0,1)", "positive low end")),
    (["--space", "train.nope=log(1,2)"], ("--space train.nope", "train.lr")),
    (["--storage", "nosuchdb://x"], ("--storage 'nosuchdb://x'", "sqlite:///PATH/study.db")),
    (["--set", "train.devices=2"], ("train.devices", "train.num_nodes", "one worker per GPU")),
    (["--set", "train.fast_dev_run=true"], ("train.fast_dev_run", "train.overfit_batches", "turn them off")),
    (["--study", "a/b"], ("--study 'a/b'", "letters, digits")),
])
def test_bad_inputs_are_one_line(tmp_path, data, capsys, argv, names):
    exp = write_experiment(tmp_path, data)
    refused(capsys, ["tune", "-c", exp, "--out", tmp_path / "study", *argv], re.compile("^vlsm tune: error: "), *names)
    assert not (tmp_path / "study" / "trial-0000").exists()


def test_without_optuna_it_says_how_to_install_it(tmp_path, data, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # (import optuna raises ImportError)
    assert main(["tune", "-c", str(write_experiment(tmp_path, data)), "--dry-run"]) == 2
    assert 'vlsm tune needs Optuna: pip install "vlsm-ensemble[tune]"' in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- the study
@pytest.fixture(scope="module")
def study(tmp_path_factory, data):
    """A study of 2 trials on tiny synthetic data (val_loss, minimised), then resumed to 3."""
    root = tmp_path_factory.mktemp("tune")
    exp = write_experiment(root, data)
    out = root / "study"
    assert main(["tune", "-c", str(exp), "--out", str(out), "--trials", "2"]) == 0
    first = _trials(out)
    assert main(["tune", "-c", str(exp), "--out", str(out)]) == 0  # a killed or extended search
    return root, exp, out, first


def _trials(out: Path) -> list[dict]:
    with open(out / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_each_trial_is_an_ordinary_run_folder_scored_by_its_monitor(study):
    from vlsm.runs import DONE, RunFolder

    _, _, out, first = study
    assert [(r["trial"], r["state"], r["run"]) for r in first] == [(str(n), "complete", f"trial-{n:04d}")
                                                                   for n in range(2)]
    rows = _trials(out)
    assert [r["state"] for r in rows] == ["complete"] * 3 and rows[:2] == first  # resumed: one more trial
    for row in rows:
        run = RunFolder(out / row["run"])
        summary = run.read_summary()
        assert run.status == DONE and (run.model_dir / "README.md").is_file() and summary["results"]
        assert float(row["score"]) == pytest.approx(summary["train"]["best_score"], rel=1e-5)
        assert summary["train"]["monitor"] == "val_loss"
        cfg = run.read_config()
        assert cfg.train.lr == pytest.approx(float(row["train.lr"])) and cfg.train.batch_size == int(
            row["train.batch_size"])
    assert len({r["train.lr"] for r in rows}) == 3  # (every trial drew its own learning rate)


def test_the_report(study, capsys):
    _, exp, out, _ = study
    report = (out / "report.md").read_text()
    assert "objective: val_loss (minimize)" in report and "3 of 3 done" in report
    assert "| trial | score | train.lr | train.batch_size | run |" in report
    assert (out / "history.png").stat().st_size > 1000
    scores = [float(r["score"]) for r in _trials(out)]
    best = min(range(3), key=lambda i: scores[i])
    assert f"Best: trial {best} (`trial-{best:04d}`)" in report
    assert "## Parameter importances" in report
    if len(set(scores)) > 1:
        assert "| parameter | importance |" in report and (out / "importances.png").is_file()
    # the dry run reads the finished study without changing it
    stamp = (out / "study.db").stat().st_mtime_ns
    assert main(["tune", "-c", str(exp), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "state: 3 complete, 0 pruned, 0 running, 0 waiting, 0 failed; best: trial" in text
    assert re.search(r"\n    train\.lr +log\(0\.001, 0\.3\) +log-uniform from 0\.001 to 0\.3\n", text)
    assert (out / "study.db").stat().st_mtime_ns == stamp


def test_the_best_trials_experiment_reproduces_its_score(study):
    """STUDY/best.yaml is what `vlsm train -c` takes; trained again (same seed) it gives the same validation score."""
    _, _, out, _ = study
    best_yaml = out / "best.yaml"
    text = best_yaml.read_text()
    assert text.startswith("# the best trial of study tiny: trial ")
    rows = {r["run"]: r for r in _trials(out)}
    run = text.split("(", 1)[1].split(")", 1)[0]
    assert main(["train", "-c", str(best_yaml)]) == 0
    again = json.loads((out / "best" / "summary.json").read_text())["train"]
    trial = json.loads((out / run / "summary.json").read_text())["train"]
    assert again["best_score"] == trial["best_score"]
    assert float(rows[run]["score"]) == pytest.approx(again["best_score"], rel=1e-5)


def test_a_worker_with_other_settings_is_refused(study, capsys):
    _, exp, out, _ = study
    assert main(["tune", "-c", str(exp), "--out", str(out), "--trials", "5", "--space", "train.lr=log(1e-4,1e-2)"]) == 2
    err = capsys.readouterr().err
    assert "study 'tiny' in sqlite:///" in err and "was started with other settings" in err
    assert "space:" in err and "give this search another --study" in err
    assert main(["tune", "-c", str(exp), "--out", str(out), "--set", "train.weight_decay=0.5", "--dry-run"]) == 0
    assert "NOT this search's" in capsys.readouterr().out


def test_the_dry_run_prints_the_space_and_creates_nothing(tmp_path, data, capsys):
    exp = write_experiment(tmp_path, data)
    assert main(["tune", "-c", str(exp), "--out", str(tmp_path / "s"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "study tiny: sqlite:///" in text and "objective: val_loss (minimize); TPE sampler, seed 1" in text
    assert re.search(r"train\.batch_size +choice\(2, 4\) +one of 2, 4", text)
    assert "trials: 3 in all; no study yet (its database does not exist)" in text
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------------------------- seeding, counting
def _fake_training(monkeypatch, calls: list):
    """Trials without training: the score is a function of the parameters (the sampler and the study's logic only)."""
    import vlsm.tuning.worker as worker

    def fake(cfg, trial, *, pruning, stale_minutes):
        calls.append((trial.number, cfg.out, cfg.train.lr, cfg.train.batch_size))
        return (cfg.train.lr - 0.01) ** 2 + cfg.train.batch_size * 1e-4, None

    monkeypatch.setattr(worker, "train_trial", fake)


def test_the_tpe_sampler_is_seeded(tmp_path, data, monkeypatch):
    from vlsm.api import tune

    exp = write_experiment(tmp_path, data, trials=6, startup_trials=3)
    draws = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        calls = []
        _fake_training(monkeypatch, calls)
        tune(exp, overrides=[("search.out", str(tmp_path / name)), ("search.sampler_seed", seed)])
        draws[name] = [(lr, bs) for _, _, lr, bs in calls]
        assert [Path(out).name for _, out, _, _ in calls] == [f"trial-{n:04d}" for n in range(6)]
    assert draws["a"] == draws["b"] and draws["a"] != draws["c"]


def test_a_trial_that_fails_is_recorded_and_stops_the_worker(tmp_path, data, monkeypatch, capsys):
    import vlsm.tuning.worker as worker

    def broken(cfg, trial, *, pruning, stale_minutes):
        raise ValueError("the data went away")

    monkeypatch.setattr(worker, "train_trial", broken)
    exp = write_experiment(tmp_path, data)
    assert main(["tune", "-c", str(exp), "--out", str(tmp_path / "s")]) == 2
    assert "vlsm tune: error: the data went away" in capsys.readouterr().err
    rows = _trials(tmp_path / "s")
    assert [(r["state"], r["error"]) for r in rows] == [("fail", "ValueError: the data went away")]
    assert "No trial has completed yet." in (tmp_path / "s" / "report.md").read_text()
    assert main(["tune", "-c", str(exp), "--out", str(tmp_path / "s"), "--keep-going"]) == 2  # three in a row
    assert [r["state"] for r in _trials(tmp_path / "s")] == ["fail"] * 4


# --------------------------------------------------------------------------------------------- pruning
class _Trial:
    """What the pruning callback uses of an Optuna trial; it prunes from ``prune_at`` on."""

    number = 7

    def __init__(self, prune_at: int):
        self.prune_at, self.reports, self.attrs = prune_at, [], {}

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.reports[-1][0] >= self.prune_at

    def set_user_attr(self, key, value):
        self.attrs[key] = value


def test_a_pruned_trial_stops_after_its_epoch_and_is_a_finished_run(tmp_path, data):
    from vlsm.api import experiment
    from vlsm.runs import DONE, RunFolder
    from vlsm.training.run import train
    from vlsm.tuning.pruning import OptunaPruning

    cfg = experiment(write_experiment(tmp_path, data), [("out", str(tmp_path / "run")), ("train.epochs", 4),
                                                        ("train.lr", 0.01)])
    trial = _Trial(prune_at=1)
    callback = OptunaPruning(trial, "val_loss")
    train(cfg, callbacks=[callback])
    run = RunFolder(tmp_path / "run")
    assert callback.pruned_epoch == 1 and trial.attrs == {"pruned_at_epoch": 1}
    assert [step for step, _ in trial.reports] == [0, 1]
    assert run.status == DONE and run.read_summary()["train"]["epochs_run"] == 2
    assert "trial 7 pruned (val_loss" in run.log_file.read_text()


def test_a_pruned_trial_is_told_pruned(tmp_path, data, monkeypatch):
    import vlsm.tuning.worker as worker

    monkeypatch.setattr(worker, "train_trial", lambda cfg, trial, **_: (0.5, 1))
    exp = write_experiment(tmp_path, data, trials=2)
    assert main(["tune", "-c", str(exp), "--out", str(tmp_path / "s")]) == 0
    assert [r["state"] for r in _trials(tmp_path / "s")] == ["pruned", "pruned"]
    assert "No trial has completed yet." in (tmp_path / "s" / "report.md").read_text()
