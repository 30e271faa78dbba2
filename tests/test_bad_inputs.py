"""Bad input to `vlsm train / evaluate / predict / sweep`: each case exits with code 2 and one line
naming the file or flag (no traceback), and writes or deletes nothing it should not.

(The data-folder cases live in tests/data/test_bad_inputs.py; kill-and-resume in
tests/training/test_resume.py.)"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from naming import refused
from tiny_runs import TRAIN
from vlsm.cli import main


@pytest.fixture()
def data(synthetic_data):
    """The session's synthetic dataset (tests/conftest.py)."""
    return synthetic_data


@pytest.fixture()
def trained(unet_run):
    """The session's finished two-epoch tiny UNet-D run (checkpoints/last.ckpt), read-only."""
    return unet_run


def snapshot(folder):
    """Every file under ``folder`` with its size and modification time (to prove nothing changed)."""
    if not os.path.exists(folder):
        return None
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


# ------------------------------------------------------------------------------ train: flags
@pytest.mark.parametrize("flag,value,needle", [
    ("--epochs", "0", "--epochs (train.epochs) must be at least 1, got 0"),
    ("--batch-size", "0", "--batch-size (train.batch_size) must be at least 1, got 0"),
    ("--lr", "-1", "--lr (train.lr) must be positive"),
    ("--num-workers", "-2", "--num-workers (train.num_workers) must be 0 or more"),
    ("--precision", "nonsense", "--precision (train.precision) must be one of auto, 32"),
    ("--max-pixels", "0", "--max-pixels (data.max_pixels) must be at least 1"),
    ("--preset", "huge", "huge"),
    ("--variant", "odd", "odd"),
])
def test_bad_train_flag_is_refused_before_the_run_folder_exists(data, tmp_path, capsys, flag, value, needle):
    out = tmp_path / "r"
    refused(capsys, TRAIN + ["--data", data, "--out", out, "--epochs", "1", flag, value], needle)
    assert not out.exists()


def test_unknown_model_and_missing_cuda(data, tmp_path, capsys):
    out = tmp_path / "r"
    refused(capsys, ["train", "--model", "unet-x", "--data", data, "--out", out], "unknown model 'unet-x'", "unet-d")
    if not torch.cuda.is_available():
        refused(capsys, TRAIN + ["--data", data, "--out", out, "--device", "cuda"], "--device cuda",
                "CUDA is not available")
    assert not out.exists()


