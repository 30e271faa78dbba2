"""`vlsm predict`: segment images that have no masks; writes PNG masks at original size (:func:`vlsm.api.predict`)."""
from __future__ import annotations

import argparse

from vlsm.commands._common import add_trust_arg
from vlsm.config.flags import add_option_flags, option_values

#: the schema options this command takes as flags (their checks and help come from the schema)
OPTIONS = ("eval.threshold", "eval.batch_size", "train.device", "data.max_pixels", "eval.tta", "eval.postprocess")
#: those whose flag, when not given, leaves the run's own setting (its tuned threshold, its eval.tta)
RUN_DEFAULTS = ("eval.threshold", "eval.tta")


def register(sub) -> None:
    p = sub.add_parser("predict", help="segment images (no masks needed) -> OUT/<stem>.png masks (0/255)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-i", "--input", nargs="+", required=True, help="image folder(s) and/or image files")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--checkpoint", "-m", required=True, nargs="+",
                   help="run folder, its model/ folder, or a .ckpt file; several: their ensemble (probabilities "
                        "averaged, e.g. a cross-validation's folds)")
    p.add_argument("--prompt", help="text prompt for vision-language models (default: the run's fixed prompt)")
    p.add_argument("--probabilities", action="store_true", help="also write <stem>_prob.png (0-255 = 0-1)")
    p.add_argument("--overlays", action="store_true", help="also write <stem>_overlay.png")
    p.add_argument("--slice", "--frame", dest="slice", metavar="K|all",
                   help="multi-frame DICOM files and 3-D volumes (NIfTI, MetaImage): predict frame/slice K "
                        "(from 0) or all of them, one <stem>_slice012.png each (without it they are refused)")
    p.add_argument("--nifti", action="store_true",
                   help="also write each NIfTI input's masks as <stem>.nii.gz (0/1) on the input's voxels")
    p.add_argument("--uncertainty", action="store_true", help="with --tta: also write <stem>_uncertainty.png, the "
                                                              "std of the flips' probabilities (0-255 = 0-0.5)")
    add_option_flags(p, RUN_DEFAULTS, defaults=False)  # (not given: the run's threshold and test-time augmentation)
    add_option_flags(p, [k for k in OPTIONS if k not in RUN_DEFAULTS])
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files an earlier `vlsm predict` wrote into OUT (nothing else)")
    add_trust_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from vlsm.api import predict

    values = option_values(args, OPTIONS)
    checkpoint = args.checkpoint[0] if len(args.checkpoint) == 1 else args.checkpoint
    done = predict(args.input, args.output, checkpoint, prompt=args.prompt, threshold=values.get("eval.threshold"),
                   probabilities=args.probabilities, overlays=args.overlays, batch_size=values["eval.batch_size"],
                   device=values["train.device"], max_pixels=values.get("data.max_pixels"), overwrite=args.overwrite,
                   trust_checkpoint=args.trust_checkpoint, slices=args.slice, nifti=args.nifti, tta=values.get("eval.tta"),
                   postprocess=values["eval.postprocess"], uncertainty=args.uncertainty)
    print(f"wrote {len(done.masks)} mask(s) to {done.out}")
    return 0
