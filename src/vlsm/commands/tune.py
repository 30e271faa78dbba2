"""`vlsm tune`: a hyperparameter search on an Optuna study, each trial an ordinary run folder; the plan, the study,
the workers' loop and the report are :func:`vlsm.api.tune`'s. Its ``--trials``, ``--study``, ``--out``,
``--storage``, ... flags are the schema's ``search`` section."""
from __future__ import annotations

from vlsm.commands._common import add_trust_arg, say, warn

#: the search options with a flag, in schema order
SEARCH_KEYS = ("search.trials", "search.study", "search.out", "search.storage", "search.sampler_seed",
               "search.startup_trials", "search.pruner", "search.pruner_warmup", "search.heartbeat", "search.timeout")


def register(sub) -> None:
    from vlsm.config.flags import add_option_flags
    from vlsm.runs.claims import DEFAULT_STALE_MINUTES

    p = sub.add_parser("tune", help="search hyperparameters with Optuna; each trial is a run folder",
                       description="Search hyperparameters with Optuna's TPE sampler on a study database (SQLite by "
                                   "default); several workers started alike share one study. See docs/tuning.md.")
    p.add_argument("-c", "--config", help="experiment YAML file; its search: section holds the search's defaults")
    p.add_argument("--space", action="extend", nargs="+", default=[], metavar="KEY=SPEC",
                   help="a dimension of the search: KEY an option (train.lr), SPEC log(a,b), uniform(a,b), int(a,b), "
                        "int(a,b,step) or choice(v1,v2,...); replaces the file's entry for KEY")
    p.add_argument("--set", dest="train_set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override for every trial, e.g. --set train.epochs=20 (repeatable)")
    search = p.add_argument_group("search")
    add_option_flags(search, SEARCH_KEYS, defaults=False)
    p.add_argument("--dry-run", action="store_true", help="print the space and the study's state; run nothing")
    p.add_argument("--keep-going", action="store_true",
                   help="a failed trial does not stop this worker (three failures in a row do)")
    p.add_argument("--stale-after", type=float, default=DEFAULT_STALE_MINUTES, metavar="MINUTES",
                   help="take over a trial's run folder claimed from another host after this many minutes without "
                        "activity (a claim on this host is taken over as soon as its process is gone)")
    add_trust_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from vlsm.api import tune
    from vlsm.config import parse_override
    from vlsm.config.flags import option_values

    try:
        pairs = [parse_override(text) for text in args.train_set]
    except ValueError as err:
        raise ValueError(f"--set: {err} (e.g. --set train.epochs=5)") from None
    pairs += option_values(args, SEARCH_KEYS).items()  # (checked: one line naming the flag)
    result = tune(args.config, space=args.space, overrides=pairs, dry_run=args.dry_run, keep_going=args.keep_going,
                  stale_after=args.stale_after, trust_checkpoint=args.trust_checkpoint, echo=say, warn=warn)
    return 0 if result.worker is None or not result.worker.failed else 1
