"""--device mps: Lightning's MPS accelerator on Apple silicon, refused in one line where there is none (as here); the
operations MPS lacks are named when they fall back to the CPU, and one line says what to do when they may not."""
from __future__ import annotations

import logging
import re
import warnings

import pytest
import torch

from naming import assert_names, raises_naming, refused
from tiny_runs import TRAIN
from vlsm import devices
from vlsm.config import validate_config

NO_MPS = not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


@pytest.mark.skipif(not NO_MPS, reason="this machine has an MPS device")
def test_device_mps_without_mps_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    refused(capsys, [*TRAIN, "--data", tmp_path, "--out", out, "--device", "mps"],
            re.compile("^vlsm train: error: --device mps"), "--device cpu")
    assert not out.exists()


def test_the_schema_takes_mps():
    assert validate_config({"train": {"device": "mps"}}).train.device == "mps"
    with raises_naming(ValueError, "train.device", "auto, cpu, cuda, cuda:N or mps", "'mps:1'"):
        validate_config({"train": {"device": "mps:1"}})


def test_mps_maps_to_lightnings_mps_accelerator(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert devices.resolve_accelerator("mps") == "mps"
    assert devices.resolve_precision("auto", "mps") == "32-true"
    assert not devices.use_channels_last("auto", "mps") and not devices.tune_kernels("mps")


def test_operations_that_fall_back_are_named_once(caplog):
    fallback = ("The operator 'aten::upsample_bicubic2d.out' is not currently supported on the MPS backend and will "
                "fall back to run on the CPU. This may have performance implications.")
    with caplog.at_level(logging.INFO, logger="vlsm"):
        with devices.mps_fallbacks("mps") as names:
            for _ in range(2):
                warnings.warn(fallback, UserWarning, stacklevel=1)
            with pytest.warns(UserWarning, match="something else"):
                warnings.warn("something else", UserWarning, stacklevel=1)
    assert names == {"aten::upsample_bicubic2d.out"}
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("MPS lacks aten::upsample_bicubic2d.out: it runs on the CPU (slower)") == 1
    assert "on MPS, 1 operation(s) ran on the CPU: aten::upsample_bicubic2d.out" in messages
    with devices.mps_fallbacks("cpu") as names, pytest.warns(UserWarning):
        warnings.warn(fallback, UserWarning, stacklevel=1)
    assert names == set()


def test_an_operation_mps_lacks_without_the_fallback_is_one_line():
    from vlsm.errors import UserError
    from vlsm.training.trainer import fit

    missing = NotImplementedError("The operator 'aten::_foo' is not currently implemented for the MPS device. If "
                                  "you want this op to be added in priority ...")
    line = devices.mps_error(missing)
    assert_names(line, "aten::_foo", "PYTORCH_ENABLE_MPS_FALLBACK=1", "--device cpu")
    assert devices.mps_error(NotImplementedError("other")) is None and devices.mps_error(ValueError("x")) is None

    class MPSAccelerator:
        pass

    class Trainer:
        accelerator = MPSAccelerator()

        def fit(self, *args, **kwargs):
            raise missing

    with raises_naming(UserError, "MPS", "aten::_foo", "PYTORCH_ENABLE_MPS_FALLBACK=1"):
        fit(Trainer(), object(), object())
