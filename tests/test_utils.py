"""vlsm.utils: small shared helpers (atomic writes, permissions, caches, dataclasses from dicts)."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

import pytest

from naming import raises_naming
from vlsm.utils import dataclass_from_dict, signals_deferred


def test_dataclass_from_dict_lists_the_valid_keys():
    assert dataclass_from_dict(_Example, {"name": "x", "size": 2}, "spec") == _Example("x", 2)
    with raises_naming(ValueError, "spec", "'colour'", "'name', 'size', 'tags'"):
        dataclass_from_dict(_Example, {"name": "x", "colour": 1}, "spec")


@dataclass
class _Example:
    name: str
    size: int = 1
    tags: list = field(default_factory=list)


@pytest.fixture()
def umask():
    """Set the process umask for one test and restore it afterwards."""
    import os

    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                       (0o077, 0o600, 0o700)])
def test_written_files_and_folders_get_the_umask_permissions(tmp_path, umask, mask, file_mode, dir_mode):
    from vlsm.data._util import atomic_directory
    from vlsm.utils import current_umask, make_temp_dir, write_bytes_atomic, write_text_atomic

    umask(mask)
    assert current_umask() == mask
    write_text_atomic(tmp_path / "a.txt", "x\n")
    write_bytes_atomic(tmp_path / "b.bin", b"\0")
    assert (tmp_path / "a.txt").read_text() == "x\n"
    for name in ("a.txt", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == file_mode
    assert make_temp_dir(tmp_path, ".t-").stat().st_mode & 0o777 == dir_mode
    with atomic_directory(tmp_path / "ds") as tmp:
        (tmp / "f.txt").write_text("y")
    assert (tmp_path / "ds").stat().st_mode & 0o777 == dir_mode
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [
        p.name for p in tmp_path.iterdir() if p.name.startswith(".t-")]  # no temporary files left


def test_atomic_write_leaves_the_old_file_on_error(tmp_path, monkeypatch):
    import os

    from vlsm.utils import write_text_atomic

    def full_disk(*_a):
        raise OSError(28, "No space left on device")

    target = tmp_path / "f.txt"
    target.write_text("old")
    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    from pathlib import Path

    from vlsm.utils import cache_root

    monkeypatch.setenv("VLSM_CACHE_DIR", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("VLSM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "vlsm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "vlsm"


def test_signals_deferred_delivers_ctrl_c_once_after_the_block():
    reached_the_end = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a handler would have run by now
            reached_the_end.append(True)
    assert reached_the_end == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
