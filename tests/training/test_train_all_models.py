"""Every registered model trains end to end through `vlsm train` (tiny presets, generated data)."""
import json

import pytest
import yaml

from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset

CASES = [
    ("unet-d", None), ("clipseg", None), ("biomedclipseg", None), ("biomedclipseg-d", None), ("cris", None),
    ("biomedclipseg-a", "fixed"), ("biomedclipseg-a", "reference"),
    ("clipseg-b", "fixed"), ("clipseg-b", "reference"),
    ("ensemble-c", "fixed"), ("ensemble-c", "reference"),
    ("unet", None), ("unetpp", None), ("deeplabv3plus", None),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "syn", n_train=4, n_val=2, n_test=2,
                                  image_size=64, seed=11)


@pytest.mark.parametrize("name,variant", CASES)
def test_model_trains_through_cli(name, variant, data, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--model", name, "--preset", "tiny", "--data", str(data), "--out", str(out),
            "--epochs", "1", "--batch-size", "2", "--num-workers", "0", "--no-progress", "--img-size", "64"]
    if variant:
        args += ["--variant", variant]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["name"] == name and summary["model"]["variant"] == variant
    assert summary["results"][0]["n"] == 2
    assert summary["train"]["parameters"]["trainable"] > 0


def test_stack_from_experiment_yaml(data, tmp_path):
    exp = {"model": {"name": "stack", "preset": "tiny",
                     "overrides": {"vlsm": {"name": "clipseg", "preset": "tiny"},
                                   "cnn": {"name": "unet-d", "preset": "tiny"},
                                   "fusion": "weighted", "inject": "bottleneck"}},
           "data": {"paths": [str(data)], "prompt": "p2"},
           "train": {"epochs": 1, "batch_size": 2, "num_workers": 0, "progress_bar": False}}
    f = tmp_path / "stack.yaml"
    f.write_text(yaml.safe_dump(exp))
    out = tmp_path / "stack-run"
    assert main(["train", "-c", str(f), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["name"] == "stack" and summary["results"][0]["prompt"] == "p2"
    # the run folder's model reloads without the experiment file
    assert main(["evaluate", str(out), "-o", str(tmp_path / "ev")]) == 0
