"""The run's log file and a quieter Lightning: what `vlsm train` shows and keeps in RUN/log.txt."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

LOGGERS = ("vlsm", "lightning.pytorch", "lightning.fabric")


class _DropAdverts(logging.Filter):
    """Lightning advertises a cloud logger on every fit; keep it out of the console and run logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


def quiet_lightning() -> None:
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in logger.filters):
        logger.addFilter(_DropAdverts())
    # torch's pytree deprecation inside Lightning 2.6: nothing a user can act on
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    # DDP: size-1 axes of ECA's Conv1d weight get other (equivalent) strides than DDP's buckets
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")


def attach_log_file(path: Path) -> logging.Handler:
    """Copy vlsm's and Lightning's log records into ``path`` (until :func:`detach_log_file`)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    for name in LOGGERS:
        logging.getLogger(name).addHandler(handler)
    logging.getLogger("vlsm").setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()
