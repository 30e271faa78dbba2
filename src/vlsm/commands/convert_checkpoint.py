"""`vlsm convert-checkpoint --from reference --model NAME IN OUT`: reference weights -> our model
(:func:`vlsm.api.convert_checkpoint`)."""
from __future__ import annotations

import argparse

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


def run(args: argparse.Namespace) -> int:
    from vlsm.api import convert_checkpoint

    model = convert_checkpoint(args.model, args.input, args.output, preset=args.preset, image_size=args.img_size,
                               force=args.force, trust_checkpoint=args.trust_checkpoint)
    total, _ = model.parameter_counts()
    print(f"wrote {args.output}: {args.model} (reference variant) with {total / 1e6:.2f} M parameters")
    return 0
