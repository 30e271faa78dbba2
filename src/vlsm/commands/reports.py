"""`vlsm table` and `vlsm figure`: paper-style result tables and qualitative figures from run folders
(:func:`vlsm.api.table`, :func:`vlsm.api.figure`)."""
from __future__ import annotations

from vlsm.commands._common import add_trust_arg
from vlsm.config.flags import add_option_flags, option_values
from vlsm.errors import UserError

#: the schema options `vlsm figure` takes as flags (--threshold defaults to each run's own)
FIGURE_OPTIONS = ("eval.threshold", "train.device", "eval.batch_size")


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
    t.add_argument("--metric", choices=("dice", "iou", "hd95", "nsd", "both", "all"), default="dice",
                   help="score in the cells; both = a Dice and an IoU column per dataset, all = Dice, IoU, HD95 and "
                        "NSD (HD95/NSD need evaluations with --boundary; HD95's best is its lowest) (default: dice)")
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
    f.add_argument("--images", nargs="+", metavar="NAME",
                   help="image names (as in per_case.csv, or image file names); needed unless --curve")
    f.add_argument("--curve", action="store_true",
                   help="the learning curve instead: --metric against the fraction of the training split each run "
                        "trained on (data.train_fraction), mean ± std over seeds, per model and dataset")
    f.add_argument("--metric", choices=("dice", "iou", "hd95", "nsd"), default="dice",
                   help="--curve: the score drawn (default: dice)")
    f.add_argument("-o", "--output", required=True, help="output file: .png, .pdf or .svg")
    f.add_argument("--data", nargs="+", metavar="PATH", help="dataset folder(s); default: the runs' datasets")
    add_option_flags(f, FIGURE_OPTIONS[:1], defaults=False)  # (none given: each run's own threshold)
    add_option_flags(f, FIGURE_OPTIONS[1:])
    f.add_argument("--dpi", type=int, default=150, help="resolution of PNG output (default: 150)")
    f.add_argument("--panel-inches", type=float, default=1.8, help="width of one panel in inches (default: 1.8)")
    f.add_argument("--no-names", action="store_true", help="do not write image names beside the rows")
    f.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_trust_arg(f)
    f.set_defaults(func=run_figure)


def run_table(args) -> int:
    from vlsm.api import table

    done = table(args.runs, output=args.output, format=args.format, metric=args.metric, ci=not args.no_ci,
                 bootstrap=args.bootstrap, confidence=args.confidence, ci_method=args.ci_method, seed=args.seed,
                 compare=args.compare, gains=not args.no_gains, digits=args.digits, overwrite=args.overwrite)
    print(done.to_markdown())
    if done.path is not None:
        print(f"wrote {done.path}")
    return 0


def run_figure(args) -> int:
    from vlsm.api import figure

    if args.curve:
        return _run_curve(args)
    if not args.images:
        raise UserError("vlsm figure: give --images NAME ... (the images to show), or --curve for the learning curve")
    values = option_values(args, FIGURE_OPTIONS)
    info = figure(args.runs, args.images, args.output, data=args.data, threshold=values.get("eval.threshold"),
                  device=values["train.device"], batch_size=values["eval.batch_size"], dpi=args.dpi,
                  panel_inches=args.panel_inches, names=not args.no_names, overwrite=args.overwrite,
                  trust_checkpoint=args.trust_checkpoint)
    for label, per_image in info.dice.items():
        scores = ", ".join(f"{name} {100 * d:.2f}" for name, d in per_image.items())
        print(f"{label}: Dice (%) {scores}")
    print(f"wrote {info.path} ({info.width_px}x{info.height_px} px at {info.dpi} dpi)")
    return 0


def _run_curve(args) -> int:
    from vlsm.api import learning_curve

    if args.images:
        raise UserError("vlsm figure --curve draws every run's scores: leave out --images")
    info = learning_curve(args.runs, args.output, metric=args.metric, dpi=args.dpi, overwrite=args.overwrite)
    for (model, dataset, split) in sorted(info.points):
        points = ", ".join(f"{f * 100:g}%: {m:.2f} ± {s:.2f} ({n} seed{'s' if n > 1 else ''})"
                           for f, (m, s, n) in info.summary(model, dataset, split).items())
        print(f"{model} on {dataset}/{split}: {points}")
    print(f"wrote {info.path}")
    return 0
