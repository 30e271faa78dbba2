"""`vlsm sweep`: run several experiment files one after another (skip finished, resume unfinished)."""
from __future__ import annotations

import sys
import traceback
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run experiment YAMLs in turn; finished runs are skipped, unfinished resumed")
    p.add_argument("experiments", nargs="+", help="experiment YAML files")
    p.add_argument("--out-root", default="runs", help="run folders go to OUT_ROOT/<experiment name>")
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    p.add_argument("--set", dest="train_set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override for every experiment, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--keep-going", action="store_true", help="continue after a failed experiment")
    p.set_defaults(func=run)


def plan(paths, out_root: str, overrides=()):
    """[(experiment file, config, run folder, status)] with status new | resume | done (see vlsm.runs)."""
    from vlsm.config import apply_overrides, load_config, parse_override
    from vlsm.runs import RunFolder

    try:
        pairs = [parse_override(text) for text in overrides]
    except ValueError as err:
        raise ValueError(f"--set: {err} (e.g. --set train.epochs=5)") from None
    items = []
    for path in paths:
        cfg = apply_overrides(load_config(path), pairs, where="--set")
        name = cfg.name or Path(path).stem
        out = Path(cfg.out) if cfg.out else Path(out_root) / name
        cfg.out = str(out)
        items.append((Path(path), cfg, out, RunFolder(out).status))
    return items


def run(args) -> int:
    from vlsm.errors import UserError
    from vlsm.runs import DONE, RESUME
    from vlsm.training.run import train

    items = plan(args.experiments, args.out_root, args.train_set)
    width = max(len(str(p)) for p, *_ in items)
    for path, cfg, out, status in items:
        print(f"{status:<7} {str(path):<{width}} -> {out}  ({cfg.model.name}, {', '.join(cfg.data.paths)})")
    if args.dry_run:
        return 0
    failed = []
    for path, cfg, _out, status in items:
        if status == DONE:
            continue
        print(f"\n=== {path} ({status}) ===", flush=True)
        try:
            # a run that failed before its first checkpoint is "new" again: train() starts it afresh
            train(cfg, resume=status == RESUME)
        except Exception as err:  # one broken experiment must not hide the others' results
            failed.append((path, err))
            if isinstance(err, (UserError, ValueError, OSError)):
                print(f"vlsm sweep: {path}: error: {err}", file=sys.stderr)
            else:  # not a user error: the traceback is what a bug report needs
                traceback.print_exc()
            if not args.keep_going:
                break
    if failed:
        print("\nfailed experiments:")
        for path, err in failed:
            print(f"  {path}: {err}")
        return 1
    return 0
