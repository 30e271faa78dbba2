"""Small helpers shared across the package."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Type, TypeVar

T = TypeVar("T")


def preview(items: Iterable, limit: int = 5) -> str:
    """``'a, b, c, ... (12 in all)'``: the first few items of a list and how many there are."""
    items = [str(i) for i in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"


def dataclass_from_dict(cls: Type[T], values: dict, where: str) -> T:
    """Build ``cls(**values)``, refusing unknown keys with a message that lists the valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
    return cls(**values)


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux: /proc), so no
    other thread ever creates a file while the umask is briefly 0."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def default_file_mode() -> int:
    """The permissions ``open()`` would give a new file: 0o666 less the umask (mkstemp gives 0o600)."""
    return 0o666 & ~current_umask()


def default_dir_mode() -> int:
    """The permissions ``mkdir`` would give a new folder: 0o777 less the umask (mkdtemp gives 0o700)."""
    return 0o777 & ~current_umask()


def make_temp_dir(parent, prefix: str) -> Path:
    """A new uniquely named folder in ``parent`` (made with ``tempfile.mkdtemp``) with the umask's
    permissions instead of mkdtemp's 0o700, so that renaming it into place leaves an ordinary folder."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, default_dir_mode())
    return tmp


@contextlib.contextmanager
def atomic_file(path, *, fsync: bool = False):
    """A binary file to write ``path`` through: a temporary file beside it, renamed into place when the
    block ends, so a reader never sees a half-written file and two writers of the same file never mix.
    The file gets the umask's permissions (as a plain ``open()`` would), not the temporary file's 0o600;
    ``fsync`` flushes it to disk before the rename. On any error the temporary file is removed and
    ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), default_file_mode())
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` as a whole, through :func:`atomic_file`."""
    with atomic_file(path, fsync=fsync) as fh:
        fh.write(data)


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) atomically: :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def signals_deferred(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them to the handlers that were installed.

    Why: ``torch.save`` writes through a Python callback, and an exception that a signal handler raises
    inside it (``KeyboardInterrupt``, the run claim's ``SystemExit(143)``) comes out as torch's
    ``RuntimeError`` ("unexpected pos"): the process would die with a traceback instead of its exit
    code. Outside the main thread (where Python runs no signal handlers) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list = []
    previous = {}
    for signum in signums:
        if signal.getsignal(signum) is not None:  # None: a handler installed outside Python; leave it
            previous[signum] = signal.signal(signum, lambda received, _frame: pending.append(received))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)


def cache_root() -> Path:
    """The root of vlsm's caches: ``$VLSM_CACHE_DIR``, else ``$XDG_CACHE_HOME/vlsm``, else
    ``~/.cache/vlsm``. Each cache lives in a subfolder (e.g. ``decoded/`` for decoded images)."""
    env = os.environ.get("VLSM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "vlsm"
