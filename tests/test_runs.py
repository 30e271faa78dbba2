"""vlsm.runs: the run-folder layout, its status and folder policy, the per-case and summary formats,
and loading a trained model from a run folder, a model folder or a Lightning checkpoint."""
from __future__ import annotations

import csv
import json

import pytest
import torch

import vlsm
from naming import raises_naming
from vlsm.config import ExperimentConfig
from vlsm.runs import (
    PER_CASE_FIELDS,
    CaseResult,
    EvalResult,
    RunFolder,
    RunFolderError,
    load_trained_model,
    read_per_case,
    read_summary,
    summary_files,
    write_evaluation,
    write_per_case,
)


def test_layout_names_match_the_readme(tmp_path):
    run = RunFolder(tmp_path / "r")
    rel = {name: getattr(run, name).relative_to(run.path).as_posix() for name in
           ("config_file", "log_file", "metrics_file", "checkpoints_dir", "best_checkpoint", "last_checkpoint",
            "model_dir", "tokenizer_dir", "summary_file", "logs_dir")}
    assert rel == {"config_file": "config.yaml", "log_file": "log.txt", "metrics_file": "metrics.csv",
                   "checkpoints_dir": "checkpoints", "best_checkpoint": "checkpoints/best.ckpt",
                   "last_checkpoint": "checkpoints/last.ckpt", "model_dir": "model", "tokenizer_dir": "tokenizer",
                   "summary_file": "summary.json", "logs_dir": "logs"}
    assert run.relative(run.eval_dir("kvasir_polyp", "test")) == "eval/kvasir_polyp-test"
    assert run.relative(run.eval_dir("kvasir_polyp", "test", "p3")) == "eval/kvasir_polyp-test-p3"
    assert PER_CASE_FIELDS == ("name", "dice", "iou", "gt_area", "pred_area", "height", "width", "prompt")


def test_status_follows_the_files(tmp_path):
    run = RunFolder(tmp_path / "r")
    assert run.status == "new" and not run.is_run
    run.prepare()
    assert run.checkpoints_dir.is_dir() and run.status == "new" and run.is_run and run.marker_file.is_file()
    assert run.failed_start  # nothing but the folder: training would simply start it again
    run.previous_last_checkpoint.write_bytes(b"x")
    assert run.status == "resume" and not run.failed_start
    run.last_checkpoint.write_bytes(b"x")
    assert run.status == "resume"
    run.summary_file.write_text("{}")
    assert run.status == "done"


