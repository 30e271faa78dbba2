"""`vlsm train` flags land in the experiment config through the one override path."""
from __future__ import annotations

import argparse

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
