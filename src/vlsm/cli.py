"""The `vlsm` command line: thin wrappers that parse arguments and call the Python API.

Each subcommand lives in ``vlsm/commands/<name>.py`` with ``register(subparsers)``; that module
adds its parser and sets ``func`` to the function that runs it (returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from vlsm.errors import UserError

COMMAND_MODULES = (
    "vlsm.commands.demo",
    "vlsm.commands.train",
    "vlsm.commands.evaluate",
    "vlsm.commands.predict",
    "vlsm.commands.models",
    "vlsm.commands.convert_checkpoint",
    "vlsm.commands.data",
    "vlsm.commands.sweep",
    "vlsm.commands.reports",
    "vlsm.commands.bench",
    "vlsm.commands.export",
    "vlsm.commands.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlsm",
        description="Segment medical images with vision-language models, UNet-D and their ensembles.")
    from vlsm import __version__

    parser.add_argument("--version", action="version", version=f"vlsm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue  # command not part of this installation
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError, ValueError) as err:
        print(f"vlsm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
