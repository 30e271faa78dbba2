"""GPU defaults on the CPU: channels-last convolutions (forced with --channels-last on) and --compile.

Outputs equal the plain model's up to float rounding; model/, checkpoints, resume and ONNX export work;
saved weights keep the module's own names (no ``_orig_mod.``)."""
import functools
import json

import pytest
import torch

from naming import raises_naming
from tiny_runs import TRAIN
from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset
from vlsm.devices import channels_last_convolutions, contiguous_convolutions, use_channels_last
from vlsm.models import create_model, load_pretrained
from vlsm.runs import RunFolder, load_trained_model, read_training_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("gpu-defaults") / "syn", n_train=8, n_val=4, n_test=4,
                                  image_size=32, seed=1)


def _conv_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]


def test_use_channels_last_modes():
    assert use_channels_last("auto", "gpu") and not use_channels_last("auto", "cpu")
    assert use_channels_last("on", "cpu") and not use_channels_last("off", "gpu")
    with raises_naming(ValueError, "'yes'", "auto, on, off"):
        use_channels_last("yes", "cpu")


def test_channels_last_outputs_equal_and_the_saved_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    plain = create_model("unet-d", pretrained=None, preset="tiny", image_size=32).eval()
    nhwc = create_model("unet-d", pretrained=None, preset="tiny", image_size=32).eval()
    nhwc.load_state_dict(plain.state_dict())
    n = channels_last_convolutions(nhwc)
    assert n == len(_conv_weights(nhwc)) > 0
    assert all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
               for w in _conv_weights(nhwc) if w.shape[-1] * w.shape[-2] > 1)  # (1x1 kernels: both at once)
    assert list(nhwc.state_dict()) == list(plain.state_dict())  # names and shapes unchanged
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x), plain(x), rtol=1e-5, atol=1e-5)
    assert contiguous_convolutions(nhwc) == n
    assert all(w.is_contiguous() for w in _conv_weights(nhwc))
    nhwc.save_pretrained(tmp_path / "model")
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path / "model").eval()(x), nhwc(x))


def test_training_channels_last_on_the_cpu_saves_checkpoints_model_and_onnx(data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*TRAIN, "--data", str(data), "--out", str(out), "--channels-last", "on", "--keep-checkpoints", "all"]
    assert main([*argv, "--epochs", "2"]) == 0
    run = RunFolder(out)
    assert "channels-last memory format for" in run.log_file.read_text()
    # the checkpoint holds the NHWC tensors as trained; resume copies them into a new NHWC model
    assert main([*argv, "--epochs", "3", "--resume"]) == 0
    assert json.loads(run.summary_file.read_text())["train"]["epochs_run"] == 3
    from_folder, _ = load_trained_model(out)
    from_ckpt, _ = load_trained_model(run.best_checkpoint)  # model/ is made from it
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(from_folder.eval()(x), from_ckpt.eval()(x), rtol=0, atol=0)
    capsys.readouterr()
    assert main(["export", str(out), str(tmp_path / "onnx")]) == 0
    assert (tmp_path / "onnx" / "model.onnx").is_file()


@pytest.mark.slow  # dynamo traces the training step (~6 s on 2 CPU cores)
def test_compile_trains_through_dynamo_and_keeps_the_module_keys(data, tmp_path, monkeypatch):
    """--compile on the CPU. Inductor needs minutes to compile here, so dynamo hands its graphs to the
    eager backend: the same capture and the same module wrapping, without code generation."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    counters.clear()
    out = tmp_path / "run"
    assert main([*TRAIN, "--data", str(data), "--out", str(out), "--epochs", "1", "--compile"]) == 0
    assert counters["stats"]["unique_graphs"] > 0  # the training step really went through dynamo
    run = RunFolder(out)
    plain = create_model("unet-d", pretrained=None, preset="tiny", image_size=32)
    for ckpt in (run.last_checkpoint, run.best_checkpoint):
        if ckpt.is_file():
            keys = set(read_training_checkpoint(ckpt)["state_dict"])
            assert not any("_orig_mod" in k for k in keys)
            assert {k for k in keys if k.startswith("model.")} <= {f"model.{k}" for k in plain.state_dict()}
    model = load_pretrained(run.model_dir)
    assert set(model.state_dict()) == set(plain.state_dict())
    assert json.loads(run.summary_file.read_text())["results"][0]["n"] == 4
