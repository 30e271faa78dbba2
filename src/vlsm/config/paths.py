"""Paths in an experiment: ``~`` and ``$VARS`` expanded, an unset variable refused by name."""
from __future__ import annotations

import os
import re


def expand_path(p, where: str = "") -> str:
    """Expand ``~`` and ``$VARS`` (e.g. ``$VLSM_DATA_ROOT/kvasir_polyp``); an unset variable is an error."""
    s = os.path.expanduser(os.path.expandvars(str(p)))
    if "$" in s:
        missing = re.findall(r"\$\{?(\w+)", s)
        raise ValueError(f"{where + ': ' if where else ''}path {str(p)!r} uses unset environment variable(s) "
                         f"{missing}; export them (e.g. export VLSM_DATA_ROOT=/path/to/data) or write the path out")
    return s


__all__ = ["expand_path"]
