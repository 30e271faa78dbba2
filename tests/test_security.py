"""A checkpoint is data, never code: the attack itself is the input.

Every reader of checkpoints and weight files gets a file whose pickle carries a ``__reduce__`` payload
(a shell command touching a file). Each must refuse it in one line naming the file and
``--trust-checkpoint``, and the payload's file must never appear. The project's own checkpoints load
without trust. A source scan holds that nothing in ``src/vlsm`` unpickles outside the one trusted path.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch

import vlsm
from tiny_runs import TRAIN
from vlsm.cli import main
from vlsm.models.checkpoint import UntrustedCheckpointError, load_torch_file, read_state_dict_file
from vlsm.runs import RunFolder, load_trained_model

SRC = Path(vlsm.__file__).parent


class Payload:
    """What an attacker pickles: unpickling it runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_checkpoint(path: Path, marker: Path, *, state=None) -> Path:
    """A Lightning-shaped checkpoint whose hyper_parameters run the payload when unpickled."""
    state = state if state is not None else {"model.x": torch.zeros(1)}
    torch.save({"state_dict": state, "epoch": 0, "hyper_parameters": {"model_spec": Payload(marker)}}, path)
    return path


@pytest.fixture()
def data(synthetic_data):
    """The session's synthetic dataset (tests/conftest.py)."""
    return synthetic_data


@pytest.fixture()
def trained(unet_run):
    """The session's finished tiny UNet-D run with every checkpoint kept (best.ckpt, last.ckpt), read-only."""
    return unet_run


@pytest.fixture()
def attack(tmp_path):
    marker = tmp_path / "PWNED"
    return evil_checkpoint(tmp_path / "evil.ckpt", marker), marker


def refused(capsys, argv, *needles) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert str(needle) in err, (needle, err)
    return err


# ------------------------------------------------------------------------------------------- commands
@pytest.mark.parametrize("argv", [
    lambda ckpt, data, out: ["evaluate", ckpt, "--data", data, "-o", out],
    lambda ckpt, data, out: ["predict", "--checkpoint", ckpt, "-i", data / "images", "-o", out],
    lambda ckpt, data, out: ["export", ckpt, out],
    lambda ckpt, data, out: ["export", ckpt, "--standalone", out],
    lambda ckpt, data, out: ["figure", ckpt, "--images", "x", "--data", data, "-o", out.with_suffix(".png")],
    lambda ckpt, data, out: ["convert-checkpoint", "--model", "unet-d", "--preset", "tiny", ckpt, out],
    lambda ckpt, data, out: TRAIN + ["--pretrained", ckpt, "--data", data, "--out", out, "--epochs", "1"],
    lambda ckpt, data, out: ["bench", "unet-d", "--preset", "tiny", "--device", "cpu", "--set", f"pretrained={ckpt}"],
], ids=["evaluate", "predict", "export", "export-standalone", "figure", "convert-checkpoint", "train-pretrained",
        "bench"])
def test_every_command_refuses_a_payload_checkpoint(capsys, tmp_path, data, attack, argv):
    ckpt, marker = attack
    out = tmp_path / "out"
    refused(capsys, argv(ckpt, data, out), "evil.ckpt", "--trust-checkpoint", "could run code")
    assert not marker.exists(), "the payload ran"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.ckpt"], "a refused command wrote its output"


def test_resume_refuses_a_payload_last_checkpoint(capsys, tmp_path, data, trained):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    marker = tmp_path / "PWNED"
    (run / "summary.json").unlink()  # an unfinished run: --resume reads last.ckpt
    evil_checkpoint(RunFolder(run).last_checkpoint, marker)
    before = sorted(p.name for p in RunFolder(run).checkpoints_dir.iterdir())
    refused(capsys, TRAIN + ["--data", data, "--out", run, "--epochs", "3", "--resume"], "last.ckpt",
            "--trust-checkpoint")
    assert not marker.exists()
    # never "repaired" by falling back to another file: the refused checkpoint stays where it was
    assert sorted(p.name for p in RunFolder(run).checkpoints_dir.iterdir()) == before


def test_reload_of_the_best_weights_refuses_a_payload(tmp_path, trained):
    from vlsm.training.callbacks import load_best_weights
    from vlsm.training.module import SegmentationTask

    model, _ = load_trained_model(trained)
    marker = tmp_path / "PWNED"
    best = evil_checkpoint(tmp_path / "best.ckpt", marker)
    with pytest.raises(UntrustedCheckpointError, match="best.ckpt"):
        load_best_weights(SegmentationTask(model), best, trained / "model")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- Python API
