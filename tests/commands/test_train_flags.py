"""`vlsm train` flags land in the experiment config through the one override path."""
from __future__ import annotations

import argparse

import pytest

from naming import raises_naming
from vlsm.commands import train as train_command


def parse(argv):
    parser = argparse.ArgumentParser()
    train_command.register(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


def test_cache_flags():
    assert train_command.config_from_args(parse(["--no-cache"])).data.cache is False
    cfg = train_command.config_from_args(parse(["--cache-dir", "/tmp/decoded"]))
    assert cfg.data.cache is True and cfg.data.cache_dir == "/tmp/decoded"
    assert train_command.config_from_args(parse([])).data.cache is True  # decode once by default


# every flag `vlsm train` took before the schema, with a value where it takes one
OLD_FLAGS = {"--model": "clipseg", "--preset": "tiny", "--variant": "fixed", "--pretrained": "p", "--img-size": "64",
             "--data": "a", "--test-data": "b", "--prompt": "p3", "--class-name": "polyp", "--out": "r", "-o": "r",
             "--epochs": "3", "--batch-size": "2", "--lr": "0.1", "--weight-decay": "0", "--bce-weight": "0.5",
             "--dice-weight": "2", "--patience": "4", "--precision": "32-true", "--device": "cpu", "--devices": "2",
             "--num-workers": "0", "--seed": "3", "--max-minutes": "1.5", "--no-augment": None, "--no-progress": None,
             "--cache": None, "--no-cache": None, "--cache-dir": "c", "--limit-train-batches": "0.5", "--skip-bad": None,
             "--drop-overlap": None, "--max-pixels": "100", "--deterministic": None, "--monitor": "val_bce",
             "--min-delta": "0.01", "--min-epochs": "2", "--scheduler": "none", "--reload-best-each-epoch": None,
             "--feature-cache": "off", "--keep-checkpoints": "all", "--compile": None, "--channels-last": "on",
             "--num-nodes": "2", "--allow-partial-weights": None, "--resume": None, "--overwrite": None,
             "--trust-checkpoint": None, "-c": None}


def test_every_flag_of_before_still_parses_to_the_same_setting():
    argv = [a for flag, value in OLD_FLAGS.items() if flag not in ("-c", "-o", "--cache", "--resume", "--overwrite")
            for a in ([flag] if value is None else [flag, *([value] if flag != "--set" else [])])]
    cfg = train_command.config_from_args(parse(argv))
    t, d = cfg.train, cfg.data
    assert (cfg.model.name, cfg.model.preset, cfg.model.variant, cfg.model.pretrained) == ("clipseg", "tiny", "fixed", "p")
    assert cfg.model.overrides == {"image_size": 64} and cfg.out == "r"
    assert (d.paths, d.test_paths, d.prompt, d.class_name, d.augment, d.cache, d.cache_dir, d.skip_bad, d.drop_overlap,
            d.max_pixels) == (["a"], ["b"], "p3", "polyp", False, False, "c", True, True, 100)
    assert (t.epochs, t.batch_size, t.lr, t.weight_decay, t.bce_weight, t.dice_weight, t.early_stopping_patience) == \
        (3, 2, 0.1, 0.0, 0.5, 2.0, 4)
    assert (t.precision, t.device, t.devices, t.num_workers, t.seed, t.max_minutes, t.limit_train_batches) == \
        ("32-true", "cpu", 2, 0, 3, 1.5, 0.5)
    assert (t.progress_bar, t.deterministic, t.monitor, t.min_delta, t.min_epochs, t.scheduler) == \
        (False, True, "val_bce", 0.01, 2, "none")
    assert (t.reload_best_each_epoch, t.feature_cache, t.keep_checkpoints, t.compile, t.channels_last, t.num_nodes,
            t.allow_partial_weights) == (True, "off", "all", True, "on", 2, True)
    args = parse(["-c", "exp.yaml", "-o", "r", "--resume", "--overwrite", "--trust-checkpoint"])
    assert (args.config, args.out, args.resume, args.overwrite, args.trust_checkpoint) == ("exp.yaml", "r", True, True, True)


def test_int_or_fraction_and_gpus_or_auto():
    cfg = train_command.config_from_args(parse(["--limit-train-batches", "2", "--devices", "auto"]))
    assert cfg.train.limit_train_batches == 2 and isinstance(cfg.train.limit_train_batches, int)
    assert cfg.train.devices == "auto"
    cfg = train_command.config_from_args(parse(["--limit-train-batches", "1", "--devices", "4"]))
    assert cfg.train.limit_train_batches == 1.0 and isinstance(cfg.train.limit_train_batches, float)  # all of them
    assert cfg.train.devices == 4


def test_switches_override_the_file_both_ways(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("data: {augment: false, cache: false}\ntrain: {progress_bar: false, compile: true}\n")
    cfg = train_command.config_from_args(parse(["-c", str(f)]))
    assert (cfg.data.augment, cfg.data.cache, cfg.train.progress_bar, cfg.train.compile) == (False, False, False, True)
    cfg = train_command.config_from_args(parse(["-c", str(f), "--augment", "--cache", "--progress", "--no-compile"]))
    assert (cfg.data.augment, cfg.data.cache, cfg.train.progress_bar, cfg.train.compile) == (True, True, True, False)


@pytest.mark.parametrize("argv, names", [  # the flag and its key, what is valid, and the value given
    (["--epochs", "0"], ("--epochs (train.epochs)", "at least 1", "got 0")),
    (["--lr", "-1"], ("--lr (train.lr)", "positive", "-1.0")),
    (["--monitor", "val_iou"], ("--monitor (train.monitor)", "val_dice, val_loss, val_bce", "'val_iou'")),
    (["--threshold", "1.5"], ("--threshold (eval.threshold)", "between 0 and 1", "1.5")),
    (["--devices", "0"], ("--devices (train.devices)", "at least 1", "auto", "got 0")),
    (["--devices", "two"], ("--devices (train.devices)", "an integer or 'auto'", "'two'")),
    (["--limit-train-batches", "1.5"], ("--limit-train-batches (train.limit_train_batches)", "at least 1",
                                        "at most 1", "1.5")),
    (["--epochs", "3", "--min-epochs", "5"], ("--min-epochs (train.min_epochs)", "at most train.epochs (3)", "got 5")),
    (["--bce-weight", "0", "--dice-weight", "0"], ("--dice-weight (train.dice_weight)", "positive", "train.bce_weight")),
])
def test_a_bad_flag_is_one_line_naming_the_flag_and_what_is_valid(argv, names):
    with raises_naming(ValueError, *names):
        train_command.config_from_args(parse(argv))


def test_an_empty_experiment_file_is_named(tmp_path, capsys):
    from vlsm.cli import main

    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert main(["train", "-c", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and f"{empty}: no training data" in err and "--data" in err