def test_prepare_never_clobbers_without_being_told(tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for kwargs in ({"overwrite": True}, {}, {"resume": True}):
        with raises_naming(RunFolderError, str(other), "vlsm run folder", "--out"):
            RunFolder(other).prepare(**kwargs)
    # a config.yaml alone (no marker, summary or checkpoints/) does not make a folder ours
    (other / "config.yaml").write_text("name: mine\n")
    with raises_naming(RunFolderError, str(other), "vlsm run folder", "--out"):
        RunFolder(other).prepare(overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"

    run = RunFolder(tmp_path / "r").prepare()
    run.config_file.write_text("name: x\n")
    with raises_naming(RunFolderError, str(run.last_checkpoint), "--resume"):
        run.prepare(resume=True)
    run.last_checkpoint.write_bytes(b"x")
    with raises_naming(RunFolderError, str(run.path), "--resume", "--overwrite"):
        run.prepare()
    with raises_naming(RunFolderError, "--resume", "--overwrite"):
        run.prepare(resume=True, overwrite=True)
    assert run.prepare(resume=True) is run and run.last_checkpoint.exists()
    run.summary_file.write_text("{}")
    with raises_naming(RunFolderError, str(run.path), "--out", "--overwrite"):
        run.prepare()
    run.prepare(overwrite=True)
    assert run.checkpoints_dir.is_dir() and not run.summary_file.exists() and not run.config_file.exists()
    assert run.marker_file.is_file()
    with raises_naming(RunFolderError, str(tmp_path / "missing"), "--resume"):
        RunFolder(tmp_path / "missing").prepare(resume=True)


def test_failed_start_is_started_again_and_older_runs_are_recognised(tmp_path):
    run = RunFolder(tmp_path / "r").prepare()
    run.config_file.write_text("name: x\n")
    run.log_file.write_text("crashed in epoch 0\n")
    assert run.failed_start and run.status == "new"
    run.prepare()  # no --overwrite needed: nothing of value was there
    assert not run.log_file.exists() and run.marker_file.is_file()

    legacy = RunFolder(tmp_path / "legacy")  # written before the marker existed
    legacy.checkpoints_dir.mkdir(parents=True)
    legacy.config_file.write_text("name: old\n")
    legacy.summary_file.write_text("{}")
    assert legacy.is_run and legacy.status == "done"
    legacy.prepare(overwrite=True)
    assert not legacy.summary_file.exists() and legacy.marker_file.is_file()


def test_resume_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    run = RunFolder(tmp_path / "r").prepare()
    torch.save({"state_dict": {}, "epoch": 3}, run.previous_last_checkpoint)
    torch.save({"state_dict": {}, "epoch": 4}, run.last_checkpoint)
    assert run.resume_checkpoint() == (run.last_checkpoint, 4)
    data = run.last_checkpoint.read_bytes()
    run.last_checkpoint.write_bytes(data[: len(data) // 2])  # cut by a kill or a full disk
    with caplog.at_level("WARNING", logger="vlsm"):
        assert run.resume_checkpoint() == (run.last_checkpoint, 3)
    assert "last.ckpt is not a vlsm/Lightning checkpoint" in caplog.text and "last.prev.ckpt" in caplog.text
    assert not run.previous_last_checkpoint.exists()
    run.last_checkpoint.write_bytes(b"")
    with raises_naming(RunFolderError, str(run.path), str(run.last_checkpoint), "empty", "--overwrite"):
        run.resume_checkpoint()


def test_per_case_round_trip_and_errors(tmp_path):
    cases = [CaseResult("a", 1.0, 1.0, 0, 0, 4, 5, ""), CaseResult("b", 0.5, 1 / 3, 10, 10, 4, 5, "polyp")]
    path = tmp_path / "per_case.csv"
    write_per_case(path, cases)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(PER_CASE_FIELDS) and rows[1]["prompt"] == "polyp"
    scores = read_per_case(path)
    assert scores.names == ["a", "b"] and scores.dice == [1.0, 0.5] and scores.iou == [1.0, 1 / 3]

    path.write_text("name,dice,iou\na,0.5,0.5\na,0.4,0.4\n")
    with pytest.raises(ValueError, match="'a' appears twice"):
        read_per_case(path)
    path.write_text("name,dice\na,0.5\n")
    with pytest.raises(ValueError, match="lacks column"):
        read_per_case(path)
    path.write_text("name,dice,iou\na,1.5,0.5\n")
    with raises_naming(ValueError, str(path), "line 2", "1.5", "[0, 1]"):
        read_per_case(path)
    with pytest.raises(FileNotFoundError):
        read_per_case(tmp_path / "nowhere.csv")


def test_evaluation_folder_and_run_summary(tmp_path):
    run = RunFolder(tmp_path / "r").prepare()
    result = EvalResult("kvasir_polyp", "test", 2, 0.75, 0.25, 0.6, 0.4, 1, 0.5, "p1")
    folder = run.eval_dir("kvasir_polyp", "test")
    written = write_evaluation(folder, [CaseResult("a", 1.0, 1.0, 0, 0, 2, 2)], result, model={"name": "unet-d"},
                               extra={"zero_shot": False})
    summary = json.loads((folder / "summary.json").read_text())
    assert list(summary) == ["model", "results", "created", "empty_mask_policy", "zero_shot"]
    assert summary["results"] == [written.to_dict()]
    assert list(summary["results"][0]) == ["dataset", "split", "n", "dice_mean", "dice_std", "iou_mean", "iou_std",
                                           "empty_gt", "threshold", "prompt", "per_case"]
    assert summary["results"][0]["per_case"] == "per_case.csv"

    whole = run.write_run_summary({"name": "unet-d", "label": "UNet-D"}, [written], {"epochs_run": 3})
    assert read_summary(run.path) == whole
    assert whole["results"][0]["per_case"] == "eval/kvasir_polyp-test/per_case.csv"
    assert whole["config"] == "config.yaml" and whole["train"] == {"epochs_run": 3}
    assert summary_files(run.path) == [run.summary_file]
    run.summary_file.unlink()
    assert summary_files(run.path) == [folder / "summary.json"]


def test_summary_errors_name_the_file(tmp_path):
    bad = tmp_path / "summary.json"
    bad.write_text("{not json")
    with raises_naming(ValueError, str(bad), "JSON"):
        read_summary(bad)
    bad.write_text(json.dumps({"results": []}))
    with pytest.raises(ValueError, match="needs a \"model\" object"):
        read_summary(tmp_path)
    (tmp_path / "r").mkdir()
    with pytest.raises(FileNotFoundError, match="has no summary.json"):
        summary_files(tmp_path / "r")


def _tiny_run(tmp_path):
    """A run folder as training leaves it (model/, config.yaml, summary.json) and its checkpoint."""
    torch.manual_seed(0)
    model = vlsm.create_model("unet-d", preset="tiny", image_size=32)
    run = RunFolder(tmp_path / "run").prepare()
    cfg = ExperimentConfig()
    cfg.model.name, cfg.model.preset, cfg.model.overrides = "unet-d", "tiny", {"image_size": 32}
    run.write_config(cfg)
    model.save_pretrained(run.model_dir)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": {"model_spec": model.spec.to_dict()}, "state_dict": state}, run.best_checkpoint)
    run.write_summary({"model": {"name": "unet-d", "label": "My UNet"}, "results": []})
    return run, model


def test_load_trained_model_from_run_model_folder_and_checkpoint(tmp_path):
    run, model = _tiny_run(tmp_path)
    x = torch.rand(1, 3, 32, 32)
    want = model.eval()(x, None, None)
    for source in (run.path, run.model_dir, run.best_checkpoint):
        loaded, cfg = load_trained_model(source)
        assert cfg is not None and cfg.model.name == "unet-d"
        assert torch.allclose(loaded.eval()(x, None, None), want, atol=1e-6), source
    assert RunFolder.containing(run.best_checkpoint).path == run.path
    assert RunFolder.containing(run.model_dir).path == run.path
    assert RunFolder.containing(tmp_path) is None


def test_load_trained_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_trained_model(tmp_path / "nowhere")
    unfinished = RunFolder(tmp_path / "u").prepare()
    unfinished.last_checkpoint.write_bytes(b"x")
    with raises_naming(FileNotFoundError, str(unfinished.path), "--resume", str(unfinished.last_checkpoint)):
        load_trained_model(unfinished.path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no trained model"):
        load_trained_model(empty)
    other = tmp_path / "weights.pt"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="expected a .ckpt"):
        load_trained_model(other)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with raises_naming(ValueError, str(foreign), "model_spec", "vlsm convert-checkpoint"):
        load_trained_model(foreign)
    torch.save({"weight": torch.zeros(2)}, foreign)  # plain torch.save of a state dict
    with raises_naming(ValueError, str(foreign), "'state_dict'", "save_pretrained", "vlsm convert-checkpoint"):
        load_trained_model(foreign)
    foreign.write_bytes(b"\x80\x04 random bytes")
    with raises_naming(ValueError, str(foreign), "vlsm/Lightning checkpoint"):
        load_trained_model(foreign)
