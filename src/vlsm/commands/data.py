"""``vlsm data``: convert raw dataset downloads, check dataset folders, make synthetic data, show prompts
(:func:`vlsm.api.data_convert`, ``data_check``, ``data_synthetic``, ``data_prompts``)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from vlsm.data.convert.sources import SOURCES

    p = subparsers.add_parser("data", help="convert, check and inspect datasets",
                              description="Convert raw dataset downloads into the medvlsm layout, check "
                                          "dataset folders, and inspect prompts.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(func=lambda args: _help(p))

    c = sub.add_parser(
        "convert", help="convert an official dataset download into the medvlsm layout",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write OUT_DIR/{images,masks,anns} (masks as 0/255 PNG) from a dataset download.\n\n"
                    "Datasets and the raw layouts they expect:\n"
                    + "\n".join(f"  {k:<12} {s.description}" for k, s in SOURCES.items()))
    c.add_argument("dataset", choices=list(SOURCES), metavar="DATASET", help=", ".join(SOURCES))
    c.add_argument("raw_dir", metavar="RAW_DIR", help="the folder of the download (unzipped)")
    c.add_argument("out_dir", metavar="OUT_DIR", help="new dataset folder to write")
    c.add_argument("--anns", metavar="DIR",
                   help="medvlsm's split/prompt files for this dataset (a folder of train/val/test.json); "
                        "without it splits are ~80/10/10 by a hash of each name (stable when cases are added) and "
                        "prompts are generated from the masks")
    c.add_argument("--seed", type=int, default=0, help="seed of the generated split (default 0)")
    c.add_argument("--class-name", help="class name for generated prompts (default: the dataset's, "
                                        "'object' for folder)")
    c.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    c.add_argument("--allow-missing", action="store_true",
                   help="with --anns: write only the cases found in RAW_DIR and report how many were dropped")
    c.add_argument("--patient-pattern", metavar="REGEX",
                   help="generated splits keep each patient in one split: a regular expression whose first group "
                        "is the patient in every image name, e.g. '^(patient\\d+)_' (chexlocalize and camus bring "
                        "their own); saved for `vlsm data check`")
    c.set_defaults(func=run_convert)

    k = sub.add_parser("check", help="check every image and mask of a dataset folder",
                       description="Decode every image and mask and report missing, unreadable or truncated "
                                   "files, size mismatches, non-binary masks, empty masks, images listed in "
                                   "two splits (by name) and prompts longer than the CLIP/BERT context. "
                                   "Exit code 1 if there are errors.")
    k.add_argument("dir", metavar="DIR", help="dataset folder (medvlsm layout or images/ + masks/)")
    k.add_argument("--split", action="append", metavar="SPLIT", help="check only this split (repeatable)")
    k.add_argument("--workers", type=int, default=None, help="reader threads (default: 2 x CPU cores, max 8)")
    k.add_argument("--strict", action="store_true",
                   help="images (and patients) in two splits (leakage) are errors, not warnings (exit code 1)")
    k.add_argument("--patient-pattern", metavar="REGEX",
                   help="report patients with images in two splits: a regular expression whose first group is the "
                        "patient in each image name (default: the one `vlsm data convert` saved, if any)")
    k.add_argument("--no-prompts", dest="prompts", action="store_false",
                   help="skip counting prompt tokens against the CLIP (77) and BERT (256) context lengths")
    k.set_defaults(func=run_check)

    s = sub.add_parser("synthetic", help="write the synthetic polyp dataset (medvlsm layout)")
    s.add_argument("out_dir", metavar="OUT_DIR")
    s.add_argument("--n-train", type=int, default=48, help="training images (at least 0; default 48)")
    s.add_argument("--n-val", type=int, default=12, help="validation images (at least 0; default 12)")
    s.add_argument("--n-test", type=int, default=12, help="test images (at least 0; default 12)")
    s.add_argument("--image-size", type=int, default=96, help="side of the square images in pixels (at least 16; "
                                                               "default 96)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=run_synthetic)

    q = sub.add_parser("prompts", help="show the prompts of a split")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--split", default="train")
    q.add_argument("--prompt", default=None, help="show only this prompt key (e.g. p6)")
    q.add_argument("--limit", type=int, default=5, help="number of cases to show (default 5)")
    q.add_argument("--class-name", default=None, help="class name for plain folders")
    q.set_defaults(func=run_prompts)


def _help(parser) -> int:
    parser.print_help()
    return 1


def run_convert(args) -> int:
    from vlsm.api import data_convert

    print(data_convert(args.dataset, args.raw_dir, args.out_dir, anns=args.anns, seed=args.seed,
                       class_name=args.class_name, overwrite=args.overwrite,
                       allow_missing=args.allow_missing, patient_pattern=args.patient_pattern).format())
    return 0


def run_check(args) -> int:
    from vlsm.api import data_check

    report = data_check(args.dir, splits=args.split, workers=args.workers, strict=args.strict, prompts=args.prompts,
                        patient_pattern=args.patient_pattern)
    print(report.format())
    return 0 if report.ok else 1


def run_synthetic(args) -> int:
    from vlsm.api import data_synthetic

    out = data_synthetic(args.out_dir, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                         image_size=args.image_size, seed=args.seed, overwrite=args.overwrite)
    print(f"synthetic dataset in {out}: train {args.n_train}, val {args.n_val}, test {args.n_test} "
          f"({args.image_size}x{args.image_size})")
    return 0


def run_prompts(args) -> int:
    from vlsm.api import data_prompts

    listing = data_prompts(args.dir, split=args.split, prompt=args.prompt, limit=args.limit,
                           class_name=args.class_name)
    print(f"{listing.total} case(s) in {listing.split}")
    for name, prompts in listing.cases:
        print(name)
        for key, value in prompts.items():
            if value is None:
                value = "(missing)"
            elif isinstance(value, list):
                value = f"[{len(value)} variants] {value[0]!r}, ..."
            else:
                value = repr(value)
            print(f"  {key}: {value}")
    return 0
