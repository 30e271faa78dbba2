"""What the schema says about each option besides its type: :func:`option` declares a field, :class:`Option`
reads it back (dotted key, flag, help, bounds, choices, whether ``--resume`` may change it, model-card text).

Everything that handles an option by name — the command-line flags (:mod:`vlsm.config.flags`), the one-line
errors (:mod:`vlsm.config.messages`), the resume check, the reference page (:mod:`vlsm.config.reference`) and
the model card's recipe — reads it from here, so a new option is one field.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, Literal, Optional, Union

import annotated_types
from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo


def option(default: Any = ..., help: str = "", *, flag: Union[str, tuple, None] = None, resumable: bool = False,
           card: Optional["Card"] = None, parse: Optional[Callable[[str], Any]] = None,
           metavar: Optional[str] = None, valid: Optional[str] = None, default_factory: Optional[Callable[[], Any]] = None, **bounds) -> Any:
    """A schema field: ``default``, ``help`` (one sentence), ``flag`` (the command-line flag(s), first is the
    name shown: ``"--patience"``; a ``bool`` field's flag gets its ``--no-`` twin), ``resumable`` (``--resume``
    may change it: how long or how a run trains, never what it computes), ``card`` (how the model card's
    recipe states it: a :class:`Card`), ``parse`` (how the flag's text becomes a value, when not the
    field's type), ``valid`` (what a valid value is, in words, where a validator decides it) and pydantic's bounds (``ge``, ``gt``, ``le``, ``lt``)."""
    extra = {"flag": (flag,) if isinstance(flag, str) else flag, "resumable": resumable, "card": card,
             "parse": parse, "metavar": metavar, "valid": valid}
    if default_factory is not None:
        return Field(default_factory=default_factory, description=help, json_schema_extra=extra, **bounds)
    return Field(default, description=help, json_schema_extra=extra, **bounds)


@dataclasses.dataclass(frozen=True)
class Card:
    """How the model card's recipe states a field: ``label``; ``values`` maps a value to its words (else the
    value itself is shown); ``when`` shows the row only while sibling fields have these values."""

    label: str
    values: Optional[dict] = None
    when: Optional[dict] = None

    def text(self, value) -> str:
        if self.values is not None and value in self.values:
            return self.values[value]
        return "none" if value is None else str(value)


@dataclasses.dataclass(frozen=True)
class Option:
    """One field of the schema, by dotted key (``train.epochs``)."""

    key: str
    field: FieldInfo

    def _extra(self, name: str):
        extra = self.field.json_schema_extra
        return extra.get(name) if isinstance(extra, dict) else None

    @property
    def name(self) -> str:
        return self.key.rsplit(".", 1)[-1]

    @property
    def section(self) -> str:
        return self.key.rsplit(".", 1)[0] if "." in self.key else ""

    @property
    def help(self) -> str:
        return self.field.description or ""

    @property
    def flags(self) -> tuple:
        return self._extra("flag") or ()

    @property
    def flag(self) -> Optional[str]:
        """The flag's name as messages give it (``--patience``), or None."""
        return self.flags[0] if self.flags else None

    @property
    def resumable(self) -> bool:
        return bool(self._extra("resumable"))

    @property
    def card(self) -> Optional[Card]:
        return self._extra("card")

    @property
    def parse(self):
        return self._extra("parse")

    @property
    def metavar(self):
        return self._extra("metavar")

    @property
    def annotation(self):
        return self.field.annotation

    @property
    def default(self):
        return self.field.get_default(call_default_factory=True)

    @property
    def is_switch(self) -> bool:
        return self.annotation is bool

    @property
    def is_list(self) -> bool:
        return typing.get_origin(_without_none(self.annotation)) is list

    @property
    def choices(self) -> Optional[tuple]:
        """The values of a ``Literal`` field (None for other fields)."""
        hint = _without_none(self.annotation)
        return typing.get_args(hint) if typing.get_origin(hint) is Literal else None

    def label(self, where: Optional[str] = None) -> str:
        """How an error names this option: the flag with its key on the command line (``--epochs
        (train.epochs)``), else ``where: key`` (``exp.yaml: train.epochs``, ``--set: ...``)."""
        if where == COMMAND_LINE and self.flag:
            return f"{self.flag} ({self.key})"
        return f"{where}: {self.key}" if where else self.key

    def bounds(self) -> str:
        """The valid range in words (``at least 1``, ``between 0 and 1 (exclusive)``), or ``""``."""
        return describe_bounds(self.field.metadata)

    def valid(self) -> str:
        """What a valid value is, in words: its choices, its range, or its type."""
        if self._extra("valid"):
            return self._extra("valid")
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        return self.bounds() or type_words(self.annotation)


#: ``where`` of values given as flags: errors then name the flag (:meth:`Option.label`)
COMMAND_LINE = "command line"


def describe_bounds(metadata) -> str:
    """``ge=1`` -> ``at least 1``; ``ge=0`` -> ``0 or more``; ``gt=0`` -> ``positive``; ``gt=0, lt=1`` ->
    ``between 0 and 1 (exclusive)``."""
    low = high = None
    for m in metadata:
        if isinstance(m, (annotated_types.Ge, annotated_types.Gt)):
            low = m
        elif isinstance(m, (annotated_types.Le, annotated_types.Lt)):
            high = m
    if low is None and high is None:
        return ""
    lo = None if low is None else getattr(low, "ge", getattr(low, "gt", None))
    hi = None if high is None else getattr(high, "le", getattr(high, "lt", None))
    if low is not None and high is not None:
        inclusive = isinstance(low, annotated_types.Ge) and isinstance(high, annotated_types.Le)
        exclusive = isinstance(low, annotated_types.Gt) and isinstance(high, annotated_types.Lt)
        tail = " (inclusive)" if inclusive else " (exclusive)" if exclusive else (
            f" (above {lo}, at most {hi})" if isinstance(high, annotated_types.Le) else f" (at least {lo}, below {hi})")
        return f"between {lo} and {hi}{tail}"
    if low is not None:
        if isinstance(low, annotated_types.Gt):
            return "positive" if lo == 0 else f"above {lo}"
        return "0 or more" if lo == 0 else f"at least {lo}"
    return f"at most {hi}" if isinstance(high, annotated_types.Le) else f"below {hi}"


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "a mapping", type(None): "null", Any: "any value"}


def _members(hint) -> Optional[tuple]:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return typing.get_args(hint)
    return None


def _without_none(hint):
    members = _members(hint)
    if members is None:
        return hint
    rest = [m for m in members if m is not type(None)]
    return rest[0] if len(rest) == 1 else Union[tuple(rest)]


def type_words(hint) -> str:
    """How a type reads in a message: ``Optional[int]`` -> ``an integer or null``."""
    if typing.get_origin(hint) is typing.Annotated:
        return type_words(typing.get_args(hint)[0])
    members = _members(hint)
    if members is not None:
        return " or ".join(type_words(m) for m in members)
    if typing.get_origin(hint) is Literal:
        return " or ".join(repr(v) for v in typing.get_args(hint))
    hint = typing.get_origin(hint) or hint
    if isinstance(hint, type) and issubclass(hint, BaseModel) or dataclasses.is_dataclass(hint):
        return "a mapping"
    return _TYPE_WORDS.get(hint, getattr(hint, "__name__", str(hint)))


__all__ = ["COMMAND_LINE", "Card", "Option", "describe_bounds", "option", "type_words"]
