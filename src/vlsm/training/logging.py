"""The run's log file and a quieter Lightning: what `vlsm train` shows and keeps in RUN/log.txt."""
from __future__ import annotations

import logging
import logging.handlers
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


class EarlyRecords(logging.handlers.BufferingHandler):
    """Holds the records logged before the run folder exists (the data check's notes, a taken-over claim), so
    they reach ``log.txt`` once it is attached (:meth:`RunLog.attach`); meanwhile warnings still reach the
    console, as Python's last-resort handler would show them."""

    def __init__(self):
        super().__init__(capacity=0)

    def shouldFlush(self, record) -> bool:  # noqa: N802 - logging's name
        return False

    def emit(self, record: logging.LogRecord) -> None:
        self.buffer.append(record)
        if record.levelno >= logging.lastResort.level and not self._others(logging.getLogger(record.name)):
            logging.lastResort.handle(record)

    def _others(self, logger: logging.Logger) -> bool:
        """Whether another handler sees the record (then Python would not use its last resort either)."""
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return True
            logger = logger.parent if logger.propagate else None
        return False


class RunLog:
    """A training run's log: records are kept from :meth:`start` on; :meth:`attach` writes them, and every
    later one, into the run's ``log.txt``; :meth:`close` detaches everything (use it as a context manager)."""

    def __init__(self):
        self.early = EarlyRecords()
        self.file: logging.Handler | None = None

    def start(self) -> "RunLog":
        logging.getLogger("vlsm").addHandler(self.early)
        logging.getLogger("vlsm").setLevel(logging.INFO)
        return self

    def attach(self, path: Path) -> None:
        """Log into ``path`` from now on, beginning with the records kept so far."""
        logging.getLogger("vlsm").removeHandler(self.early)
        self.file = attach_log_file(path)
        for record in self.early.buffer:
            self.file.handle(record)
        self.early.buffer.clear()

    def close(self) -> None:
        logging.getLogger("vlsm").removeHandler(self.early)
        self.early.buffer.clear()
        if self.file is not None:
            detach_log_file(self.file)
            self.file = None

    def __enter__(self) -> "RunLog":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


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
