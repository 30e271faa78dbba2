"""Griffe extension for the API pages: the package's docstrings use a little reStructuredText, the pages
render Markdown. Rewritten here, on the way into the site (the source stays as it is):

* Sphinx roles (``:func:`train```, ``:class:`~vlsm.runs.RunFolder```) become code spans;
* a simple table (``====  ====`` rules) becomes a Markdown table;
* a paragraph ending in ``::`` before a literal block ends in ``:`` (the indented block is code already).
"""
from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|data|attr|exc|obj|const|ref|term):`(?P<target>[^`]+)`")
_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _role(match: re.Match) -> str:
    target = match.group("target").strip()
    explicit = re.match(r"^(?P<text>.+?)\s*<[^>]+>$", target)
    if explicit:
        return f"`{explicit.group('text')}`"
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def _cells(line: str, spans: list[tuple[int, int]]) -> list[str]:
    """The cells of one row; a cell that runs past its column's rule ends at the next space."""
    cuts = [0]
    for start, _ in spans[1:]:
        cut = max(start, cuts[-1])
        while 0 < cut < len(line) and not line[cut - 1].isspace():
            cut += 1
        cuts.append(min(cut, len(line)))
    cells = [line[a:b].strip() for a, b in zip(cuts, cuts[1:] + [len(line)])]
    return [re.sub(r"``([^`]+)``", r"`\1`", c).replace("|", "\\|") for c in cells]


def _markdown_table(lines: list[str]) -> list[str]:
    """A simple table (rule, header, rule, rows, rule) as a Markdown table; a row whose first cell is empty
    continues the one above."""
    spans = [m.span() for m in re.finditer(r"=+", lines[0])]
    rule_rows = [k for k, line in enumerate(lines) if _RULE.match(line)]
    header = _cells(lines[1], spans)
    rows: list[list[str]] = []
    for line in lines[rule_rows[1] + 1: rule_rows[2]]:
        cells = _cells(line, spans)
        if rows and not cells[0]:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    return ["| " + " | ".join(row) + " |" for row in [header, ["---"] * len(spans), *rows]]


def _tables(lines: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(lines):
        rules = [j for j in range(i, len(lines)) if _RULE.match(lines[j])][:3] if _RULE.match(lines[i]) else []
        if len(rules) == 3 and rules[1] == rules[0] + 2 and all(lines[k].strip() for k in range(rules[0], rules[2] + 1)):
            out += ["", *_markdown_table(lines[rules[0]: rules[2] + 1]), ""]
            i = rules[2] + 1
            continue
        out.append(lines[i])
        i += 1
    return out


def markdown(text: str) -> str:
    text = _ROLE.sub(_role, text)
    lines = _tables(text.split("\n"))
    lines = [re.sub(r"(\S)::$", r"\1:", line) if line.rstrip().endswith("::") else line for line in lines]
    return "\n".join(line for line in lines if line.strip() != "::")


class RstToMarkdown(griffe.Extension):
    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
