"""`vlsm convert-checkpoint --from reference --model NAME IN OUT`: reference weights -> our model."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from vlsm.commands._common import add_trust_arg


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-checkpoint",
        help="convert a reference VLSM-Ensemble state dict into a vlsm model folder or .safetensors file",
        description=(
            "Map a state dict saved by the reference VLSM-Ensemble code onto create_model(NAME, "
            "variant='reference') with strict loading. Parameters the reference builds but never uses are "
            "listed and dropped. IN: .pt/.pth/.ckpt/.bin/.safetensors (possibly nested under 'state_dict' or "
            "'model', with a 'model.'/'net.' prefix). OUT: a folder (written by save_pretrained, loadable with "
            "vlsm.load_pretrained) or a .safetensors file."))
    p.add_argument("--from", dest="source_format", choices=["reference"], default="reference",
                   help="layout of IN (only 'reference', the VLSM-Ensemble repository, for now)")
    p.add_argument("--model", required=True, help="unet-d, biomedclipseg-a, clipseg-b or ensemble-c")
    p.add_argument("--preset", default="paper", choices=["paper", "tiny"],
                   help="size preset the checkpoint was trained with (default: paper; UNet-D widths are read "
                        "off the checkpoint)")
    p.add_argument("--img-size", type=int, default=None, help="image size the model is built for")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    add_trust_arg(p)
    p.set_defaults(func=run)


def convert_file(model_name: str, input_path, output_path, *, preset: str = "paper",
                 image_size=None, force: bool = False):
    """Python twin of the command; returns the loaded model."""
    from vlsm.errors import UserError
    from vlsm.models.checkpoint import CheckpointError, load_state_dict_strict, read_state_dict_file
    from vlsm.models.reference import convert_reference_checkpoint, supported_models
    from vlsm.models.registry import create_model
    from vlsm.models.unet_d import infer_reference_overrides
    from vlsm.utils import make_temp_dir

    if model_name not in supported_models():
        raise UserError(f"--model {model_name!r} has no reference converter; choose one of "
                        f"{', '.join(supported_models())}")
    output_path = Path(output_path)
    if output_path.exists() and not force:
        raise UserError(f"{output_path} exists; pass --force to overwrite it or choose another OUT")
    if output_path.exists() and not _replaceable(output_path):
        raise UserError(f"{output_path} is not a model folder or .safetensors file written by vlsm, so --force will "
                        f"not replace it; choose another OUT")
    from safetensors import SafetensorError

    try:
        raw = read_state_dict_file(input_path)
    except (CheckpointError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{input_path} is not a readable checkpoint ({first.rstrip('.')}); give the .ckpt/.pt/"
                        f".safetensors file the reference code saved") from None
    try:
        state = convert_reference_checkpoint(model_name, raw)
    except CheckpointError as err:
        raise UserError(f"{input_path}: {err}") from err
    overrides = {}
    if image_size is not None:
        overrides["image_size"] = image_size
    kwargs = {}
    if model_name == "unet-d":
        try:
            overrides.update(infer_reference_overrides(raw))
        except CheckpointError as err:
            raise UserError(f"{input_path}: {err}") from err
        overrides.pop("inject_channels", None)
    else:
        kwargs["variant"] = "reference"
    model = create_model(model_name, preset=preset, **kwargs, **overrides)
    try:
        load_state_dict_strict(model, state, source=f"{input_path} (converted)",
                               model_name=f"{model_name} (preset {preset}{', variant reference' if kwargs else ''})")
    except CheckpointError as err:
        raise UserError(str(err)) from err

    parent = output_path.parent
    parent.mkdir(parents=True, exist_ok=True)
    if output_path.suffix == ".safetensors":
        from safetensors.torch import save_model

        tmp = output_path.with_name(output_path.name + ".tmp")
        save_model(model, str(tmp))
        tmp.replace(output_path)
    else:
        tmp_dir = make_temp_dir(parent, prefix=f".{output_path.name}.")
        try:
            model.save_pretrained(tmp_dir)
            if output_path.exists():
                shutil.rmtree(output_path) if output_path.is_dir() else output_path.unlink()
            tmp_dir.replace(output_path)
        finally:
            if tmp_dir.exists():
                shutil.rmtree(tmp_dir, ignore_errors=True)
    return model


def _replaceable(path: Path) -> bool:
    """What --force may replace: an earlier conversion (a model folder, or a .safetensors file)."""
    from vlsm.models.base import SPEC_FILE

    if path.is_dir():
        return (path / SPEC_FILE).is_file()
    return path.suffix == ".safetensors"


def run(args: argparse.Namespace) -> int:
    model = convert_file(args.model, args.input, args.output, preset=args.preset,
                         image_size=args.img_size, force=args.force)
    total, trainable = model.parameter_counts()
    print(f"wrote {args.output}: {args.model} (reference variant) with {total / 1e6:.2f} M parameters")
    return 0
