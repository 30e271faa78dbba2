"""An option is one schema field: `train.accumulate_grad_batches` was added by writing its field (vlsm.config.schema)
and the one line that uses it (training/trainer.py); its flag, its checks, its line in the reference page, the
resume rule, the model card's row and its effect all follow from that field."""
from __future__ import annotations

import csv

import yaml

from naming import raises_naming
from tiny_runs import TRAIN
from vlsm.cli import build_parser, main
from vlsm.commands.train import config_from_args
from vlsm.config import load_config, resumable_keys
from vlsm.config.reference import render_reference
from vlsm.data.synthetic import make_synthetic_dataset

KEY, FLAG = "train.accumulate_grad_batches", "--accumulate-grad-batches"


def _args(argv):
    return build_parser().parse_args(["train", *argv])


def test_its_flag_checks_and_reference_entry_come_from_the_field(tmp_path):
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    assert FLAG in train_parser.format_help()
    assert config_from_args(_args([FLAG, "3"])).train.accumulate_grad_batches == 3
    assert config_from_args(_args([])).train.accumulate_grad_batches == 1
    with raises_naming(ValueError, f"{FLAG} ({KEY})", "at least 1", "got 0"):
        config_from_args(_args([FLAG, "0"]))
    exp = tmp_path / "exp.yaml"
    exp.write_text("train: {accumulate_grad_batches: '2'}\n")
    with raises_naming(ValueError, f"{exp}: {KEY}", "an integer", "'2'"):
        load_config(exp)
    assert f"| `{KEY}` | `{FLAG}` | an integer | `1` | at least 1 |  | add up the gradients" in render_reference()
    assert KEY not in resumable_keys()  # it changes what a run computes


def _steps(run) -> list[int]:
    with open(run / "metrics.csv", newline="") as fh:
        return [int(row["step"]) for row in csv.DictReader(fh)]


def test_its_effect_the_resume_rule_and_the_card(tmp_path, capsys):
    data = make_synthetic_dataset(tmp_path / "synthetic_polyp", n_train=8, n_val=4, n_test=2, image_size=32, seed=1)
    runs = {}
    for n in (1, 2):
        runs[n] = tmp_path / f"accumulate-{n}"
        assert main([*TRAIN, "--data", str(data), "--out", str(runs[n]), "--epochs", "2", "--batch-size", "2",
                     FLAG, str(n)]) == 0
    assert _steps(runs[1]) == [4, 8] and _steps(runs[2]) == [2, 4]  # 4 batches an epoch: 4 or 2 optimizer steps
    assert yaml.safe_load((runs[2] / "config.yaml").read_text())["train"]["accumulate_grad_batches"] == 2
    assert "| gradient accumulation (batches per optimizer step) | 2 |" in (runs[2] / "model" / "README.md").read_text()
    capsys.readouterr()
    assert main(["train", "--out", str(runs[2]), "--resume", "--epochs", "3", FLAG, "1"]) == 2
    assert "train.accumulate_grad_batches: 2 -> 1" in capsys.readouterr().err
