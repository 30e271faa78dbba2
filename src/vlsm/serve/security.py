"""Who may use ``vlsm serve`` and what one server may hold: logins, the host rule, limits, its private folder.

Everything here is plain Python (no Gradio), so the decisions are unit-testable:

* :func:`parse_credentials` / :func:`read_auth_file`: ``USER:PASSWORD`` from ``--auth`` or an auth file;
* :func:`is_loopback` / :func:`check_exposure`: a server that other machines can reach needs a login
  (or ``--no-auth``, an open page on purpose);
* :func:`parse_file_size` and :func:`check_at_least`: the upload and queue limits;
* :class:`ServerFiles`: the private temporary folder (mode 0700) that holds the uploads, Gradio's
  cache and the written masks, removed when the server stops.

Messages name the flag or file and the fix, never a password.
"""
from __future__ import annotations

import atexit
import ipaddress
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from vlsm.errors import UserError

_AUTH_PARTS = "a user name without spaces, a colon, then the password"
AUTH_FORM = f"user:password ({_AUTH_PARTS})"
# Gradio reads its upload cache folder from this variable when it builds the components and the app.
GRADIO_TEMP_ENV = "GRADIO_TEMP_DIR"
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb|tb)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3, "tb": 1024 ** 4}


def _split(text: str) -> Optional[tuple[str, str]]:
    """``user:password`` split at its first colon (a password may hold colons; spaces around either part
    are dropped), or None when malformed."""
    user, colon, password = text.partition(":")
    user, password = user.strip(), password.strip()
    if not colon or not user or not password or any(c.isspace() for c in user):
        return None  # a space in the user name: most likely "user password" with a colon in the password
    return user, password


def parse_credentials(text: str) -> tuple[str, str]:
    """``--auth USER:PASSWORD`` as ``(user, password)``; the message never repeats the value."""
    pair = _split(text or "")
    if pair is None:
        raise UserError(f"--auth expects USER:PASSWORD ({_AUTH_PARTS}); "
                        f"or put such lines in a file and pass --auth-file FILE")
    return pair


def read_auth_file(path) -> list[tuple[str, str]]:
    """The ``(user, password)`` pairs of an auth file: one ``user:password`` a line, blank lines and
    ``#`` comments ignored, each user once."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot read the auth file {path} ({err.strerror or err}); "
                        f"pass --auth-file a readable file of {AUTH_FORM} lines") from None
    except UnicodeDecodeError:
        raise UserError(f"the auth file {path} is not UTF-8 text; write it as lines of {AUTH_FORM}") from None
    pairs: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pair = _split(line)
        if pair is None:
            raise UserError(f"{path} line {number}: expected {AUTH_FORM}")
        if pair[0] in first_line:
            raise UserError(f"{path} line {number}: user {pair[0]!r} is already on line {first_line[pair[0]]}; "
                            f"give each user one line")
        first_line[pair[0]] = number
        pairs.append(pair)
    if not pairs:
        raise UserError(f"the auth file {path} has no login; add a line {AUTH_FORM}")
    return pairs


def auth_file_warning(path) -> Optional[str]:
    """A warning when other users of this machine may read the auth file (None when they cannot)."""
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return None
    if os.name != "posix" or not mode & 0o077:
        return None
    return f"warning: other users of this machine can read the auth file {path}; chmod 600 {path}"


def check_auth(auth) -> Optional[list[tuple[str, str]]]:
    """``serve(auth=...)`` as a list of ``(user, password)`` tuples (None: no login)."""
    if auth is None:
        return None
    if isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(x, str) for x in auth):
        auth = [auth]  # one login given as a bare pair
    pairs = []
    for entry in auth if not isinstance(auth, str) else [auth]:
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2
                and all(isinstance(x, str) and x.strip() for x in entry)):
            raise UserError("auth= expects a list of (user, password) pairs of non-empty strings")
        pairs.append((entry[0].strip(), entry[1]))
    if not pairs:
        raise UserError("auth= is an empty list; give at least one (user, password) pair, or None for no login")
    return pairs


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine: ``localhost``, 127.0.0.0/8 or ::1.

    Anything else (``0.0.0.0``, ``::``, a LAN address, a host name) may be reachable from others.
    """
    host = (host or "").strip()
    if host.lower() == "localhost":
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def check_exposure(host: str, auth: Optional[Sequence], allow_open: bool, *, python: bool = False) -> None:
    """Refuse to serve beyond loopback without a login, unless an open page is asked for.

    ``python``: word the message for :func:`vlsm.serve.serve`'s keywords instead of the flags.
    """
    if allow_open and auth:
        raise UserError("allow_open=True serves an open page, auth= asks for a login: pass one of them" if python
                        else "--no-auth serves an open page, --auth/--auth-file asks for a login: pass one of them")
    if auth or allow_open or is_loopback(host):
        return
    risk = "is not a loopback address, so other machines could use this server without a login"
    if python:
        raise UserError(f"host={host!r} {risk}; pass auth=[(user, password), ...], or allow_open=True to serve an "
                        f"open page on purpose")
    raise UserError(f"--host {host} {risk}; pass --auth-file FILE (one user:password a line) or --auth "
                    f"USER:PASSWORD, or --no-auth to serve an open page on purpose")


def parse_file_size(value, flag: str = "--max-file-size") -> int:
    """``200mb``, ``1gb``, ``500kb`` or a number of bytes, as bytes (> 0)."""
    match = _SIZE.match(str(value)) if not isinstance(value, bool) else None
    size = int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()] if match else 0
    if size <= 0:
        raise UserError(f"{flag} must be a positive size such as 200mb, 1gb or 500kb (units b, kb, mb, gb, tb), "
                        f"got {value!r}")
    return size


def check_at_least(flag: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{flag} must be an integer >= {minimum}, got {value!r}")
    return value


class ServerFiles:
    """The server's private temporary folder (mode 0700): ``uploads/`` (Gradio's upload cache, through
    ``GRADIO_TEMP_DIR``) and ``masks/`` (the masks offered for download).

    :meth:`remove` deletes only this folder (made here by :func:`tempfile.mkdtemp`) and puts
    ``GRADIO_TEMP_DIR`` back; it also runs at interpreter exit as a backstop.
    """

    def __init__(self, prefix: str = "vlsm-serve-"):
        self.root = Path(tempfile.mkdtemp(prefix=prefix))  # created with mode 0700
        os.chmod(self.root, 0o700)
        self.uploads = self.root / "uploads"
        self.masks = self.root / "masks"
        for folder in (self.uploads, self.masks):
            folder.mkdir(mode=0o700)
        self._saved_env: Optional[tuple[Optional[str]]] = None
        atexit.register(self.remove)

    def use_for_gradio(self) -> "ServerFiles":
        """Point Gradio's upload cache at ``uploads/`` until :meth:`remove`."""
        if self._saved_env is None:
            self._saved_env = (os.environ.get(GRADIO_TEMP_ENV),)
            os.environ[GRADIO_TEMP_ENV] = str(self.uploads)
        return self

    def remove(self) -> None:
        if self._saved_env is not None:
            [previous] = self._saved_env
            if os.environ.get(GRADIO_TEMP_ENV) == str(self.uploads):  # another server may have set it since
                if previous is None:
                    os.environ.pop(GRADIO_TEMP_ENV, None)
                else:
                    os.environ[GRADIO_TEMP_ENV] = previous
            self._saved_env = None
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.remove)


__all__ = ["parse_credentials", "read_auth_file", "auth_file_warning", "check_auth", "is_loopback", "check_exposure", "parse_file_size",
           "check_at_least", "ServerFiles", "AUTH_FORM"]
