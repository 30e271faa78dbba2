"""The code blocks of README.md and docs/: found, sorted into what runs and what only needs to parse, and run.

The conventions (docs/development.md, "The documentation"):

* a fenced ``bash``/``python`` block runs unless its first line is ``# needs: gpu, weights (why)`` with
  reasons from :data:`NEEDS`; a marked block's ``vlsm`` commands must still parse and its Python compile;
* ``text`` blocks are output, ``yaml`` blocks are parsed, other languages are left alone;
* a page runs in an empty folder when it says ``<!-- doc-tests: empty folder -->``, else in a copy of the
  folder Getting started leaves behind; its blocks share that folder and one Python namespace;
* ``vlsm ...`` lines run in-process through :func:`vlsm.cli.main` (exit code 0, or N after ``# exits N``),
  ``python -c`` lines too; every other line runs in bash.
"""
from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import shlex
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

#: what a block may need instead of running in the tests
NEEDS = {
    "gpu": "a CUDA GPU",
    "weights": "pretrained weights (Hugging Face hub or local weight files)",
    "data": "a real dataset, downloaded from its creators",
    "download": "internet access (PyPI, the Hugging Face hub)",
    "cluster": "SLURM or several machines",
    "server": "a server that runs until it is stopped",
}
SHELL = {"bash", "sh", "shell"}
PYTHON = {"python", "py"}
#: languages whose blocks never run (yaml is parsed)
STATIC = {"text", "yaml", "bibtex", "json", "csv", "toml"}
EMPTY_FOLDER = "<!-- doc-tests: empty folder -->"
#: generated pages (their generator's tests check them)
GENERATED = ("reference/",)

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_EXITS = re.compile(r"#\s*exits\s+(?P<code>\d+)\b")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(?P<word>\w+)\1")
_OPENS = {"for", "while", "until", "if", "case"}
_CLOSES = {"done", "fi", "esac"}
_OPERATORS = set("();<>|&")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # the line of the opening fence (1-based)
    lang: str
    code: str
    needs: tuple

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def kind(self) -> str:
        return "shell" if self.lang in SHELL else "python" if self.lang in PYTHON else self.lang

    @property
    def runs(self) -> bool:
        return self.kind in ("shell", "python") and not self.needs


def pages() -> list[Path]:
    """README.md and every page of docs/ except the generated ones."""
    docs = [p for p in sorted(DOCS.rglob("*.md")) if not p.relative_to(DOCS).as_posix().startswith(GENERATED)]
    return [REPO / "README.md", *docs]


def starts_empty(page: Path) -> bool:
    return EMPTY_FOLDER in page.read_text(encoding="utf-8")


def needs_of(code: str, where: str) -> tuple:
    """The reasons of a ``# needs: gpu, weights (why), data`` first line (empty when the block runs):
    comma-separated words from :data:`NEEDS`, each may carry a note in brackets. Anything else is an error."""
    first = code.lstrip("\n").split("\n", 1)[0].strip()
    marker = re.match(r"#\s*needs\s*:(.*)$", first)
    if not marker:
        return ()
    reasons = tuple(r.strip() for r in re.sub(r"\([^)]*\)", "", marker.group(1)).split(","))
    unknown = [r for r in reasons if r not in NEEDS]
    if unknown:
        raise ValueError(f"{where}: {first!r}: {', '.join(map(repr, unknown))} is not a reason; write "
                         f"'# needs: REASON (note), REASON' with reasons from {', '.join(NEEDS)}")
    return reasons


def read_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order. An unclosed fence is an error."""
    lines = page.read_text(encoding="utf-8").split("\n")
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        lang = opening.group("info").strip().split(" ")[0].lower()
        body, j = [], i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and not lines[j].strip().strip(fence[0])):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if j == len(lines):
            raise ValueError(f"{page.relative_to(REPO)}:{i + 1}: the code block is never closed")
        where = f"{page.relative_to(REPO)}:{i + 1}"
        code = "\n".join(body) + "\n"
        needs = needs_of(code, where) if lang in SHELL | PYTHON else ()
        blocks.append(Block(page, i + 1, lang, code, needs))
        i = j + 1
    return blocks


# ---------------------------------------------------------------------------------------------
# shell blocks, split into commands
# ---------------------------------------------------------------------------------------------
def logical_lines(code: str) -> list[tuple[int, str]]:
    """(offset of the first line, text) of each command line: backslash continuations joined."""
    out, pending, start = [], "", 0
    for n, line in enumerate(code.split("\n")):
        if not pending:
            start = n
        if line.endswith("\\") and not line.lstrip().startswith("#"):
            pending += line[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def tokens(line: str) -> list[str]:
    """Shell words and operators of one line, comments dropped (quotes removed, nothing expanded)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def _is_vlsm(word: str) -> bool:
    return word == "vlsm" or word.endswith("/vlsm")


def _is_python(word: str) -> bool:
    return re.fullmatch(r"(.*/)?python3?", word) is not None


@dataclass
class Command:
    offset: int  # line offset inside the block
    kind: str  # "vlsm", "python-c" or "bash"
    text: str
    env: dict
    args: list
    exit_code: int = 0


