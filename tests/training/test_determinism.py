"""The same seed gives the same run on a CPU: metrics.csv (but its wall-clock column) and weights."""
import csv

import torch
from safetensors.torch import load_file

from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset


def _curve(run):
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def test_same_seed_same_run(tmp_path):
    data = make_synthetic_dataset(tmp_path / "synthetic_polyp", n_train=8, n_val=4, n_test=2, image_size=32, seed=2)
    argv = ["train", "--model", "unet-d", "--preset", "tiny", "--img-size", "32", "--batch-size", "4", "--epochs", "2",
            "--num-workers", "0", "--no-progress", "--seed", "3", "--device", "cpu", "--data", str(data)]
    # b: Lightning's deterministic=True as well (deterministic kernels; a CPU run is deterministic anyway)
    extra = {"a": [], "b": ["--deterministic"], "c": ["--seed", "4"]}
    for name, flags in extra.items():
        assert main(argv + flags + ["--out", str(tmp_path / name)]) == 0
    a, b, c = (tmp_path / n for n in "abc")
    assert len(_curve(a)) == 2 and _curve(a) == _curve(b)
    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _curve(c) != _curve(a)  # and the seed does matter
    assert "deterministic: true" in (b / "config.yaml").read_text()
