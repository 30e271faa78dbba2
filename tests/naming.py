"""What an error test checks: that the message names the culprit (the file, flag, key or value at fault) and
the fix it proposes (the flag, option or command to use), on one line. Not the sentence around them, so
that rewording a message costs no test edit.

    with raises_naming(ValueError, "--threshold", "(0, 1)"):
        check(...)
    refused(capsys, ["train", ...], "--epochs", "at least 1")      # the CLI: exit 2, one stderr line
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterator, Union

import pytest

Name = Union[str, re.Pattern]


def assert_names(message: str, *names: Name, one_line: bool = True) -> str:
    """``message`` names each of ``names`` (a text: contained as written; a compiled pattern: found), and is
    one line without a traceback unless ``one_line`` is False. Returns the message."""
    message = str(message)
    assert "Traceback" not in message, message
    if one_line:
        assert len(message.strip().splitlines()) <= 1, f"not one line:\n{message}"
    missing = [n.pattern if isinstance(n, re.Pattern) else n for n in names
               if not (n.search(message) if isinstance(n, re.Pattern) else str(n) in message)]
    assert not missing, f"the message does not name {missing}: {message}"
    return message


@contextlib.contextmanager
def raises_naming(exc_type, *names: Name, one_line: bool = True) -> Iterator[pytest.ExceptionInfo]:
    """``pytest.raises(exc_type)`` whose message names each of ``names`` (see :func:`assert_names`)."""
    with pytest.raises(exc_type) as info:
        yield info
    assert_names(str(info.value), *names, one_line=one_line)


def refused(capsys, argv, *names: Name, code: int = 2) -> str:
    """``vlsm argv`` (in-process) exits with ``code`` and prints one stderr line, without a traceback, that
    names each of ``names``. Returns that line."""
    from vlsm.cli import main

    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err.strip()
    return assert_names(err, *names)
