"""``vlsm models``, ``vlsm bench`` and ``vlsm convert-checkpoint`` as functions."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from vlsm.api._common import call_scope, check_at_least
from vlsm.errors import UserError

PathLike = Union[str, Path]


@dataclass
class ModelRow:
    """One registered model (and variant) with its parameter counts at ``preset`` size (None: not counted)."""

    name: str
    variant: Optional[str]
    paper_name: str
    total: Optional[int]
    trainable: Optional[int]
    description: str


def models(names: Optional[Sequence[str]] = None, *, preset: str = "paper", counts: bool = True) -> list[ModelRow]:
    """The registered models (or ``names``), one row per ensemble variant, with their total and trainable
    parameter counts at ``preset`` size (built on the meta device: no memory, no weights; ``counts=False``
    builds nothing)."""
    import torch

    from vlsm.models import create_model, get_entry, list_models

    rows = []
    for name in names or list_models():
        entry = get_entry(name)
        for variant in entry.variants or (None,):
            total = trainable = None
            if counts and preset in entry.presets:
                try:
                    with torch.device("meta"):  # counts need shapes only: no memory, no init time
                        model = create_model(name, preset=preset, variant=variant)
                except (NotImplementedError, RuntimeError):  # a model whose init reads tensor values
                    model = create_model(name, preset=preset, variant=variant)
                total, trainable = model.parameter_counts()
                del model
            rows.append(ModelRow(name, variant, entry.paper_name, total, trainable, entry.description))
    return rows


def bench(names: Optional[Sequence[str]] = None, *, preset: str = "paper", variants: Optional[Sequence[str]] = None,
          image_size: Optional[int] = None, batch_size: int = 2, precisions: Sequence[str] = ("32-true",),
          device: str = "auto", steps: int = 3, warmup: int = 1, data: Optional[PathLike] = None,
          num_workers: int = 2, loader_batches: Optional[int] = None, overrides: Optional[dict] = None,
          trust_checkpoint: bool = False) -> list:
    """Train-step and inference images/s, data loading (with ``data``), peak memory and checkpoint size of
    registered models (random init, offline), for every model x variant x precision. Returns the
    :class:`vlsm.bench.BenchResult` s (``vlsm.bench.format_table`` prints them)."""
    from vlsm.bench import PRECISIONS
    from vlsm.bench import bench as run_bench
    from vlsm.models import get_entry, list_models

    names = list(names or list_models())
    for name in names:
        get_entry(name)  # unknown names fail here, listing the valid ones
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise UserError(f"--precision {bad[0]!r} is not one of {', '.join(PRECISIONS)}")
    check_at_least("--batch-size", batch_size)
    check_at_least("--steps", steps)
    check_at_least("--warmup", warmup, 0)
    check_at_least("--img-size", image_size)
    with call_scope(trust_checkpoint):
        return run_bench(names, precisions=list(precisions), variants=list(variants or [None]), preset=preset,
                         image_size=image_size, batch_size=batch_size, device=device, steps=steps, warmup=warmup,
                         data=None if data is None else str(data), num_workers=num_workers,
                         loader_batches=loader_batches, **(overrides or {}))


def convert_checkpoint(model: str, input: PathLike, output: PathLike, *, preset: str = "paper",
                       image_size: Optional[int] = None, force: bool = False, trust_checkpoint: bool = False):
    """Map a state dict saved by the reference VLSM-Ensemble code (``input``: .pt/.pth/.ckpt/.bin/.safetensors)
    onto ``create_model(model, variant="reference")`` with strict loading, and write it to ``output``: a model
    folder (``vlsm.load_pretrained``) or a ``.safetensors`` file; ``force`` replaces an earlier conversion.
    Returns the loaded model."""
    from vlsm.models.reference import supported_models

    if model not in supported_models():
        raise UserError(f"--model {model!r} has no reference converter; choose one of {', '.join(supported_models())}")
    output = Path(output)
    if output.exists() and not force:
        raise UserError(f"{output} exists; pass --force to overwrite it or choose another OUT")
    if output.exists() and not _replaceable(output):
        raise UserError(f"{output} is not a model folder or .safetensors file written by vlsm, so --force will "
                        f"not replace it; choose another OUT")
    with call_scope(trust_checkpoint):
        net = _converted_model(model, Path(input), preset, image_size)
    _write_converted(net, output)
    return net


def _converted_model(name: str, input_path: Path, preset: str, image_size: Optional[int]):
    from safetensors import SafetensorError

    from vlsm.models.checkpoint import CheckpointError, load_state_dict_strict, read_state_dict_file
    from vlsm.models.reference import convert_reference_checkpoint
    from vlsm.models.registry import create_model
    from vlsm.models.unet_d import infer_reference_overrides

    try:
        raw = read_state_dict_file(input_path)
    except (CheckpointError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{input_path} is not a readable checkpoint ({first.rstrip('.')}); give the .ckpt/.pt/"
                        f".safetensors file the reference code saved") from None
    try:
        state = convert_reference_checkpoint(name, raw)
        overrides = {} if image_size is None else {"image_size": image_size}
        kwargs = {}
        if name == "unet-d":
            overrides.update(infer_reference_overrides(raw))
            overrides.pop("inject_channels", None)
        else:
            kwargs["variant"] = "reference"
    except CheckpointError as err:
        raise UserError(f"{input_path}: {err}") from err
    model = create_model(name, preset=preset, **kwargs, **overrides)
    try:
        load_state_dict_strict(model, state, source=f"{input_path} (converted)",
                               model_name=f"{name} (preset {preset}{', variant reference' if kwargs else ''})")
    except CheckpointError as err:
        raise UserError(str(err)) from err
    return model


def _write_converted(model, output_path: Path) -> None:
    """Write the model folder (or .safetensors file) through a temporary sibling, then move it into place."""
    from vlsm.utils import make_temp_dir

    output_path.parent.mkdir(parents=True, exist_ok=True)
    if output_path.suffix == ".safetensors":
        from safetensors.torch import save_model

        tmp = output_path.with_name(output_path.name + ".tmp")
        save_model(model, str(tmp))
        tmp.replace(output_path)
        return
    tmp_dir = make_temp_dir(output_path.parent, prefix=f".{output_path.name}.")
    try:
        model.save_pretrained(tmp_dir)
        if output_path.exists():
            shutil.rmtree(output_path) if output_path.is_dir() else output_path.unlink()
        tmp_dir.replace(output_path)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)


def _replaceable(path: Path) -> bool:
    """What ``force`` may replace: an earlier conversion (a model folder, or a .safetensors file)."""
    from vlsm.models.base import SPEC_FILE

    if path.is_dir():
        return (path / SPEC_FILE).is_file()
    return path.suffix == ".safetensors"


__all__ = ["ModelRow", "bench", "convert_checkpoint", "models"]
