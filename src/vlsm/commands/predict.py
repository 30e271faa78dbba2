"""`vlsm predict`: segment images that have no masks; writes PNG masks at original size."""
from __future__ import annotations

import argparse
from pathlib import Path

from vlsm.commands._common import add_trust_arg


def register(sub) -> None:
    p = sub.add_parser("predict", help="segment images (no masks needed) -> OUT/<stem>.png masks (0/255)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-i", "--input", nargs="+", required=True, help="image folder(s) and/or image files")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--checkpoint", "-m", required=True, help="run folder, its model/ folder, or a .ckpt file")
    p.add_argument("--prompt", help="text prompt for vision-language models (default: the run's fixed prompt)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--probabilities", action="store_true", help="also write <stem>_prob.png (0-255 = 0-1)")
    p.add_argument("--overlays", action="store_true", help="also write <stem>_overlay.png")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-pixels", type=int,
                   help="refuse images with more pixels than this (default: Pillow's decompression-bomb limit)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files an earlier `vlsm predict` wrote into OUT (nothing else)")
    add_trust_arg(p)
    p.set_defaults(func=run)


#: written into a prediction folder vlsm created: --overwrite replaces earlier predictions only there
MARKER = ".vlsm-predictions"


def _check_output(out: Path, inputs, records, planned, overwrite: bool) -> None:
    """Refuse an output that is an input folder or would replace an input, one that cannot be written,
    and existing files unless --overwrite and the folder holds earlier predictions (its marker)."""
    from vlsm.errors import UserError
    from vlsm.runs import require_writable

    target = out.resolve()
    folders = {Path(i).resolve() for i in inputs if Path(i).is_dir()}
    folders |= {Path(r.image_path).resolve().parent for r in records}
    if target in folders:
        raise UserError(f"-o {out} is an input folder: the masks would sit among (or replace) the images; "
                        f"choose another -o")
    require_writable(out, flag="-o")
    existing = [p for p in planned if p.exists()]
    if existing and not overwrite:
        raise UserError(f"{len(existing)} output file(s) already exist (e.g. {existing[0]}); "
                        f"pass --overwrite to replace them or choose another -o")
    if existing and not (out / MARKER).is_file():
        raise UserError(f"{out} was not written by `vlsm predict` (no {MARKER} marker), so --overwrite will not "
                        f"replace its files (e.g. {existing[0]}); choose another -o")


def _save_png(array, path: Path) -> None:
    import io

    from PIL import Image

    from vlsm.utils import write_bytes_atomic

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


def run(args) -> int:
    import numpy as np

    from vlsm.data import list_images, load_image
    from vlsm.data.images import check_pixel_limit
    from vlsm.errors import UserError
    from vlsm.evaluation.evaluate import EVAL_PRECISION
    from vlsm.predictor import Predictor
    from vlsm.utils import write_text_atomic

    # fp32 as `vlsm evaluate`: the written masks do not depend on the GPU's mixed precision
    predictor = Predictor(args.checkpoint, device=args.device, precision=EVAL_PRECISION, batch_size=args.batch_size)
    model = predictor.model
    records = list_images(args.input)
    if args.max_pixels is not None and args.max_pixels < 1:
        raise UserError(f"--max-pixels must be at least 1, got {args.max_pixels}")
    prompt = args.prompt
    if model.uses_text and not prompt:
        prompt = predictor.default_prompt
        if not prompt:
            raise UserError(f"{model.spec.name} needs a text prompt for images without annotations: "
                            f"give --prompt, e.g. --prompt \"polyp\"")
    prompt = prompt or ""

    stems: dict = {}
    for r in records:
        stems.setdefault(Path(r.image_path).stem, []).append(str(r.image_path))
    clashes = {s: p for s, p in stems.items() if len(p) > 1}
    if clashes:
        s, paths = next(iter(clashes.items()))
        raise UserError(f"{len(clashes)} input name(s) would write the same output, e.g. {s}.png from {paths}; "
                        f"predict them into separate folders")
    out = Path(args.output)
    planned = []
    for r in records:
        stem = Path(r.image_path).stem
        planned.append(out / f"{stem}.png")
        if args.probabilities:
            planned.append(out / f"{stem}_prob.png")
        if args.overlays:
            planned.append(out / f"{stem}_overlay.png")
    _check_output(out, args.input, records, planned, args.overwrite)
    check_pixel_limit([r.image_path for r in records], args.max_pixels, flag="--max-pixels")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / MARKER, "written by vlsm predict\n")
    overlay = None
    if args.overlays:
        from vlsm.evaluation.figures import overlay
    n = 0
    for record, pred in zip(records, predictor.predict_records(records, prompt=prompt, threshold=args.threshold)):
        stem = Path(record.image_path).stem
        _save_png((pred.mask * 255).astype(np.uint8), out / f"{stem}.png")
        if args.probabilities:
            _save_png(np.round(pred.probabilities * 255).astype(np.uint8), out / f"{stem}_prob.png")
        if overlay is not None:
            _save_png(overlay(np.asarray(load_image(record.image_path)), pred.mask), out / f"{stem}_overlay.png")
        n += 1
    print(f"wrote {n} mask(s) to {out}")
    return 0
