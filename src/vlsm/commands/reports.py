"""`vlsm table` and `vlsm figure`: paper-style result tables and qualitative figures from run folders."""
from __future__ import annotations

from pathlib import Path

from vlsm.commands._common import add_trust_arg
from vlsm.utils import write_text_atomic


def register(sub) -> None:
    t = sub.add_parser(
        "table", help="results table (mean ± std, best in bold, ensemble gains, CIs) from run/eval folders",
        description="Build a results table from run folders (vlsm train) or evaluation folders (vlsm evaluate). "
                    "Numbers are recomputed from each per_case.csv and checked against summary.json. "
                    "The Markdown table is always printed; -o also writes it as Markdown, LaTeX or CSV.")
    t.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run folders, evaluation folders or summary.json files")
    t.add_argument("-o", "--output", help="output file; format from its extension (.md, .tex, .csv)")
    t.add_argument("--format", choices=("md", "tex", "csv"), help="output format (default: by extension)")
    t.add_argument("--metric", choices=("dice", "iou", "both"), default="dice",
                   help="score in the cells; both = a Dice and an IoU column per dataset (default: dice)")
    t.add_argument("--no-ci", action="store_true", help="leave out the bootstrap confidence intervals")
    t.add_argument("--bootstrap", type=int, default=10000, metavar="N", help="bootstrap resamples (default: 10000)")
    t.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals (default: 0.95)")
    t.add_argument("--ci-method", choices=("percentile", "bca"), default="percentile",
                   help="bootstrap interval: percentile, or bias-corrected and accelerated (default: percentile)")
    t.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    t.add_argument("--compare", nargs=2, metavar=("MODEL_A", "MODEL_B"),
                   help="paired Wilcoxon signed-rank test of two models (labels or names) per dataset")
    t.add_argument("--no-gains", action="store_true", help="leave out the ensembles' gains over their VLSMs")
    t.add_argument("--digits", type=int, default=2, help="decimals of the percentages (default: 2)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    t.set_defaults(func=run_table)

    f = sub.add_parser(
        "figure", help="qualitative figure: images, ground truth and each run's TP/FP/FN overlay",
        description="Predict the named images with each run's model and draw rows = images, columns = image, "
                    "ground truth and one TP/FP/FN overlay per run, titled by the image's Dice. "
                    "Images are found in the test split first, then in the other splits.")
    f.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by `vlsm train`")
    f.add_argument("--images", nargs="+", required=True, metavar="NAME",
                   help="image names (as in per_case.csv, or image file names)")
    f.add_argument("-o", "--output", required=True, help="output file: .png, .pdf or .svg")
    f.add_argument("--data", nargs="+", metavar="PATH", help="dataset folder(s); default: the runs' datasets")
    f.add_argument("--threshold", type=float, help="probability threshold (default: each run's, usually 0.5)")
    f.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    f.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default: 4)")
    f.add_argument("--dpi", type=int, default=150, help="resolution of PNG output (default: 150)")
    f.add_argument("--panel-inches", type=float, default=1.8, help="width of one panel in inches (default: 1.8)")
    f.add_argument("--no-names", action="store_true", help="do not write image names beside the rows")
    f.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_trust_arg(f)
    f.set_defaults(func=run_figure)


def _refuse_existing(path: Path, overwrite: bool) -> None:
    from vlsm.errors import UserError

    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; choose another name or pass --overwrite")
    if not path.parent.is_dir():
        raise UserError(f"the folder {path.parent} of {path} does not exist; create it first")


def run_table(args) -> int:
    from vlsm.errors import UserError
    from vlsm.evaluation.report import build_table, format_for_path

    fmt = None
    out = Path(args.output) if args.output else None
    if out is not None:
        fmt = format_for_path(out, args.format)
        _refuse_existing(out, args.overwrite)
    elif args.format:
        raise UserError("--format needs -o OUTPUT (the Markdown table is printed either way)")
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap must be at least 1 (got {args.bootstrap}); use --no-ci for no intervals")
    table = build_table(args.runs, metric=args.metric, ci=not args.no_ci, compare=tuple(args.compare or ()) or None,
                        gains=not args.no_gains, n_resamples=args.bootstrap, confidence=args.confidence,
                        seed=args.seed, ci_method=args.ci_method, digits=args.digits)
    print(table.to_markdown())
    if out is not None:
        write_text_atomic(out, table.render(fmt))
        print(f"wrote {out}")
    return 0


def run_figure(args) -> int:
    from vlsm.evaluation.figures import figure_format, qualitative_from_runs

    out = Path(args.output)
    figure_format(out)
    _refuse_existing(out, args.overwrite)
    info = qualitative_from_runs(args.runs, args.images, out, data=args.data, threshold=args.threshold,
                                 device=args.device, batch_size=args.batch_size, overwrite=args.overwrite,
                                 dpi=args.dpi, panel_inches=args.panel_inches, show_names=not args.no_names)
    for label, per_image in info.dice.items():
        scores = ", ".join(f"{name} {100 * d:.2f}" for name, d in per_image.items())
        print(f"{label}: Dice (%) {scores}")
    print(f"wrote {info.path} ({info.width_px}x{info.height_px} px at {info.dpi} dpi)")
    return 0
