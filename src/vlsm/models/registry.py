"""The model registry: one name -> one builder. ``create_model`` is the only way models are built,
and :func:`load_pretrained` rebuilds a saved one through it.

Model modules register themselves with :func:`register_model` (with their reference-checkpoint
converter, when the reference code has the model); they are imported lazily on first use so that
``import vlsm`` stays fast and an optional dependency only matters for its own model.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from vlsm.models.base import INTERPOLATIONS, SPEC_FILE, WEIGHTS_FILE, ModelSpec, Preprocess, SegmentationModel

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
    # reference VLSM-Ensemble state dict (unwrapped) -> ours, or None when the reference has no such model
    convert_reference: Optional[Callable[[Mapping], dict]] = None


_REGISTRY: dict[str, ModelEntry] = {}
_loaded = False


def register_model(name: str, *, description: str, presets=("paper", "tiny"), variants=(),
                   default_variant: Optional[str] = None, uses_text: bool = False, paper_name: str = "",
                   convert_reference: Optional[Callable[[Mapping], dict]] = None):
    """Decorator: ``builder(*, preset, variant, pretrained, saved, **overrides) -> model``.

    ``saved`` is ``None`` or the :class:`~vlsm.models.folder.SavedModel` of a model folder the model is being
    rebuilt from: ``saved.architecture`` (when not ``None``) is the base the options apply to, in place of the
    preset, ``saved.part(name)`` a composite's part, ``saved.tokenizer_dir`` the tokenizer files; never its
    weights (:func:`load_pretrained` loads those). ``convert_reference`` maps an unwrapped state dict of the reference VLSM-Ensemble code onto
    ``builder(variant="reference")`` (see :func:`vlsm.models.reference.convert_reference_checkpoint`).
    """

    def deco(builder):
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, description, tuple(presets), tuple(variants),
                                     default_variant, uses_text, paper_name or name, convert_reference)
        return builder

    return deco


def check_options(model: str, given: Iterable[str], valid: Iterable[str], hint: str = "") -> None:
    """Every builder's check of its keyword options: unknown ones are refused with the valid ones listed."""
    valid = sorted(set(valid) | set(PREPROCESS_OPTIONS))  # (every model takes those: create_model applies them)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"{model}: unknown option(s) {unknown}; valid options: {', '.join(valid)}"
                         + (f" ({hint})" if hint else ""))


# create_model options every model takes: its input contract as data (timm's pretrained_cfg style), applied
# to the built model's Preprocess. image_mean [0, 0, 0] with image_std [1, 1, 1] = pixels scaled to [0, 1] only.
PREPROCESS_OPTIONS = ("interpolation", "image_mean", "image_std")


def _rgb_triple(model: str, key: str, value, *, positive: bool) -> tuple:
    ok = (isinstance(value, (list, tuple)) and len(value) == 3
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
          and (not positive or all(v > 0 for v in value)))
    if not ok:
        want = "3 positive numbers" if positive else "3 numbers"
        raise ValueError(f"{model}: {key} must be a list of {want} (R, G, B), got {value!r} "
                         f"(e.g. image_mean: [0, 0, 0] and image_std: [1, 1, 1] for pixels scaled to [0, 1] only)")
    return tuple(float(v) for v in value)