def commands(code: str) -> list[Command]:
    """The commands of a runnable shell block: simple ``vlsm``/``python -c`` lines alone, the rest grouped
    into bash chunks (loops, heredocs and lines with operators stay whole)."""
    out: list[Command] = []
    chunk: list[str] = []
    chunk_start, depth, heredoc = 0, 0, None

    def flush():
        if chunk:
            out.append(Command(chunk_start, "bash", "\n".join(chunk), {}, []))
            chunk.clear()

    for offset, line in logical_lines(code):
        stripped = line.strip()
        if heredoc is not None:
            chunk.append(line)
            heredoc = None if stripped == heredoc else heredoc
            continue
        words = tokens(line) if stripped and not stripped.startswith("#") else []
        simple = words and not any(w and set(w) <= _OPERATORS for w in words)
        env, rest = {}, list(words)
        while rest and _ASSIGNMENT.match(rest[0]):
            key, value = rest.pop(0).split("=", 1)
            env[key] = value
        if depth == 0 and simple and rest and (_is_vlsm(rest[0]) or (_is_python(rest[0]) and rest[1:2] == ["-c"])):
            flush()
            exits = _EXITS.search(line)
            kind = "vlsm" if _is_vlsm(rest[0]) else "python-c"
            out.append(Command(offset, kind, line, env, rest[1:] if kind == "vlsm" else rest[2:],
                               int(exits.group("code")) if exits else 0))
            continue
        if not chunk:
            chunk_start = offset
        chunk.append(line)
        if words:
            depth += sum(w in _OPENS for w in words) - sum(w in _CLOSES for w in words)
        match = _HEREDOC.search(line)
        if match:
            heredoc = match.group("word")
    flush()
    return out


def vlsm_argvs(code: str) -> list[tuple[int, list]]:
    """Every ``vlsm`` command line of a (marked) shell block as (line offset, argv), wherever it stands
    (after ``srun``, inside a loop, before a redirection); ``...`` placeholders dropped."""
    found = []
    for offset, line in logical_lines(code):
        if line.strip().startswith("#"):
            continue
        try:
            words = tokens(line)
        except ValueError:  # unbalanced quotes inside a heredoc body: not a command
            continue
        for i, word in enumerate(words):
            if _is_vlsm(word):
                args = []
                for w in words[i + 1:]:
                    if w and set(w) <= _OPERATORS:
                        if w == ")" and not args:
                            continue  # $(which vlsm) train ...
                        break
                    if w not in ("...", "…"):
                        args.append(w)
                found.append((offset, args))
    return found


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def working_dir(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def environment(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def expand(word: str, cwd: Path) -> list[str]:
    """What the shell would make of one unquoted word: variables, ``~``, and globs that match."""
    word = os.path.expanduser(os.path.expandvars(word))
    if any(c in word for c in "*?["):
        matches = sorted(glob.glob(word, root_dir=cwd))
        if matches:
            return matches
    return [word]


class BlockFailed(AssertionError):
    pass


class PageRunner:
    """Runs a page's runnable blocks, in order, in one folder and one Python namespace."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.namespace: dict = {"__name__": "__docs__"}
        self.exported: dict = {}
        bin_dir = str(Path(sys.executable).parent)
        self.path = bin_dir + os.pathsep + os.environ.get("PATH", "")

    def run(self, block: Block) -> None:
        with working_dir(self.folder), environment(self.exported):
            if block.kind == "python":
                self._python(block.code, f"{block.where}", block.line)
            else:
                for command in commands(block.code):
                    getattr(self, "_" + command.kind.replace("-", "_"))(command, block)

    def _python(self, code: str, where: str, line: int) -> None:
        source = "\n" * line + code  # tracebacks name the page's own line numbers
        try:
            exec(compile(source, where.split(":")[0], "exec"), self.namespace)
        except Exception as err:
            raise BlockFailed(f"{where}: the Python block failed:\n{traceback.format_exc()}") from err

    def _python_c(self, command: Command, block: Block) -> None:
        with environment(command.env):
            self._python(command.args[0], block.where, block.line + 1 + command.offset)

    def _vlsm(self, command: Command, block: Block) -> None:
        from vlsm.cli import main

        argv = [w for word in command.args for w in expand(word, self.folder)]
        out = io.StringIO()
        with environment({k: os.path.expandvars(v) for k, v in command.env.items()}), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = main(argv)
            except SystemExit as stop:  # argparse: a flag that does not exist
                code = stop.code if isinstance(stop.code, int) else 2
        sys.stdout.write(out.getvalue())
        if code != command.exit_code:
            raise BlockFailed(f"{block.where}, line {block.line + 1 + command.offset}: `{command.text.strip()}` "
                              f"exited {code}, expected {command.exit_code}:\n{out.getvalue()[-3000:]}")

    def _bash(self, command: Command, block: Block) -> None:
        exports = re.findall(r"^\s*export\s+([A-Za-z_]\w*)=(\S+)\s*$", command.text, re.M)
        env = {**os.environ, "PATH": self.path}
        result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command.text], cwd=self.folder, env=env,
                                capture_output=True, text=True, timeout=300)
        sys.stdout.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise BlockFailed(f"{block.where}, line {block.line + 1 + command.offset}: bash exited "
                              f"{result.returncode}:\n{command.text}\n{(result.stdout + result.stderr)[-3000:]}")
        for key, value in exports:  # `export NAME=VALUE` holds for the page's later commands
            self.exported[key] = os.path.expandvars(value)


def makefile_targets() -> set:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M))


def pip_extras(code: str) -> list[tuple[int, str]]:
    """(line offset, extra) of every ``pip install ... ".[a,b]"`` in a block."""
    found = []
    for offset, line in logical_lines(code):
        if "pip" in line and "install" in line:
            for group in re.findall(r"\.\[([\w,-]+)\]", line):
                found.extend((offset, extra) for extra in group.split(","))
    return found


def make_targets(code: str) -> list[tuple[int, str]]:
    found = []
    for offset, line in logical_lines(code):
        words = line.split("#", 1)[0].split()
        if words[:1] == ["make"]:
            found.extend((offset, w) for w in words[1:] if not w.startswith("-") and "=" not in w)
    return found
