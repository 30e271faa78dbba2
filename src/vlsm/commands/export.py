"""`vlsm export`: a trained model as a self-contained folder for another runtime (ONNX), or as a standalone
model folder with every weight (``--standalone``: loads without the weight sources a slim run refers to)."""
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
    import json
    from pathlib import Path

    from vlsm.errors import UserError
    from vlsm.export import FORMATS, export_onnx, require_onnx
    from vlsm.export.onnx_export import PREPROCESS_FILE, check_destination
    from vlsm.predictor import Predictor

    if args.standalone:
        if args.format is not None:
            raise UserError("--standalone writes a model folder, not an --format export: pass only one of them")
        return _standalone(args)
    args.format = args.format or "onnx"
    if args.format not in FORMATS:
        raise UserError(f"unknown --format {args.format!r}; valid formats: {', '.join(FORMATS)}")
    require_onnx()
    check_destination(Path(args.out), args.overwrite)  # before the (slow) model load
    predictor = Predictor(args.run, device="cpu", precision="32-true")
    threshold = args.threshold
    if threshold is None:
        threshold = predictor.config.eval.threshold if predictor.config is not None else 0.5
    out = export_onnx(predictor.model, args.out, threshold=threshold, opset=args.opset,
                      prompt=predictor.default_prompt, overwrite=args.overwrite)
    diff = json.loads((out / PREPROCESS_FILE).read_text())["max_abs_logit_diff_vs_torch"]
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    print(f"exported {predictor.label} to {out}/ ({files}); onnxruntime vs torch max |logit diff| = {diff:.2e}")
    return 0


def _standalone(args) -> int:
    from pathlib import Path

    from vlsm.export.standalone import check_standalone_destination, export_standalone
    from vlsm.runs import RunFolder, load_trained_model, model_label, read_summary

    out = Path(args.out)
    check_standalone_destination(out, args.overwrite)  # before the (slow) model load
    model, cfg = load_trained_model(args.run)
    run = RunFolder.containing(args.run)
    summary = read_summary(run.summary_file) if run is not None and run.summary_file.is_file() else None
    export_standalone(model, out, overwrite=args.overwrite, summary=summary,
                      config=cfg.to_dict() if cfg is not None else None)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"exported {model_label(model)} to {out}/ as a standalone model folder ({size / 1e6:.1f} MB, every weight); "
          f"load it with vlsm.load_pretrained(\"{out}\")")
    return 0
