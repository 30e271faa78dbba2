"""pydantic's validation errors as the one line a user reads: where (the file, ``--set``, the flag), the dotted
key, what is valid (the range, the choices, the type, or the valid keys) and what was given::

    exp.yaml: train.epochs: expected an integer, got '5' (str)
    --epochs (train.epochs) must be at least 1, got 0
    --set: train: unknown key(s) ['epoch']; valid keys: ['allow_partial_weights', ...]
"""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ValidationError

from vlsm.config.options import Option, type_words
from vlsm.config.schema import SECTIONS, ExperimentConfig

_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_CUSTOM_ERRORS = {"choice", "related", "value_error"}


def _model_at(parent: tuple) -> type[BaseModel]:
    return SECTIONS[parent[0]] if parent and parent[0] in SECTIONS else ExperimentConfig


def _prefix(where: str, parent: tuple) -> str:
    section = ".".join(str(p) for p in parent)
    return ": ".join(p for p in (where, section) if p) + (": " if where or section else "")


def _unknown_keys(errors: list, where: str) -> str:
    parent = tuple(errors[0]["loc"][:-1])
    names = sorted(str(e["loc"][-1]) for e in errors if tuple(e["loc"][:-1]) == parent)
    valid = sorted(_model_at(parent).model_fields)
    return f"{_prefix(where, parent)}unknown key(s) {names}; valid keys: {valid}"


def _option_at(loc: tuple, error: dict) -> tuple[Optional[Option], tuple]:
    """The option an error is about, and the rest of its location (a list index, a union member)."""
    from vlsm.config.schema import all_options

    options = all_options()
    parts = [str(p) for p in loc]
    if error["type"] == "related":  # a rule between fields, raised by the section: ctx names the field
        parts = [*parts, error["ctx"]["key"]]
    for n in (2, 1):
        key = ".".join(parts[:n])
        if len(parts) >= n and key in options and (n == 2 or parts[0] not in SECTIONS):
            return options[key], tuple(loc[n:])
    return None, tuple(loc)


def _describe(error: dict, option: Optional[Option], rest: tuple) -> str:
    """`` must be at least 1, got 0`` / ``: expected an integer, got '5' (str)``: what follows the label."""
    value, kind = error.get("input"), error["type"]
    got = f"got {value!r}"
    if kind in _CUSTOM_ERRORS:
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("ctx", {}).get("value", value)
        tail = f", got {value!r}" if message.startswith("must") else ""
        return (" " if message.startswith("must") else ": ") + message + tail
    if option is not None and kind in _BOUND_ERRORS:
        return f" must be {option.bounds()}, {got}"
    if option is not None and kind == "literal_error" and option.choices:
        return f" must be one of {', '.join(str(c) for c in option.choices)}, {got}"
    if rest and isinstance(rest[0], int):  # an item of a list
        return f": item {rest[0]}: expected {_item_words(option)}, {got} ({type(value).__name__})"
    expected = type_words(option.annotation) if option is not None else "a mapping"
    return f": expected {expected}, {got} ({type(value).__name__})"


def _item_words(option: Optional[Option]) -> str:
    import typing

    args = typing.get_args(option.annotation) if option is not None else ()
    return type_words(args[0]) if args else "a string"


def one_line(err: ValidationError, where: str = "", key: Optional[str] = None) -> str:
    """The first problem of ``err`` in one line, naming ``where`` and the dotted key. ``key``: the option a
    lone value was checked for (:func:`vlsm.config.check_option`)."""
    errors = err.errors(include_url=False)
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return _unknown_keys(unknown, where)
    error = errors[0]
    loc = tuple(key.split(".")) + tuple(error["loc"]) if key else tuple(error["loc"])
    option, rest = _option_at(loc, error)
    if option is not None:
        return option.label(where) + _describe(error, option, rest)
    return _prefix(where, loc).rstrip(": ") + _describe(error, None, ())


__all__ = ["one_line"]
