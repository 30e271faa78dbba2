"""`vlsm sweep`: run several experiment files one after another (skip finished, resume unfinished).

Several workers (GPUs, SLURM array tasks) share a grid in either of two ways:

* ``--shard K/N``: worker K of N (K from 0) takes every N-th run folder of the grid sorted by path,
  a fixed split that does not depend on the order of the files on the command line;
* the same list everywhere, no ``--shard``: each worker takes the next run nobody is training.

Either way a run folder is claimed before it is trained (:mod:`vlsm.claims`), so two workers never
train the same run; a run claimed by a live worker is skipped, a stale claim is taken over.
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

from vlsm.commands._common import add_trust_arg


def register(sub) -> None:
    from vlsm.claims import DEFAULT_STALE_MINUTES

    p = sub.add_parser("sweep", help="run experiment YAMLs in turn; finished runs are skipped, unfinished resumed")
    p.add_argument("experiments", nargs="+", help="experiment YAML files")
    p.add_argument("--out-root", default="runs", help="run folders go to OUT_ROOT/<experiment name>")
    p.add_argument("--dry-run", action="store_true", help="list what would run (shard, status, claims), run nothing")
    p.add_argument("--set", dest="train_set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override for every experiment, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--keep-going", action="store_true", help="continue after a failed experiment")
    p.add_argument("--shard", metavar="K/N",
                   help="run only shard K of N (K = 0..N-1): every N-th run folder in sorted order, e.g. "
                        "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=0-3")
    p.add_argument("--stale-after", type=float, default=DEFAULT_STALE_MINUTES, metavar="MINUTES",
                   help="take over a run claimed from another host after this many minutes without activity "
                        "(a claim on this host is taken over as soon as its process is gone)")
    add_trust_arg(p)
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


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with 0 <= K < N; anything else is one line saying what to pass."""
    from vlsm.errors import UserError

    k, sep, n = (text or "").partition("/")
    try:
        shard, count = int(k), int(n)
    except ValueError:
        shard = count = -1
    if not sep or count < 1:
        raise UserError(f"--shard {text!r}: expected K/N with N >= 1 workers and K = 0..N-1, e.g. --shard 0/4 "
                        f"(in a SLURM array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
    if not 0 <= shard < count:
        raise UserError(f"--shard {text}: K must be 0..{count - 1} (shards count from 0; a SLURM array for "
                        f"{count} workers is --array=0-{count - 1})")
    return shard, count


def shard_of(items, shard: int, count: int) -> list:
    """The items of shard ``shard`` of ``count``: every ``count``-th run folder in sorted order, starting
    at the ``shard``-th. Workers with the same grid agree whatever order their files were listed in, and
    neighbouring runs (the same model on other datasets) go to different workers."""
    ranks = {out: i for i, out in enumerate(sorted(str(out) for *_, out, _ in items))}
    return [item for item in items if ranks[str(item[2])] % count == shard]


def _check_distinct(items) -> None:
    from vlsm.errors import UserError

    seen: dict = {}
    for path, _cfg, out, _ in items:
        if str(out) in seen:
            raise UserError(f"{seen[str(out)]} and {path} both write {out}: give them different `name:` (or "
                            f"`out:`) values, or list one of them only")
        seen[str(out)] = path


def _check_same_settings(path, cfg, out) -> None:
    """Refuse to count a finished run as done when its config.yaml differs from the experiment (e.g. the
    paper and fixed grids, whose runs share names, sent to one --out-root)."""
    from vlsm.config import RESUMABLE_KEYS, config_changes
    from vlsm.errors import UserError
    from vlsm.runs import RunFolder

    stored = RunFolder(out).read_config()
    changes = config_changes(stored, cfg, ignore=RESUMABLE_KEYS) if stored is not None else []
    if changes:
        raise UserError(f"{out} holds a finished run of other settings than {path} ({len(changes)} differ: "
                        f"{'; '.join(changes[:3])}{'; ...' if len(changes) > 3 else ''}); give this grid its own "
                        f"--out-root (the paper and fixed grids use the same run names)")


def run(args) -> int:
    from vlsm.claims import FREE, RunClaimedError, claim_run, claim_state
    from vlsm.errors import UserError
    from vlsm.runs import DONE, RESUME, RunFolder
    from vlsm.training.run import train

    if args.stale_after <= 0:
        raise UserError(f"--stale-after must be a positive number of minutes, got {args.stale_after:g}")
    items = plan(args.experiments, args.out_root, args.train_set)
    _check_distinct(items)
    if args.shard is not None:
        shard, count = parse_shard(args.shard)
        mine = shard_of(items, shard, count)
        positions = ", ".join(str(i + 1) for i in range(shard, len(items), count)[:3])
        print(f"shard {shard}/{count}: {len(mine)} of {len(items)} runs (run folders no. {positions or '-'}"
              f"{', ...' if len(mine) > 3 else ''} of the {len(items)} in sorted order)")
        items = mine
    width = max((len(str(p)) for p, *_ in items), default=0)
    for path, cfg, out, status in items:
        state, words = claim_state(out, args.stale_after)
        claim = f"  [{words}]" if status != DONE and (state != FREE or args.dry_run) else ""
        print(f"{status:<7} {str(path):<{width}} -> {out}  ({cfg.model.name}, {', '.join(cfg.data.paths)}){claim}")
    if args.dry_run:
        return 0
    failed, skipped = [], []
    for path, cfg, out, _ in items:
        try:
            with claim_run(out, stale_minutes=args.stale_after) as claim:
                if claim.took_over:
                    print(f"vlsm sweep: {claim.took_over}", file=sys.stderr)
                status = RunFolder(out).status  # now, not at planning time: another worker may have run it
                if status == DONE:
                    _check_same_settings(path, cfg, out)  # a finished run of other settings is not this one
                    continue
                print(f"\n=== {path} ({status}) ===", flush=True)
                # a run that failed before its first checkpoint is "new" again: train() starts it afresh
                train(cfg, resume=status == RESUME, stale_minutes=args.stale_after)
        except RunClaimedError as err:  # another worker trains it: not a failure
            skipped.append(path)
            print(f"skipped {path}: {err}", flush=True)
        except Exception as err:  # one broken experiment must not hide the others' results
            failed.append((path, err))
            if isinstance(err, (UserError, ValueError, OSError)):
                print(f"vlsm sweep: {path}: error: {err}", file=sys.stderr)
            else:  # not a user error: the traceback is what a bug report needs
                traceback.print_exc()
            if not args.keep_going:
                break
    if skipped:
        print(f"\n{len(skipped)} run(s) skipped: other workers are training them")
    if failed:
        print("\nfailed experiments:")
        for path, err in failed:
            print(f"  {path}: {err}")
        return 1
    return 0
