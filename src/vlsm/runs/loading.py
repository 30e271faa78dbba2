"""Loading a trained model from a run folder, its ``model/`` folder or a training checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from vlsm.runs.checkpoints import FROZEN_CHECKPOINT_KEY, model_state, read_training_checkpoint
from vlsm.runs.layout import RunFolder
from vlsm.runs.names import CHECKPOINT_SUFFIX, CHECKPOINTS_DIR, MODEL_DIR

PathLike = Union[str, Path]


def load_trained_model(path: PathLike, map_location: str = "cpu", *, trust_checkpoint: bool = False):
    """Load a model from a run folder, its ``model/`` folder, or a Lightning ``.ckpt``.

    Returns ``(model, cfg)`` where ``cfg`` is the run's ExperimentConfig when one is found (else None).
    A checkpoint is read with ``weights_only=True``; one that needs arbitrary Python objects is refused
    unless ``trust_checkpoint`` (loading it could run code).
    """
    from vlsm.models.checkpoint import checkpoints_trusted

    with checkpoints_trusted(trust_checkpoint):
        return _load_trained_model(Path(path), map_location)


def _load_trained_model(path: Path, map_location: str):
    from vlsm.models import load_pretrained
    from vlsm.models.base import SPEC_FILE

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a run folder, a run's {MODEL_DIR}/ folder or a "
                                f"{CHECKPOINT_SUFFIX} file")
    if path.is_dir():
        if (path / SPEC_FILE).is_file():
            return load_pretrained(path, map_location), RunFolder(path.parent).read_config()
        run = RunFolder(path)
        if (run.model_dir / SPEC_FILE).is_file():
            return load_pretrained(run.model_dir, map_location), run.read_config()
        if run.last_checkpoint.is_file():
            raise FileNotFoundError(f"{path} is an unfinished run (no {MODEL_DIR}/ folder yet): resume it with "
                                    f"`vlsm train -c {run.config_file} --resume`, or pass "
                                    f"{run.last_checkpoint} explicitly")
        raise FileNotFoundError(f"{path} holds no trained model: expected {SPEC_FILE}, {MODEL_DIR}/{SPEC_FILE} "
                                f"or {CHECKPOINTS_DIR}/*{CHECKPOINT_SUFFIX}")
    if path.suffix != CHECKPOINT_SUFFIX:
        raise ValueError(f"{path}: expected a {CHECKPOINT_SUFFIX} checkpoint, a run folder or a model folder")
    return _model_from_checkpoint(path, map_location)


def _model_from_checkpoint(path: Path, map_location: str):
    from vlsm.models import ModelSpec, create_model
    from vlsm.models.checkpoint import load_state_dict_strict
    from vlsm.models.registry import restore_slim

    ckpt = read_training_checkpoint(path)
    spec = (ckpt.get("hyper_parameters") or {}).get("model_spec")
    if not spec:
        raise ValueError(f"{path} is not a vlsm training checkpoint (no model_spec in hyper_parameters); "
                         f"for a reference-code checkpoint use `vlsm convert-checkpoint`")
    run = RunFolder(path.parent.parent)
    state = model_state(ckpt["state_dict"])
    if ckpt.get(FROZEN_CHECKPOINT_KEY) is not None:
        # a slim checkpoint: the frozen weights come from their sources (digest checked)
        return restore_slim(ckpt[FROZEN_CHECKPOINT_KEY], state, source=str(path)).to(map_location), run.read_config()
    # the checkpoint holds every weight: rebuild the architecture only, without backbone sources
    spec = ModelSpec.from_dict(spec).without_weights()
    # the tokenizer files sit in the run's model/ folder (or tokenizer/ while training runs)
    saved = next((d for d in (run.model_dir, run.tokenizer_dir) if d.is_dir()), None)
    model = create_model(spec.name, pretrained=None, preset=spec.preset, variant=spec.variant,
                         model_dir=str(saved) if saved else None, **spec.overrides)
    load_state_dict_strict(model, state, source=str(path), model_name=spec.name)
    return model.to(map_location), run.read_config()


__all__ = ["load_trained_model"]