@pytest.mark.parametrize("reader", [
    lambda path: vlsm.Predictor(path, device="cpu"),
    lambda path: load_trained_model(path),
    lambda path: read_state_dict_file(path),
    lambda path: vlsm.create_model("unet-d", pretrained=str(path), preset="tiny"),
    lambda path: load_torch_file(path),
], ids=["Predictor", "load_trained_model", "read_state_dict_file", "create_model", "load_torch_file"])
def test_every_api_reader_refuses_a_payload(attack, reader):
    ckpt, marker = attack
    with pytest.raises(UntrustedCheckpointError) as err:
        reader(ckpt)
    assert str(ckpt) in str(err.value) and "trust_checkpoint=True" in str(err.value)
    assert not marker.exists()


def test_serve_refuses_a_payload(attack):
    pytest.importorskip("gradio")
    from vlsm.serve.session import load_runs

    ckpt, marker = attack
    with pytest.raises(UntrustedCheckpointError):
        load_runs([ckpt], device="cpu")
    assert not marker.exists()


def test_a_model_folder_is_safetensors_and_json(tmp_path, trained):
    """A model folder carries no pickle at all: nothing to trust."""
    names = sorted(p.name for p in (trained / "model").rglob("*") if p.is_file())
    assert names and all(n.endswith((".safetensors", ".json", ".md", ".txt")) for n in names), names


def test_trust_checkpoint_is_the_one_way_in(capsys, tmp_path, attack):
    """With --trust-checkpoint the file is unpickled (the payload runs: this is what the flag permits), and the
    command then judges it on its content."""
    ckpt, marker = attack
    assert main(["evaluate", str(ckpt), "--data", str(tmp_path), "-o", str(tmp_path / "o"),
                 "--trust-checkpoint"]) == 2
    assert marker.exists()
    assert "not a vlsm training checkpoint" in capsys.readouterr().err


def test_trusted_python_objects_load_with_the_flag_only(tmp_path):
    import argparse

    path = tmp_path / "namespace.pt"
    torch.save({"state_dict": {"weight": torch.ones(2)}, "args": argparse.Namespace(lr=1e-3)}, path)
    with pytest.raises(UntrustedCheckpointError, match="argparse.Namespace"):
        read_state_dict_file(path)
    from vlsm.models.checkpoint import checkpoints_trusted

    with checkpoints_trusted():
        assert torch.equal(read_state_dict_file(path)["weight"], torch.ones(2))


# ------------------------------------------------------------------------------------------- our own files
def test_own_checkpoints_load_as_weights_only(capsys, tmp_path, data, trained):
    for name in ("last.ckpt", "best.ckpt"):
        ckpt = torch.load(trained / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert ckpt["state_dict"]
    model, cfg = load_trained_model(trained / "checkpoints" / "last.ckpt")
    assert cfg is not None and model.spec.name == "unet-d"
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "summary.json").unlink()
    assert main(TRAIN + ["--data", str(data), "--out", str(run), "--epochs", "3", "--resume"]) == 0


# ------------------------------------------------------------------------------------------- the source
UNSAFE = {
    r"weights_only\s*=\s*False": "torch.load(weights_only=False)",
    r"\bpickle\.loads?\(": "pickle.load",
    r"\bUnpickler\(": "a pickle Unpickler",
    r"torch\.jit\.load\(": "torch.jit.load (TorchScript archives carry code)",
    r"yaml\.(unsafe_load|full_load|load_all)\(|Loader\s*=\s*yaml\.(Unsafe|Full)?Loader\b": "an unsafe YAML loader",
    r"\b(dill|cloudpickle|joblib)\b": "another unpickler",
    r"(?<![.\w])(eval|exec)\(": "eval/exec",
}
TRUSTED = SRC / "models" / "checkpoint.py"


def test_no_unsafe_loader_outside_the_trusted_path():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0] if path != TRUSTED else line
            for pattern, what in UNSAFE.items():
                if re.search(pattern, code) and not (path == TRUSTED and "trusted path" in line):
                    found.append(f"{path.relative_to(SRC)}:{number}: {what}")
    assert not found, "\n".join(found)
    trusted = TRUSTED.read_text()
    assert trusted.count("weights_only=False") == 1 and trusted.count("torch.jit.load(") == 1
    # YAML: one reader in the package, a SafeLoader subclass
    calls = [(path, m.group(0)) for path in sorted(SRC.rglob("*.py"))
             for m in re.finditer(r"yaml\.load\([^)]*\)", path.read_text())]
    assert [call for _, call in calls] == ["yaml.load(text, Loader=_YamlLoader)"], calls
    assert "class _YamlLoader(yaml.SafeLoader)" in calls[0][0].read_text()
