"""Staged output: a command writes its files into a temporary folder beside the destination and moves them
into place only once every file is written, so a failure leaves nothing behind (and, with ``--overwrite``,
keeps the earlier files). Nothing that vlsm did not write is ever removed."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator, Union

from vlsm.utils import make_temp_dir

PathLike = Union[str, Path]


class StagedFolder:
    """The files bound for ``target``, written first into :attr:`path` (a hidden sibling folder).

    :meth:`commit` moves every staged file into ``target`` (created if missing, existing files of the same
    name replaced); :meth:`discard` removes the staging folder and the parent folders it had to create."""

    def __init__(self, target: PathLike):
        self.target = Path(target)
        self._created = _missing_parents(self.target)  # deepest first, removed again on failure
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = make_temp_dir(self.target.parent, prefix=f".{self.target.name}.staged-")

    def commit(self) -> list[Path]:
        """Move the staged files into the target folder; returns their final paths."""
        new = not self.target.exists()
        self.target.mkdir(exist_ok=True)
        moved = []
        try:
            for path in sorted(self.path.rglob("*")):
                if path.is_dir():
                    continue
                final = self.target / path.relative_to(self.path)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, final)
                moved.append(final)
        except BaseException:
            if new:  # a folder this commit created holds only what it moved: take it back
                shutil.rmtree(self.target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(self.path, ignore_errors=True)
        self._created = []
        return moved

    def discard(self) -> None:
        """Remove the staged files and the folders made for them; the target is left as it was."""
        shutil.rmtree(self.path, ignore_errors=True)
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: something else lives there now
        self._created = []


def _missing_parents(target: Path) -> list[Path]:
    missing, parent = [], target.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing


def _name_the_target(err: OSError, folders: list[StagedFolder]) -> None:
    """An error while writing a staged file names the file it was bound for (what the user asked for)."""
    if err.filename is None:
        return
    for folder in folders:
        try:
            err.filename = str(folder.target / Path(err.filename).relative_to(folder.path))
            return
        except ValueError:
            continue


@contextlib.contextmanager
def staged(targets) -> Iterator[list[StagedFolder]]:
    """Stage files for each folder of ``targets``; on leaving the block without an error all are committed,
    on an error all are discarded (the targets untouched)."""
    folders: list[StagedFolder] = []
    try:
        for target in targets:
            folders.append(StagedFolder(target))
        yield folders
    except BaseException as err:
        for folder in reversed(folders):
            folder.discard()
        if isinstance(err, OSError):
            _name_the_target(err, folders)
        raise
    for i, folder in enumerate(folders):
        try:
            folder.commit()
        except BaseException:
            for rest in folders[i + 1:]:
                rest.discard()
            raise


__all__ = ["StagedFolder", "staged"]