def test_bad_experiment_files(data, tmp_path, capsys):
    out = tmp_path / "r"
    missing = tmp_path / "nowhere.yaml"
    refused(capsys, ["train", "-c", missing, "--out", out], f"experiment file {missing} not found")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: {name: unet-d\ntrain: [")
    refused(capsys, ["train", "-c", broken, "--out", out], f"{broken}: not valid YAML at line 2")
    typed = tmp_path / "typed.yaml"
    typed.write_text(f"data: {{paths: [{data}]}}\ntrain: {{batch_size: [4]}}\n")
    refused(capsys, ["train", "-c", typed, "--out", out], f"{typed}: train.batch_size: expected an integer")
    assert not out.exists()


# ------------------------------------------------------------------------------ train: run folders
def test_resume_with_overwrite_or_changed_settings_is_refused(trained, data, capsys):
    before = snapshot(trained)
    refused(capsys, TRAIN + ["--data", data, "--out", trained, "--resume", "--overwrite"],
            "--resume", "--overwrite", "only one of them")
    err = refused(capsys, TRAIN + ["--data", data, "--out", trained, "--resume", "--lr", "0.5"],
                  "--resume continues", "train.lr: 0.001 -> 0.5", "config.yaml")
    assert "1 setting(s)" in err
    assert snapshot(trained) == before


def test_overwrite_never_removes_a_folder_vlsm_did_not_make(data, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my: own file\n")  # a config.yaml alone does not make a run
    (mine / "notes.txt").write_text("keep")
    before = snapshot(mine)
    refused(capsys, TRAIN + ["--data", data, "--out", mine, "--epochs", "1", "--overwrite"],
            str(mine), "not a vlsm run folder")
    refused(capsys, TRAIN + ["--data", data, "--out", mine, "--epochs", "1"], "not a vlsm run folder")
    assert snapshot(mine) == before


def test_out_that_is_a_file_is_refused(data, tmp_path, capsys):
    out = tmp_path / "file.txt"
    out.write_text("x")
    refused(capsys, TRAIN + ["--data", data, "--out", out, "--epochs", "1"], str(out), "is a file")
    assert out.read_text() == "x"


def test_resume_of_a_failed_start_says_to_start_again(data, tmp_path, capsys):
    from vlsm.runs import RunFolder

    run = RunFolder(tmp_path / "failed").prepare()
    run.config_file.write_text("name: x\n")
    refused(capsys, TRAIN + ["--data", data, "--out", run.path, "--resume"], "cannot resume", "without --resume")


def test_failed_start_then_rerun_without_any_flag(data, tmp_path, monkeypatch, capsys):
    """A crash in epoch 0 leaves config.yaml and log.txt but no checkpoint: the same command starts it again."""
    from vlsm.training.module import SegmentationTask

    out = tmp_path / "r"
    argv = TRAIN + ["--data", str(data), "--out", str(out), "--epochs", "1"]

    def crash(self, batch, batch_idx):
        raise RuntimeError("simulated crash in epoch 0")

    with monkeypatch.context() as m:
        m.setattr(SegmentationTask, "training_step", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            main(argv)
    assert (out / "config.yaml").is_file() and not (out / "checkpoints" / "last.ckpt").exists()
    assert main(argv) == 0
    assert "stopped before its first checkpoint: starting it again" in (out / "log.txt").read_text()
    assert json.loads((out / "summary.json").read_text())["results"][0]["n"] == 5


def test_truncated_last_checkpoint_falls_back_on_resume(data, tmp_path, capsys):
    # a run folder of an older version, which kept the previous last.ckpt as last.prev.ckpt
    run = tmp_path / "old"
    assert main(TRAIN + ["--data", str(data), "--out", str(run), "--epochs", "1"]) == 0
    last = run / "checkpoints" / "last.ckpt"
    epoch0 = last.read_bytes()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2"]) == 0
    assert not (run / "checkpoints" / "last.prev.ckpt").exists()  # this version keeps no third copy
    (run / "checkpoints" / "last.prev.ckpt").write_bytes(epoch0)
    (run / "summary.json").unlink()
    last.write_bytes(last.read_bytes()[:1000])  # what a kill or a full disk used to leave
    assert main(["train", "--out", str(run), "--resume"]) == 0
    log = (run / "log.txt").read_text()
    assert "last.ckpt is not a vlsm/Lightning checkpoint" in log and "previous checkpoint last.prev.ckpt" in log
    with open(run / "metrics.csv") as fh:  # epoch 1 trained again from the end of epoch 0
        assert [line.split(",")[0] for line in fh.read().splitlines()] == ["epoch", "0", "1"]


def test_images_over_max_pixels_are_refused_by_name(data, tmp_path, capsys):
    out = tmp_path / "r"
    refused(capsys, TRAIN + ["--data", data, "--out", out, "--epochs", "1", "--max-pixels", "1000"],
            "too large", "48x48 = 2304 pixels", "--max-pixels")
    assert not out.exists()


# ------------------------------------------------------------------------------ checkpoints
def _bad_checkpoints(folder):
    folder.mkdir()
    random_bytes = folder / "random.ckpt"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = folder / "empty.ckpt"
    empty.write_bytes(b"")
    plain = folder / "plain.ckpt"
    torch.save({"weight": torch.zeros(3)}, plain)
    lightning_like = folder / "other.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "hyper_parameters": {}}, lightning_like)
    safetensors = folder / "weights.safetensors"
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3)}, str(safetensors))
    return [(random_bytes, "is not a vlsm/Lightning checkpoint: cannot read it"),
            (empty, "is not a vlsm/Lightning checkpoint: the file is empty"),
            (plain, "is not a vlsm/Lightning checkpoint: it holds a dict without 'state_dict'"),
            (lightning_like, "is not a vlsm training checkpoint (no model_spec"),
            (safetensors, "expected a .ckpt checkpoint, a run folder or a model folder")]


def test_evaluate_and_predict_refuse_bad_checkpoints(data, tmp_path, capsys):
    for path, needle in _bad_checkpoints(tmp_path / "ckpts"):
        out = tmp_path / f"eval-{path.stem}"
        refused(capsys, ["evaluate", path, "--data", data, "-o", out], str(path), needle)
        pred = tmp_path / f"pred-{path.stem}"
        refused(capsys, ["predict", "-i", data / "images", "-o", pred, "--checkpoint", path], str(path), needle)
        assert not out.exists() and not pred.exists()


def test_model_folder_with_wrong_shapes(trained, data, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    shutil.copytree(trained / "model", folder)
    weights = load_file(str(folder / "model.safetensors"))
    key = next(k for k, v in weights.items() if v.ndim >= 1)
    weights[key] = torch.zeros(*[n + 1 for n in weights[key].shape])
    save_file(weights, str(folder / "model.safetensors"))
    refused(capsys, ["evaluate", folder, "--data", data, "-o", tmp_path / "e"], "do not fit model unet-d",
            f"first mismatch {key}")


# ------------------------------------------------------------------------------ outputs
def test_predict_into_an_input_folder_is_refused(trained, data, tmp_path, capsys):
    images = tmp_path / "images"
    shutil.copytree(data / "images", images)
    before = snapshot(images)
    refused(capsys, ["predict", "-i", images, "-o", images, "--checkpoint", trained, "--overwrite"],
            "is an input folder")
    one = sorted(images.iterdir())[0]
    refused(capsys, ["predict", "-i", one, "-o", images, "--checkpoint", trained, "--overwrite"],
            "is an input folder")
    assert snapshot(images) == before


def test_predict_overwrite_replaces_only_earlier_predictions(trained, data, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    first = sorted((data / "images").iterdir())[0]
    (mine / f"{first.stem}.png").write_bytes(b"my own file")
    refused(capsys, ["predict", "-i", first, "-o", mine, "--checkpoint", trained, "--overwrite"],
            "not written by `vlsm predict`", str(mine))
    assert (mine / f"{first.stem}.png").read_bytes() == b"my own file"


def test_predict_and_evaluate_refuse_images_over_max_pixels(trained, data, tmp_path, capsys):
    out = tmp_path / "p"
    refused(capsys, ["predict", "-i", data / "images", "-o", out, "--checkpoint", trained, "--max-pixels", "1000"],
            "too large", "--max-pixels")
    refused(capsys, ["evaluate", trained, "-o", tmp_path / "e", "--max-pixels", "1000"], "too large")
    assert not out.exists() and not (tmp_path / "e").exists()


def test_decompression_bomb_is_one_line(trained, tmp_path, capsys):
    """An image far over Pillow's limit (a decompression bomb) is refused from its header, by name."""
    bomb = tmp_path / "in" / "bomb.png"
    bomb.parent.mkdir()
    Image.new("1", (12000, 12000)).save(bomb)  # 144 M pixels, a few KB on disk
    refused(capsys, ["predict", "-i", bomb, "-o", tmp_path / "p", "--checkpoint", trained], str(bomb), "too large")


def _no_write_access(monkeypatch, folder):
    """Make ``folder`` read-only for vlsm: chmod for an ordinary user; as root (which permissions do not
    stop) os.access answers as it would for that user."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if (mode & os.W_OK and os.path.abspath(p)
                                                                       == str(folder)) else real(p, mode, **kw))


def test_read_only_output_folders(trained, data, tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    _no_write_access(monkeypatch, locked)
    try:
        refused(capsys, TRAIN + ["--data", data, "--out", locked / "run", "--epochs", "1"],
                f"cannot write {locked / 'run'}: permission denied")
        refused(capsys, ["predict", "-i", data / "images", "-o", locked / "p", "--checkpoint", trained],
                f"cannot write {locked / 'p'}: permission denied")
        refused(capsys, ["evaluate", trained, "-o", locked / "e"], f"cannot write {locked / 'e'}: permission denied")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_full_disk_is_one_line_and_leaves_nothing_half_written(trained, data, tmp_path, monkeypatch, capsys):
    import vlsm.utils

    def full(path, data, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(vlsm.utils, "write_bytes_atomic", full)
    out = tmp_path / "p"
    refused(capsys, ["predict", "-i", data / "images", "-o", out, "--checkpoint", trained],
            "no space left on the device while writing", str(out))
    assert [p.name for p in out.glob("*.png")] == []


def test_evaluate_refuses_bad_numbers(trained, tmp_path, capsys):
    refused(capsys, ["evaluate", trained, "-o", tmp_path / "e", "--batch-size", "0"], "--batch-size", "at least 1")
    refused(capsys, ["evaluate", trained, "-o", tmp_path / "e", "--threshold", "1.5"], "--threshold")
    assert not (tmp_path / "e").exists()


def test_pretrained_weights_with_missing_tensors(data, tmp_path, capsys):
    """A weight folder lacking tensors is an error (naming the file) unless --allow-partial-weights."""
    from safetensors.torch import load_file, save_file
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    from vlsm.models.vlsm_base import load_config_json

    folder = tmp_path / "clipseg"
    CLIPSegForImageSegmentation(CLIPSegConfig(**load_config_json("clipseg_tiny.json"))).save_pretrained(folder)
    weights = load_file(str(folder / "model.safetensors"))
    del weights["decoder.film_add.bias"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "r"
    capsys.readouterr()  # (saving the folder above printed transformers' progress bar)
    argv = ["train", "--model", "clipseg", "--preset", "tiny", "--pretrained", folder, "--data", data, "--out", out,
            "--epochs", "1", "--batch-size", "4", "--num-workers", "0", "--no-progress"]
    err = refused(capsys, argv, re.compile("^vlsm train: error: "), str(folder / "model.safetensors"),
                  "--allow-partial-weights")
    assert "LOAD REPORT" not in err  # transformers' own report is kept quiet
    assert not out.exists()
    assert main([str(a) for a in argv + ["--allow-partial-weights"]]) == 0
    assert (out / "summary.json").is_file()
    # a vision-language run counts its prompts against the text encoder's context in the log
    log = (out / "log.txt").read_text()
    assert "prompts: all " in log and "fit the text encoder context of" in log


def test_convert_checkpoint_bad_files_and_foreign_output(tmp_path, capsys):
    random_bytes = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    for name in ("random.pt", "random.safetensors", "empty.pt"):
        path = tmp_path / name
        path.write_bytes(b"" if name.startswith("empty") else random_bytes)
        refused(capsys, ["convert-checkpoint", "--from", "reference", "--model", "unet-d", path, tmp_path / "out"],
                f"{path} is not a readable checkpoint")
    assert not (tmp_path / "out").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    refused(capsys, ["convert-checkpoint", "--from", "reference", "--model", "unet-d", tmp_path / "random.pt", mine,
                     "--force"], "is not a model folder", "--force will not replace it")
    assert (mine / "notes.txt").read_text() == "keep"


def test_checkpoint_writer_is_atomic_and_keeps_no_third_copy(tmp_path, monkeypatch):
    from vlsm.training.checkpoint_io import save_atomically

    last = tmp_path / "last.ckpt"
    save_atomically({"epoch": 0}, last)
    save_atomically({"epoch": 1}, last)
    assert torch.load(last)["epoch"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]

    def full_disk(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        save_atomically({"epoch": 2}, last)
    monkeypatch.undo()
    assert torch.load(last)["epoch"] == 1  # the failed write changed nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left
