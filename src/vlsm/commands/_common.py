"""Argument helpers shared by several subcommands."""
from __future__ import annotations

import argparse
import json
import sys


def override_arg(text: str) -> tuple[str, object]:
    """argparse type for KEY=VALUE options: :func:`vlsm.config.parse_override`, its error shown as
    argparse's usage error."""
    from vlsm.config import parse_override

    try:
        return parse_override(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def add_model_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=required, help="registered model name (see `vlsm models`)")
    g.add_argument("--preset", help="paper (default) or tiny")
    g.add_argument("--variant", help="ensembles: fixed (default) or reference")
    g.add_argument("--pretrained", help="weights: hub id (hf-hub:ORG/NAME), local folder; default random init")
    g.add_argument("--img-size", type=int, help="input image size (overrides the model's default)")
    g.add_argument("--set", dest="model_set", action="append", default=[], type=override_arg,
                   metavar="KEY=VALUE", help="model config override, e.g. --set freeze_encoder=false (repeatable)")


TRUST_HELP = ("load checkpoints and weight files that need arbitrary Python objects (pickle) or are TorchScript "
              "archives; only for files from a source you trust: loading them can run code")


def add_trust_arg(p: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint``: the one way past the weights-only rule (``vlsm.cli.main`` opens it)."""
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def say(text: str) -> None:
    """A progress line on stdout, flushed at once (a long sweep or search is followed as it goes)."""
    print(text, flush=True)


def warn(text: str) -> None:
    """A line on stderr, flushed at once."""
    print(text, file=sys.stderr, flush=True)
