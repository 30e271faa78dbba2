"""Command-line flags derived from the schema, for ``vlsm train`` and every command that takes the same values
(thresholds, batch sizes, devices, pixel limits)::

    add_option_flags(parser, ["eval.threshold", "eval.batch_size", "data.max_pixels", "train.device"])
    values = option_values(args, ["eval.threshold", ...])   # {"eval.threshold": 0.5, ...}, checked

A flag's name, type, choices and help come from its schema field; a ``bool`` field is a switch pair
(``--augment/--no-augment``). Values are checked when read (:func:`option_values`), so a bad one is one line
naming the flag and what is valid (``--threshold (eval.threshold) must be between 0 and 1 (exclusive), got
1.5``) instead of argparse's usage text.
"""
from __future__ import annotations

import argparse
import typing
from typing import Iterable, Union

from vlsm.config.files import check_option
from vlsm.config.options import COMMAND_LINE, Option, _without_none
from vlsm.config.schema import get_option


def _text_type(option: Option):
    """How a flag's text becomes a value: the field's ``parse``, else its scalar type (str for a choice)."""
    if option.parse is not None:
        return option.parse
    hint = _without_none(option.annotation)
    if typing.get_origin(hint) is list:
        hint = (typing.get_args(hint) or (str,))[0]
    if typing.get_origin(hint) is Union:  # e.g. int or float: read as a number
        hint = float
    return hint if hint in (int, float) else str


def _help(option: Option, defaults: bool) -> str:
    text = option.help.replace("%", "%%")
    if option.is_switch:  # (argparse adds the default of a switch pair itself)
        return text if defaults else f"{text} ({option.key}; default {option.default})"
    default = "%(default)s" if defaults else option.default
    return f"{text} ({option.key}; default {default})"


def add_option_flags(parser, keys: Iterable[str], *, defaults: bool = True) -> None:
    """Add the flags of the schema options ``keys`` (dotted) to ``parser`` (or an argument group).

    ``defaults``: the flags default to the schema's defaults (a command without an experiment file);
    ``False``: they default to ``None``, "not given", so they override an experiment file only when given
    (``vlsm train``). Values are read back, checked, with :func:`option_values`."""
    for key in keys:
        option = get_option(key)
        if not option.flags:
            raise ValueError(f"option {key} has no flag in the schema")
        default = option.default if defaults else None
        if option.is_switch:
            parser.add_argument(*option.flags, action=argparse.BooleanOptionalAction, default=default,
                                help=_help(option, defaults))
            continue
        choices = option.choices
        metavar = option.metavar or ("{" + ",".join(str(c) for c in choices) + "}" if choices else None)
        parser.add_argument(*option.flags, type=_text_type(option), default=default, metavar=metavar,
                            nargs="+" if option.is_list else None, help=_help(option, defaults))


def flag_dest(key: str) -> str:
    """The attribute of argparse's namespace that holds option ``key``'s flag (``--batch-size`` ->
    ``batch_size``)."""
    long = [f for f in get_option(key).flags if f.startswith("--")]
    return (long or get_option(key).flags)[0].lstrip("-").replace("-", "_")


def option_values(args, keys: Iterable[str]) -> dict:
    """``{dotted key: value}`` of the flags of ``keys`` that hold a value, each checked against the schema
    (one ``ValueError`` line naming the flag and what is valid). A flag left at ``None``, ``""`` or no items is
    left out: with ``defaults=False`` that is a flag not given."""
    values = {}
    for key in keys:
        value = getattr(args, flag_dest(key), None)
        if value is None or value == "" or value == []:
            continue
        values[key] = check_option(key, value, COMMAND_LINE)
    return values


__all__ = ["add_option_flags", "flag_dest", "option_values"]
