"""Errors the command line reports as one line (exit code 2) instead of a traceback."""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: printed as one clear message naming the file or flag and the fix."""
