"""The search space of ``vlsm tune``: ``KEY=SPEC`` entries, each checked against the experiment schema.

A key is an option of the model, data, train or eval sections that holds one value (``train.lr``,
``train.batch_size``, ``data.prompt``, ``eval.threshold``) or a create_model option (``model.overrides.NAME``);
a spec is one of::

    log(a,b)          a number drawn log-uniformly between a and b (whole numbers for an integer option)
    uniform(a,b)      a number drawn uniformly between a and b
    int(a,b)          a whole number from a to b; int(a,b,step) in steps of step
    choice(v1,v2,...) one of the values (YAML: 8, 1e-3, true, p1); in a YAML file a list means the same

Both ends of a range and every choice are checked as values of the option (its type, bounds and choices), so a
space that could draw a setting the schema refuses is refused before the study starts, in one line naming the
entry.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Union

from vlsm.config import all_options, check_option, read_yaml
from vlsm.config.options import _without_none

#: what a spec may be, in words (every message about a bad spec names them)
FORMS = "log(a,b), uniform(a,b), int(a,b), int(a,b,step) or choice(v1,v2,...)"
EXAMPLE = "train.lr=log(1e-5,1e-3)"
#: the sections whose options a search may set (name, out and the search itself are not settings of a trial)
SECTIONS = ("model", "data", "train", "eval")
#: options that say how a run is made, not what it computes (or what a search compares): never searched
_NOT_SEARCHED = {"train.monitor", "train.device", "train.devices", "train.num_nodes", "train.fast_dev_run",
                 "train.overfit_batches", "train.allow_partial_weights", "data.check", "data.skip_bad",
                 "data.train_split", "data.val_split", "data.test_split"}
_SPEC = re.compile(r"^\s*(log|uniform|int|choice)\s*\((.*)\)\s*$", re.S)
_MODEL_OPTION = "model.overrides."


@dataclass(frozen=True)
class Param:
    """One dimension of the space: ``kind`` is log, uniform, int or choice."""

    key: str
    kind: str
    low: Union[int, float, None] = None
    high: Union[int, float, None] = None
    step: Optional[int] = None
    choices: tuple = ()
    integer: bool = False  # a log range over whole numbers

    @property
    def spec(self) -> str:
        """The entry's canonical text (what the study records and compares)."""
        if self.kind == "choice":
            return "choice(" + ", ".join(_text(c) for c in self.choices) + ")"
        ends = [self.low, self.high] + ([self.step] if self.step not in (None, 1) else [])
        return f"{self.kind}(" + ", ".join(_text(v) for v in ends) + ")"

    def describe(self) -> str:
        if self.kind == "choice":
            return f"one of {', '.join(_text(c) for c in self.choices)}"
        scale = {"log": "log-uniform", "uniform": "uniform", "int": "whole numbers"}[self.kind]
        step = f" in steps of {self.step}" if self.step not in (None, 1) else ""
        whole = " (whole numbers)" if self.integer and self.kind == "log" else ""
        return f"{scale}{whole} from {_text(self.low)} to {_text(self.high)}{step}"

    def suggest(self, trial) -> Any:
        """This dimension's value for an Optuna ``trial`` (named by the key)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int" or self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=self.step or 1,
                                     log=self.kind == "log")
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.kind == "log")


def _text(value) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value) if isinstance(value, str) and not re.fullmatch(r"[\w.\-]+", value) else str(value)


def tunable_keys() -> list[str]:
    """The schema options a search may set: those of the model, data, train and eval sections that hold one
    value (a number, a switch, a choice or a text) and change what a run computes (not the resumable ones but
    train.epochs, not the device, the monitor or the debugging switches), in schema order."""
    from vlsm.config import resumable_keys

    skip = _NOT_SEARCHED | (set(resumable_keys()) - {"train.epochs"})
    keys = []
    for key, option in all_options().items():
        if key in skip:
            continue
        hint = _without_none(option.annotation)
        scalar = option.choices is not None or _base(hint) in (int, float, bool, str) or _is_number(hint)
        if option.section in SECTIONS and scalar and not option.is_list:
            keys.append(key)
    return keys


def _base(hint):
    import typing

    if typing.get_origin(hint) is typing.Annotated:
        return _base(typing.get_args(hint)[0])
    return hint


def _is_number(hint) -> bool:
    import typing

    args = typing.get_args(_without_none(_base(hint)))
    return bool(args) and all(a in (int, float, type(None)) for a in args)


def parse_entry(text: str, where: str = "--space") -> tuple[str, Any]:
    """``"KEY=SPEC"`` -> ``(KEY, SPEC)``; anything else is one line naming the entry and the forms."""
    key, sep, spec = str(text).partition("=")
    if not sep or not key.strip() or not spec.strip():
        raise ValueError(f"{where} {text!r}: expected KEY=SPEC with SPEC one of {FORMS}, e.g. {where} {EXAMPLE}")
    return key.strip(), spec.strip()


def parse_space(entries: Mapping[str, Any], where: str = "--space") -> list[Param]:
    """The :class:`Param` of each ``{key: spec}`` entry (a spec is text or, from a YAML file, a list of choices),
    checked against the schema; ``where`` names the entries' origin in messages (``--space``, ``exp.yaml:
    search.space``)."""
    return [parse_param(key, spec, where) for key, spec in entries.items()]


def parse_param(key: str, spec: Any, where: str = "--space") -> Param:
    """One entry of the space, checked (see the module's docstring)."""
    entry = f"{where} {key}={spec}" if not isinstance(spec, list) else f"{where} {key}: {spec}"
    option = _option_of(key, where)
    if isinstance(spec, list):
        kind, args = "choice", spec
    else:
        found = _SPEC.match(str(spec)) if isinstance(spec, str) else None
        if found is None:
            example = f"{where} {EXAMPLE}" if where == "--space" else \
                "train.lr: log(1e-5,1e-3); in a YAML {...} mapping, quote a spec with a comma and a space"
            raise ValueError(f"{entry}: expected {FORMS} (e.g. {example})")
        kind, args = found.group(1), _arguments(found.group(2), entry)
    if kind == "choice":
        return _choice(key, args, entry, option)
    return _range(key, kind, args, entry, option)


def _option_of(key: str, where: str):
    """The schema option of ``key`` (None for a create_model option, which the schema does not describe)."""
    if key.startswith(_MODEL_OPTION) and len(key) > len(_MODEL_OPTION):
        return None
    keys = tunable_keys()
    if key not in keys:
        raise ValueError(f"{where} {key}: not an option a search can set; use one of {', '.join(keys)} or "
                         f"{_MODEL_OPTION}NAME (a create_model option)")
    return all_options()[key]


def _arguments(text: str, entry: str) -> list:
    if not text.strip():
        return []
    try:
        values = read_yaml(f"[{text}]")
    except Exception:  # noqa: BLE001 - yaml's errors: the entry is simply malformed
        raise ValueError(f"{entry}: cannot read its values; expected {FORMS} (e.g. {EXAMPLE})") from None
    return list(values)


def _check(key: str, value, entry: str, option) -> None:
    """``value`` as a value of the option, or one line naming the entry (a create_model option takes any)."""
    if option is not None:
        check_option(key, value, where=entry)


def _choice(key: str, values: list, entry: str, option) -> Param:
    if not values:
        raise ValueError(f"{entry}: choice() needs at least one value, e.g. choice(8, 16, 32)")
    for value in values:
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"{entry}: {value!r} is not a single value (a number, true/false, null or a text)")
        _check(key, value, entry, option)
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f"{entry}: a value is listed twice")
    return Param(key, "choice", choices=tuple(values))


