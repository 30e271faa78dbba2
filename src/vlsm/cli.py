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
    "vlsm.commands.tune",
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
    import os

    if sys.platform == "darwin":  # --device mps: the operations MPS lacks run on the CPU (read when torch loads)
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from PIL import Image

    from vlsm.models.checkpoint import checkpoints_trusted

    pixel_limit = Image.MAX_IMAGE_PIXELS  # --max-pixels changes it for one command, not for the process
    try:
        # weights-only loading everywhere, unless the command's --trust-checkpoint says otherwise
        with checkpoints_trusted(bool(getattr(args, "trust_checkpoint", False))):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the boundary: a user's problem is one line, a bug a traceback
        message = user_message(err)
        if message is None:
            raise
        print(f"vlsm {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        Image.MAX_IMAGE_PIXELS = pixel_limit


def user_message(err: BaseException):
    """The one line a user sees for ``err`` (naming the file and the fix), or None for a bug."""
    import errno
    import os

    if isinstance(err, (UserError, FileNotFoundError, ValueError)):
        return _one_line(str(err) or type(err).__name__)
    if isinstance(err, OSError):
        name = err.filename if err.filename is not None else "the output"
        if isinstance(err, PermissionError):
            target = str(name)
            readable = os.path.exists(target) and os.access(target, os.R_OK)
            if os.path.exists(target) and not readable:
                return f"cannot read {target}: permission denied; fix its permissions"
            return (f"cannot write {target}: permission denied; choose another output folder (-o/--out) or fix "
                    f"its permissions")
        if err.errno == errno.ENOSPC:
            return (f"no space left on the device while writing {name}; free some space or choose another "
                    f"output folder (vlsm writes through temporary files: nothing was left half-written)")
        if err.errno == errno.EROFS:
            return f"cannot write {name}: read-only file system; choose another output folder (-o/--out)"
        return _one_line(f"{name}: {err.strerror or err}")
    from PIL import Image

    if isinstance(err, Image.DecompressionBombError):
        return _one_line(f"an image is too large ({err}); raise --max-pixels if the file is trusted")
    return None


def _one_line(text: str) -> str:
    """Messages stay on one line (a data-check report keeps its lines: they list the files)."""
    return text.strip()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