def preprocess_with_options(pre: Preprocess, options: Mapping, model: str = "model") -> Preprocess:
    """``pre`` with the :data:`PREPROCESS_OPTIONS` in ``options`` applied, each checked (one line naming
    the option and its valid values)."""
    changes = {}
    if "interpolation" in options:
        value = options["interpolation"]
        if value not in INTERPOLATIONS:
            raise ValueError(f"{model}: interpolation must be one of {', '.join(INTERPOLATIONS)}, got {value!r}")
        changes["interpolation"] = value
    if "image_mean" in options:
        changes["mean"] = _rgb_triple(model, "image_mean", options["image_mean"], positive=False)
    if "image_std" in options:
        changes["std"] = _rgb_triple(model, "image_std", options["image_std"], positive=True)
    return replace(pre, **changes) if changes else pre


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
                 variant: Optional[str] = None, model_dir: Optional[str] = None,
                 tokenizer_dir: Optional[str] = None, allow_partial_weights: bool = False,
                 trust_checkpoint: bool = False, **overrides) -> SegmentationModel:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        pretrained: weight source: ``None`` (random init, fully offline), a Hugging Face hub id
            (``"hf-hub:ORG/NAME"`` or ``"ORG/NAME"``), or a local folder. See ``vlsm.models.weights``.
        preset: ``"paper"`` (the paper's sizes) or ``"tiny"`` (a few layers, for tests and demos).
        variant: for the ensembles, ``"fixed"`` (default) or ``"reference"``.
        model_dir: a saved model folder (written by ``save_pretrained``) whose architecture and tokenizer
            files the model is rebuilt from (its architecture only when it is this model's and ``pretrained``
            is None), or a folder of tokenizer files; :func:`load_pretrained` uses it.
        tokenizer_dir: the former name of ``model_dir``, still accepted.
        allow_partial_weights: load weight files that lack some of the model's tensors (they keep their
            initialisation; a warning names them) instead of failing. A runtime choice: not in ``model.spec``.
        trust_checkpoint: load pickled weight files that need arbitrary Python objects (or TorchScript
            archives such as OpenAI's RN50.pt). Loading them can run code: only for trusted files. Without it
            such files are refused (:class:`~vlsm.models.checkpoint.UntrustedCheckpointError`).
        overrides: model-specific config fields, e.g. ``image_size=224``, and for every model the
            input options of :data:`PREPROCESS_OPTIONS`: ``interpolation`` (the image resize filter,
            one of ``INTERPOLATIONS``), ``image_mean`` and ``image_std`` (3 numbers each).
    """
    from vlsm.models.folder import read_model_folder

    if tokenizer_dir is not None:
        if model_dir is not None and str(model_dir) != str(tokenizer_dir):
            raise ValueError("create_model: pass model_dir= only (tokenizer_dir= is its former name)")
        model_dir = tokenizer_dir
    saved = None if model_dir is None else read_model_folder(model_dir)
    return _create(name, pretrained, preset=preset, variant=variant, saved=saved, overrides=overrides,
                   allow_partial_weights=allow_partial_weights, trust_checkpoint=trust_checkpoint)


def _create(name: str, pretrained: Optional[str], *, preset: str, variant: Optional[str], saved, overrides: Mapping,
            allow_partial_weights: bool = False, trust_checkpoint: bool = False) -> SegmentationModel:
    from vlsm.models.checkpoint import checkpoints_trusted, partial_weights_allowed

    with partial_weights_allowed(allow_partial_weights), checkpoints_trusted(trust_checkpoint):
        return build(name, pretrained, preset=preset, variant=variant, saved=saved, **overrides)


def build(name: str, pretrained: Optional[str] = None, *, preset: str = "paper", variant: Optional[str] = None,
          saved=None, **overrides) -> SegmentationModel:
    """:func:`create_model` from a :class:`~vlsm.models.folder.SavedModel` instead of a folder path (what
    :func:`load_pretrained` and the composites' builders, for their parts, call)."""
    entry = get_entry(name)
    if preset not in entry.presets:
        raise ValueError(f"model {name!r} has no preset {preset!r}; valid presets: {', '.join(entry.presets)}")
    if variant is None:
        variant = entry.default_variant
    elif variant not in entry.variants:
        valid = ", ".join(entry.variants) if entry.variants else "none (leave variant unset)"
        raise ValueError(f"model {name!r} has no variant {variant!r}; valid variants: {valid}")
    if saved is not None:
        saved = saved.for_model(name, pretrained)
    builder_options = {k: v for k, v in overrides.items() if k not in PREPROCESS_OPTIONS}
    model = entry.builder(preset=preset, variant=variant, pretrained=pretrained, saved=saved, **builder_options)
    model.preprocess = preprocess_with_options(model.preprocess, overrides, name)
    model.spec = ModelSpec(name=name, preset=preset, variant=variant, pretrained=pretrained,
                           overrides=dict(overrides))
    return model


def create_from_spec(spec: ModelSpec | Mapping, **runtime: Any) -> SegmentationModel:
    """``create_model`` of a spec (a :class:`ModelSpec` or its dict), weight sources included."""
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(dict(spec))
    return create_model(spec.name, spec.pretrained, preset=spec.preset, variant=spec.variant,
                        **spec.overrides, **runtime)


def restore_slim(record: Mapping, slim_state: Mapping, *, source: str, **runtime: Any) -> SegmentationModel:
    """The model of a slim checkpoint or model folder: rebuilt from the weight sources named in ``record`` (a
    :class:`~vlsm.models.frozen.FrozenSource` dict), frozen tensors checked against its digest, then
    ``slim_state`` (everything else) loaded strictly. Missing or changed sources fail with one line."""
    from vlsm.models.frozen import FrozenSource, restore_frozen

    frozen = FrozenSource.from_dict(record, where=source)
    return restore_frozen(frozen, slim_state, build=lambda spec: create_from_spec(spec, **runtime), source=source)


def load_pretrained(directory: str | Path, map_location: str = "cpu", **runtime: Any) -> SegmentationModel:
    """Rebuild a model written by :meth:`SegmentationModel.save_pretrained` (``runtime`` options such as
    ``allow_partial_weights=True`` or ``trust_checkpoint=True`` go to :func:`create_model`). The folder's own
    files are safetensors and JSON: data only; folders of earlier vlsm versions load too
    (:mod:`vlsm.models.legacy_folders`).

    A slim folder (its spec file has a ``frozen`` record) is rebuilt from the frozen weights' sources, checked
    against their digest (:func:`restore_slim`); a standalone one from its own files only."""
    from vlsm.models.checkpoint import load_state_dict_strict, partial_weights_allowed
    from vlsm.models.folder import read_folder_weights, read_model_folder

    directory = Path(directory)
    if not (directory / SPEC_FILE).is_file():
        raise FileNotFoundError(
            f"{directory} is not a saved vlsm model: {SPEC_FILE} is missing. Point at a folder written "
            f"by `model.save_pretrained(dir)` or at a training run folder's `model/` subfolder.")
    saved = read_model_folder(directory)
    weights = directory / WEIGHTS_FILE
    if saved.frozen is not None:
        model = restore_slim(saved.frozen, read_folder_weights(directory), source=str(directory), **runtime)
        return model.to(map_location)
    spec = ModelSpec.from_dict(saved.spec)
    options = dict(runtime)
    allow, trust = options.pop("allow_partial_weights", False), options.pop("trust_checkpoint", False)
    model = _create(spec.name, None, preset=spec.preset, variant=spec.variant, saved=saved,
                    overrides={**spec.overrides, **options}, allow_partial_weights=allow, trust_checkpoint=trust)
    with partial_weights_allowed(bool(allow)):
        load_state_dict_strict(model, read_folder_weights(directory), source=str(weights), model_name=spec.name)
    return model.to(map_location)
