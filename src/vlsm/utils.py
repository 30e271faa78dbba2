"""Small helpers shared across the package."""
from __future__ import annotations

import dataclasses
import os
import tempfile
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


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place, so a reader
    never sees a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
