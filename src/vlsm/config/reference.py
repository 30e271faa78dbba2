"""``docs/reference/configuration.md``: every option of the experiment schema, generated from it.

    python -m vlsm.config.reference docs/reference/configuration.md   # rewrite the page
    python -m vlsm.config.reference                                   # print it

A test keeps the committed page equal to :func:`render_reference`.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from vlsm.config.options import Option, type_words
from vlsm.config.schema import SECTIONS, ExperimentConfig, all_options

PAGE = Path("docs") / "reference" / "configuration.md"

_INTRO = """\
# Configuration reference

<!-- Generated from vlsm.config.schema by `python -m vlsm.config.reference docs/reference/configuration.md`;
     do not edit by hand (tests/test_config.py checks that it is current). -->

An experiment file (`vlsm train -c EXP.yaml`, see `experiments/`) has the sections below; every run folder's
`config.yaml` holds all of them, resolved. A key left out takes its default. Values are checked strictly:
`epochs: "5"` is refused (a number, not text), `lr: 1e-3` is a number. Each option with a flag can be given
on the command line of `vlsm train` (a flag overrides the file); any option can be set with
`vlsm sweep --set SECTION.KEY=VALUE`. *resume*: whether `vlsm train --resume` may change it (how long or how a
run trains, never what it computes).
"""


def _value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "to_dict"):
        return _value(value.to_dict())
    return str(value)


def _flag(option: Option) -> str:
    if not option.flags:
        return ""
    if option.is_switch:
        return f"`{option.flag}` / `--no-{option.flag[2:]}`"
    return " ".join(f"`{f}`" for f in option.flags)


def _markdown(text: str) -> str:
    """A docstring's reStructuredText roles and literals as Markdown code."""
    return re.sub(r":\w+:`~?([^`]+)`", r"`\1`", " ".join(text.split())).replace("``", "`")


def _row(option: Option) -> str:
    valid = option.valid() if (option.choices or option.bounds() or option.field.json_schema_extra.get("valid")) else ""
    kind = type_words(type(option.choices[0])) if option.choices else type_words(option.annotation)
    cells = [f"`{option.key}`", _flag(option), kind, f"`{_value(option.default)}`",
             valid, "yes" if option.resumable else "", option.help]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render_reference() -> str:
    """The page's text."""
    options = all_options()
    lines = [_INTRO]
    groups = [("Top level", "", ExperimentConfig.__doc__)] + [(f"`{name}`", name, cls.__doc__)
                                                            for name, cls in SECTIONS.items()]
    for title, section, doc in groups:
        lines += [f"## {title}", "", _markdown(doc or ""), "",
                  "| key | flag | type | default | valid | resume | description |", "|---|---|---|---|---|---|---|"]
        lines += [_row(o) for key, o in options.items() if o.section == section]
        lines.append("")
    return "\n".join(lines)


def write_reference(path=PAGE) -> Path:
    from vlsm.utils import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, render_reference())
    return path


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) > 1:
        print(write_reference(sys.argv[1]))
    else:
        sys.stdout.write(render_reference())
