"""`vlsm sweep`: run several experiment files one after another (skip finished, resume unfinished); the plan,
the shards, the claims, the runs per seed, fold and training fraction (``--seeds``, ``--folds``, ``--fractions``:
the schema's ``sweep`` section) and the loop are :func:`vlsm.api.sweep`'s, the estimate
:mod:`vlsm.api.estimates`'."""
from __future__ import annotations

from vlsm.commands._common import add_trust_arg, say, warn
from vlsm.config.flags import add_option_flags, option_values

#: the schema's sweep options, as flags: one run per seed, fold and training fraction of each experiment
SWEEP_KEYS = ("sweep.seeds", "sweep.folds", "sweep.fractions")


def register(sub) -> None:
    from vlsm.runs.claims import DEFAULT_STALE_MINUTES

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
    runs = p.add_argument_group("runs per experiment (replace its sweep: section)")
    add_option_flags(runs, SWEEP_KEYS, defaults=False)
    est = p.add_argument_group("estimate (hours from vlsm bench's measured figures)")
    est.add_argument("--bench", metavar="FILE", help="the JSON of `vlsm bench ... --json` (measured on the machine the "
                                                     "grid will run on): estimate each run's hours from it")
    est.add_argument("--bench-now", action="store_true", help="run vlsm bench here on each model of the grid (random "
                                                               "weights, a few steps), then estimate from its figures")
    est.add_argument("--estimate-epochs", type=int, metavar="N",
                     help="epochs assumed per run (default: each run's train.epochs, an upper bound)")
    add_trust_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from vlsm.api import sweep

    values = option_values(args, SWEEP_KEYS)  # (checked: one line naming the flag)
    done = sweep(args.experiments, out_root=args.out_root, overrides=args.train_set, shard=args.shard,
                 stale_after=args.stale_after, keep_going=args.keep_going, dry_run=args.dry_run,
                 trust_checkpoint=args.trust_checkpoint, echo=say, warn=warn, seeds=values.get("sweep.seeds"),
                 folds=values.get("sweep.folds"), fractions=values.get("sweep.fractions"), bench=args.bench,
                 bench_now=args.bench_now, estimate_epochs=args.estimate_epochs)
    if done.skipped:
        print(f"\n{len(done.skipped)} run(s) skipped: other workers are training them")
    if done.failed:
        print("\nfailed experiments:")
        for path, err in done.failed:
            print(f"  {path}: {err}")
        return 1
    return 0
