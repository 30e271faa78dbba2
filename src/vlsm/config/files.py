"""Experiments in and out: YAML files, ``--set KEY=VALUE`` overrides, lone values, and the resume check's diff.
Every value goes through the schema (:mod:`vlsm.config.schema`); a problem is one ``ValueError`` line
(:mod:`vlsm.config.messages`)."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Iterable

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from vlsm.config.messages import one_line
from vlsm.config.schema import SECTIONS, ExperimentConfig, all_options, get_option
from vlsm.utils import write_text_atomic


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but ``1e-3`` is a number as in YAML 1.2 and JSON (YAML 1.1, which
    PyYAML follows, reads a float without a dot as text, so ``lr: 1e-3`` would be refused)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_yaml(text: str):
    """Parse YAML text the way experiment files and ``--set`` values are read."""
    return yaml.load(text, Loader=_YamlLoader)  # safe: a SafeLoader subclass


def validate_config(values: dict, where: str = "config") -> ExperimentConfig:
    """An experiment from its dict form, checked against the schema; errors name ``where``, the key and what is
    valid."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping at the top level, got {type(values).__name__}")
    try:
        return ExperimentConfig.model_validate(values)
    except ValidationError as err:
        raise ValueError(one_line(err, where)) from None


#: the dict form of an experiment (the name older code and tests use)
config_from_dict = validate_config


def load_config(path: str | Path) -> ExperimentConfig:
    """An experiment file; relative dataset paths stay relative to where vlsm runs (like the command line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {path} not found")
    try:
        raw = read_yaml(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML{where}: {problem}") from None
    cfg = validate_config({} if raw is None else raw, where=str(path))
    cfg._source = str(path)
    return cfg


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def parse_override(text: str) -> tuple[str, object]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE)`` with VALUE read as YAML (numbers, booleans, null, lists,
    mappings): ``"train.epochs=5"`` -> ``("train.epochs", 5)``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, read_yaml(value)
    except yaml.YAMLError as err:
        raise ValueError(f"{text!r}: the value is not valid YAML ({err})") from err


def apply_overrides(cfg: ExperimentConfig, pairs: Iterable[tuple[str, object]], *,
                    where: str = "override") -> ExperimentConfig:
    """A copy of ``cfg`` with each ``(dotted key, value)`` of ``pairs`` set, in order, then checked as a whole.

    Keys are ``SECTION.FIELD`` (``train.epochs``, ``data.paths``, ``model.name``), a top-level field
    (``name``, ``out``), or ``model.overrides.OPTION`` for a create_model option
    (``model.overrides.image_size``; nested options take a mapping value:
    ``("model.overrides.clipseg", {"pretrained": ...})``). Errors name ``where`` (a file, ``--set``, or
    :data:`~vlsm.config.options.COMMAND_LINE`: then the flag), the key and what is valid. ``cfg`` itself is
    never changed.
    """
    # (to_dict leaves vlsm tune's search and vlsm sweep's sweep sections out)
    values = {**cfg.to_dict(), "search": cfg.search.model_dump(), "sweep": cfg.sweep.model_dump()}
    for key, value in pairs:
        _set(values, key, value, where)
    new = validate_config(values, where)
    new._source = cfg.source
    return new


def _set(values: dict, key: str, value, where: str) -> None:
    head, *rest = key.split(".")
    if head in SECTIONS and rest:
        section, name = values[head], rest[0]
        if (head, name) == ("model", "overrides") and len(rest) > 1:
            # one create_model option, named by the rest of the key (as `--set KEY=VALUE` names it)
            section["overrides"] = {**section["overrides"], ".".join(rest[1:]): value}
        elif len(rest) > 1 and name in SECTIONS[head].model_fields:
            raise ValueError(f"{where}: {key}: {head}.{name} has no sub-keys; set {head}.{name} itself")
        else:
            section[name] = value
    elif not rest and head not in SECTIONS:
        values[head] = value
    else:
        tops = [k for k in ExperimentConfig.model_fields if k not in SECTIONS]
        raise ValueError(f"{where}: {key!r}: expected SECTION.KEY with SECTION one of {sorted(SECTIONS)} "
                         f"(e.g. train.epochs), or one of {tops}")


@lru_cache(maxsize=None)
def _adapter(key: str) -> TypeAdapter:
    option = get_option(key)
    metadata = option.field.metadata
    hint = Annotated[(option.annotation, *metadata)] if metadata else option.annotation
    return TypeAdapter(hint, config=ConfigDict(strict=True))


def check_option(key: str, value, where: str = "config"):
    """``value`` checked as the option ``key`` (``eval.threshold``) on its own (rules between options are
    checked with the whole experiment); returns it as the schema holds it. Errors are one line naming ``where``
    and the key (the flag, when ``where`` is the command line)."""
    try:
        return _adapter(key).validate_python(value)
    except ValidationError as err:
        raise ValueError(one_line(err, where, key=key)) from None


def resumable_keys() -> tuple[str, ...]:
    """The options a resumed run may change: how long it trains, how it reads its data, shows progress and
    keeps its checkpoints, never what it computes (the schema's ``resumable`` fields)."""
    return tuple(key for key, option in all_options().items() if option.resumable)


def config_changes(old: ExperimentConfig, new: ExperimentConfig, *, ignore: Iterable[str] = ()) -> list[str]:
    """``["train.lr: 0.001 -> 0.01", ...]``: the dotted keys whose values differ between two experiments
    (keys in ``ignore`` left out)."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in d.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict) and value and dotted != "model.overrides":
                out.update(flat(value, dotted + "."))
            else:
                out[dotted] = value
        return out

    a, b = flat(old.to_dict()), flat(new.to_dict())
    skip = set(ignore)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in skip and a.get(k) != b.get(k)]


__all__ = ["apply_overrides", "check_option", "config_changes", "config_from_dict", "load_config", "parse_override",
           "read_yaml", "resumable_keys", "save_config", "validate_config"]
