"""The model registry: one name -> one builder. ``create_model`` is the only way models are built.

Model modules register themselves with :func:`register_model`; they are imported lazily on first
use so that ``import vlsm`` stays fast and an optional dependency only matters for its own model.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

from vlsm.models.base import ModelSpec, SegmentationModel

# Modules that define models; each registers its names at import time.
MODEL_MODULES = (
    "vlsm.models.unet_d",
    "vlsm.models.clipseg",
    "vlsm.models.biomedclipseg",
    "vlsm.models.ensembles",
    "vlsm.models.baselines",
    "vlsm.models.cris",
)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., SegmentationModel]
    description: str
    presets: tuple = ("paper", "tiny")
    variants: tuple = ()
    default_variant: Optional[str] = None
    uses_text: bool = False
    paper_name: str = ""


_REGISTRY: dict[str, ModelEntry] = {}
_loaded = False


def register_model(name: str, *, description: str, presets=("paper", "tiny"), variants=(),
                   default_variant: Optional[str] = None, uses_text: bool = False, paper_name: str = ""):
    """Decorator: ``builder(*, preset, variant, pretrained, tokenizer_dir, **overrides) -> model``."""

    def deco(builder):
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, description, tuple(presets), tuple(variants),
                                     default_variant, uses_text, paper_name or name)
        return builder

    return deco


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for module in MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            # A model module that is not part of this installation is simply absent;
            # a missing third-party dependency inside an existing module is a real error.
            if err.name != module:
                raise
    _loaded = True


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, pretrained: Optional[str] = None, *, preset: str = "paper",
                 variant: Optional[str] = None, tokenizer_dir: Optional[str] = None,
                 **overrides) -> SegmentationModel:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        pretrained: weight source: ``None`` (random init, fully offline), a Hugging Face hub id
            (``"hf-hub:ORG/NAME"`` or ``"ORG/NAME"``), or a local folder. See ``vlsm.models.weights``.
        preset: ``"paper"`` (the paper's sizes) or ``"tiny"`` (a few layers, for tests and demos).
        variant: for the ensembles, ``"fixed"`` (default) or ``"reference"``.
        tokenizer_dir: a folder with tokenizer files (written by ``save_pretrained``).
        overrides: model-specific config fields, e.g. ``image_size=224``.
    """
    entry = get_entry(name)
    if preset not in entry.presets:
        raise ValueError(f"model {name!r} has no preset {preset!r}; valid presets: {', '.join(entry.presets)}")
    if variant is None:
        variant = entry.default_variant
    elif variant not in entry.variants:
        valid = ", ".join(entry.variants) if entry.variants else "none (leave variant unset)"
        raise ValueError(f"model {name!r} has no variant {variant!r}; valid variants: {valid}")
    model = entry.builder(preset=preset, variant=variant, pretrained=pretrained,
                          tokenizer_dir=tokenizer_dir, **overrides)
    model.spec = ModelSpec(name=name, preset=preset, variant=variant, pretrained=pretrained,
                           overrides=dict(overrides))
    return model
