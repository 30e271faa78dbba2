"""Issue 19: train.loggers — Lightning's own loggers; a tiny run logs to a local MLflow store, read back offline
(its parameters, tags and metrics); W&B offline; missing trackers refused in one line; the default unchanged."""
from __future__ import annotations

import importlib.util
import json

import pytest

from vlsm.cli import main

TRAIN = ["train", "--model", "unet-d", "--preset", "tiny", "--img-size", "32", "--batch-size", "4", "--num-workers",
         "0", "--no-progress", "--epochs", "2", "--seed", "3", "--no-cache"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from vlsm.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("tracking") / "syn", n_train=8, n_val=4, n_test=4,
                                  image_size=32, seed=1)


def test_a_tiny_run_logs_to_a_local_mlflow_store(data, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # (MLflow 3 keeps its file store behind this switch)
    store = f"file:{tmp_path / 'mlruns'}"
    run = tmp_path / "run"
    assert main([*TRAIN, "--data", str(data), "--out", str(run), "--folds", "3", "--fold", "1",
                 "--loggers", "csv", "mlflow", "--tracking-uri", store, "--tracking-project", "grid"]) == 0
    client = mlflow.MlflowClient(store)
    [found] = client.search_runs([client.get_experiment_by_name("grid").experiment_id])
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    assert json.loads((run / "trackers.json").read_text()) == {"mlflow": found.info.run_id}
    params, tags, metrics = found.data.params, found.data.tags, found.data.metrics
    for key, value in {"model": "unet-d", "preset": "tiny", "variant": "default", "dataset": "syn", "seed": "3",
                       "fold": "1", "folds": "3", "train_fraction": "1.0"}.items():
        assert params[key] == value and tags[key] == value
    assert params["config/train.lr"] == "0.001" and params["config/data.fold"] == "1"
    summary = json.loads((run / "summary.json").read_text())
    assert metrics["test/syn-test/dice"] == pytest.approx(summary["results"][0]["dice_mean"])
    assert metrics["best_val_dice"] == pytest.approx(summary["train"]["best_score"])
    history = client.get_metric_history(found.info.run_id, "val_dice")
    assert len(history) == 2 and {"train_loss_epoch", "val_loss", "val_bce"} <= set(metrics)
    assert (run / "logs" / "metrics.csv").is_file()  # (the CSV logs as always)


def test_an_unusable_mlflow_store_is_one_line_and_writes_nothing(data, tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    import mlflow

    if int(mlflow.__version__.split(".")[0]) < 3:
        pytest.skip("MLflow 2 takes file stores")
    run = tmp_path / "run"
    assert main([*TRAIN, "--data", str(data), "--out", str(run), "--loggers", "mlflow",
                 "--tracking-uri", f"file:{tmp_path / 'mlruns'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tracking-uri (train.tracking_uri)" in err[0] and not run.exists()


@pytest.mark.parametrize("name, package", [("comet", "comet-ml"), ("neptune", "neptune")])
def test_a_tracker_that_is_not_installed_is_refused_in_one_line(name, package, data, tmp_path, capsys):
    module = {"comet": "comet_ml", "neptune": "neptune"}[name]
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    run = tmp_path / "run"
    assert main([*TRAIN, "--data", str(data), "--out", str(run), "--loggers", "csv", name]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--loggers (train.loggers) {name}" in err[0] and f"pip install {package}" in err[0]
    assert not run.exists()
    assert main([*TRAIN, "--data", str(data), "--out", str(run), "--loggers", "csv", "tracker"]) == 2
    assert "--loggers (train.loggers): item 1: expected 'csv' or" in capsys.readouterr().err


def test_the_default_loggers_are_csv_and_tensorboard(data):
    from vlsm.config import ExperimentConfig
    from vlsm.runs import RunFolder
    from vlsm.training.tracking import build_loggers

    cfg = ExperimentConfig()
    assert cfg.train.loggers == ["csv", "tensorboard"]
    kinds = [type(logger).__name__ for logger in build_loggers(cfg, RunFolder("unused"), resume=False)]
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    assert kinds == ["CSVLogger"] + (["TensorBoardLogger"] if tensorboard else [])  # (TensorBoard when installed)


@pytest.mark.slow
def test_wandb_offline(data, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for n in (1, 2):  # (the second run gets its own W&B run: the first one's was finished)
        run = tmp_path / f"run{n}"
        assert main([*TRAIN, "--data", str(data), "--out", str(run), "--loggers", "csv", "wandb"]) == 0
        ids = json.loads((run / "trackers.json").read_text())
        [offline] = list((run / "wandb").glob(f"offline-run-*-{ids['wandb']}"))
        record = next(offline.glob("*.wandb")).read_bytes()
        assert b"val_dice" in record and b"test/syn-test/dice" in record and b"seed=3" in record
