"""Presets and architecture files are data: JSON files in ``vlsm/models/configs/``, read here only.

* ``<table>.json`` of presets: ``{preset name: {field: value}}`` (``unet_d.json``, ``cris.json``,
  ``baselines.json``: ``{preset: {model: {...}}}``, ``adapters.json``: the ensembles' data adapters,
  ``vlsm_models.json``: ``{model: {preset: {...}}}`` for CLIPSeg and BiomedCLIPSeg);
* architecture files a preset names (``clipseg_tiny.json``, ``biomedclip_open_clip.json``, ...).

Keys starting with ``_`` (``_comment``) are notes for the reader and are dropped when a file is read.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any


def configs_dir() -> Path:
    """The folder with the JSON files shipped with the package."""
    return Path(__file__).resolve().parent / "configs"


def load_config_json(name: str) -> dict:
    """A shipped JSON file (``_comment`` keys dropped); a fresh copy on every call."""
    return json.loads(json.dumps(_read(name)))


@lru_cache(maxsize=None)
def _read(name: str) -> Any:
    path = configs_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"shipped model config {path} is missing: the vlsm installation is incomplete "
                                f"(reinstall the package; models/configs/*.json must be included)")
    return _strip_comments(json.loads(path.read_text()))


def _strip_comments(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _strip_comments(v) for k, v in data.items() if not k.startswith("_")}
    if isinstance(data, list):
        return [_strip_comments(v) for v in data]
    return data


def preset_names(table: str, model: str | None = None) -> tuple:
    """The presets of ``table`` (of ``model`` within it, for the tables keyed by model first)."""
    data = _read(table)
    return tuple(data[model] if model is not None else data)


def preset(table: str, name: str, *, model: str, within: str | None = None) -> dict:
    """Preset ``name`` of ``table`` (``table[within][name]`` when given), refused in one line naming the valid
    presets of ``model``."""
    data = load_config_json(table)
    if within is not None:
        if within not in data:
            raise ValueError(f"no presets for {within!r} in {table}; known: {', '.join(data)}")
        data = data[within]
    if name not in data:
        raise ValueError(f"model {model!r} has no preset {name!r}; valid presets: {', '.join(data)}")
    return data[name]


__all__ = ["configs_dir", "load_config_json", "preset", "preset_names"]
