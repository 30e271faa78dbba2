"""`vlsm export`: a trained model as a self-contained folder for another runtime (ONNX), or as a standalone
model folder with every weight (``--standalone``: loads without the weight sources a slim run refers to);
:func:`vlsm.api.export`."""
from __future__ import annotations

import argparse

from vlsm.commands._common import add_trust_arg


def register(sub) -> None:
    from vlsm.export import FORMATS
    from vlsm.export.onnx_export import DEFAULT_OPSET

    p = sub.add_parser("export", help="export a trained model (ONNX: model.onnx + preprocess.json + tokenizer; "
                                      "--standalone: a model folder with every weight)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run folder, its model/ folder, or a .ckpt file")
    p.add_argument("out", metavar="OUT", help="output folder (must not exist, unless --overwrite)")
    p.add_argument("--format", default=None, help=f"export format: {', '.join(FORMATS)} (default: onnx)")
    p.add_argument("--standalone", action="store_true",
                   help="write a model folder with every weight (frozen ones included) and the model card, which "
                        "vlsm.load_pretrained loads without the weight sources of a slim run")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= {DEFAULT_OPSET})")
    p.add_argument("--threshold", type=float, default=None,
                   help="probability threshold written to preprocess.json (default: the run's eval threshold, 0.5)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it is an earlier export")
    add_trust_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from vlsm.api import export

    done = export(args.run, args.out, format=args.format, standalone=args.standalone, opset=args.opset,
                  threshold=args.threshold, overwrite=args.overwrite, trust_checkpoint=args.trust_checkpoint)
    if done.format == "standalone":
        print(f"exported {done.label} to {done.out}/ as a standalone model folder ({done.size_bytes / 1e6:.1f} MB, "
              f"every weight); load it with vlsm.load_pretrained(\"{done.out}\")")
    else:
        print(f"exported {done.label} to {done.out}/ ({', '.join(done.files)}); onnxruntime vs torch max |logit diff| "
              f"= {done.max_abs_logit_diff:.2e}")
    return 0