def _range(key: str, kind: str, args: list, entry: str, option) -> Param:
    sizes = (2, 3) if kind == "int" else (2,)
    if len(args) not in sizes or not all(_number(a) for a in args):
        wanted = "int(a,b) or int(a,b,step) with whole numbers" if kind == "int" else f"{kind}(a,b) with two numbers"
        raise ValueError(f"{entry}: expected {wanted}")
    low, high, step = args[0], args[1], args[2] if len(args) == 3 else None
    hint = _without_none(option.annotation) if option is not None else None
    whole = _base(hint) is int
    if option is not None and (option.choices or _base(hint) in (bool, str)):
        raise ValueError(f"{entry}: {key} is not a number; search it with choice(...)")
    if kind == "int" and not all(isinstance(a, int) for a in args):
        raise ValueError(f"{entry}: int(a,b[,step]) takes whole numbers")
    if kind == "uniform" and whole:
        raise ValueError(f"{entry}: {key} takes whole numbers; use int(a,b), int(a,b,step) or log(a,b)")
    if kind == "log" and whole and not (isinstance(low, int) and isinstance(high, int)):
        raise ValueError(f"{entry}: {key} takes whole numbers; give log(a,b) whole ends")
    if not low < high:
        raise ValueError(f"{entry}: the low end must be below the high end")
    if kind == "log" and low <= 0:
        raise ValueError(f"{entry}: a log range needs a positive low end")
    if step is not None and (step < 1 or (high - low) % step):
        raise ValueError(f"{entry}: the step must be at least 1 and divide high - low")
    for end in (low, high):
        _check(key, end, entry, option)
    return Param(key, kind, low, high, step, integer=kind == "log" and isinstance(low, int) and isinstance(high, int)
                 and (whole or option is None))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def space_of(search_space: Mapping[str, Any], source: Optional[str], entries: Iterable[str] = ()) -> list[Param]:
    """The space of a search: the experiment's ``search.space`` (``source``: its file, for messages) with the
    ``--space KEY=SPEC`` ``entries`` on top (an entry replaces the file's for its key). Empty: one line."""
    file_where = f"{source}: search.space" if source else "search.space"
    params = {p.key: p for p in parse_space(dict(search_space), file_where)}
    for text in entries:
        key, spec = parse_entry(text)
        params[key] = parse_param(key, spec)
    if not params:
        raise ValueError(f"nothing to search: give --space KEY=SPEC (e.g. --space {EXAMPLE}) or a search.space "
                         f"section in the experiment file; SPEC is one of {FORMS}")
    return list(params.values())


__all__ = ["EXAMPLE", "FORMS", "Param", "parse_entry", "parse_param", "parse_space", "space_of", "tunable_keys"]
