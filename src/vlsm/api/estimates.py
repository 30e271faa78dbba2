"""How long a sweep's runs take, from ``vlsm bench``'s measured figures (``vlsm sweep --dry-run --bench FILE`` or
``--bench-now``). No figure is assumed: every rate comes from a measurement, and a run whose model was not measured
says so instead of getting a number.

**The figures.** ``--bench FILE``: the JSON ``vlsm bench --json`` printed (on the GPU the grid will run on), one
entry per model, variant and precision; ``--bench-now``: ``vlsm bench`` runs here, once per distinct model of the
grid (its preset, variant, image size, batch size and precision; random weights, a few steps), before the estimate.
A run uses the entry of its model, preset, variant (and image size, when the run sets one), preferring its
precision and batch size.

**The sum**, per run, in seconds::

    epochs x (train images / train img/s  +  val images / infer img/s)  +  evaluated images x views / infer img/s

with the run's images counted from its datasets' split files after its fold and training fraction; the train rate
is bench's train step (after the first epoch its cached train step, when the run caches a frozen encoder's
features), capped by its data loading when bench measured that (``vlsm bench --data``); ``views`` is 4 with
test-time augmentation. ``epochs`` is each run's ``train.epochs`` (an upper bound: early stopping ends most runs
sooner) unless ``--estimate-epochs N``. The hours are on the device bench measured (GPU-hours on a GPU).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence, Union

from vlsm.errors import UserError

PathLike = Union[str, Path]


def load_bench(path: PathLike) -> list[dict]:
    """The entries of a ``vlsm bench --json`` file, checked (one line naming ``--bench`` and the fix)."""
    path = Path(path)
    fix = f"write it with `vlsm bench MODEL ... --json > {path.name}`"
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"--bench {path}: no such file; {fix}") from None
    except (OSError, ValueError) as err:
        raise UserError(f"--bench {path}: not the JSON of `vlsm bench --json` ({err}); {fix}") from None
    needed = ("model", "preset", "image_size", "batch_size", "precision", "device", "train_img_s", "infer_img_s")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) and all(k in e for k in needed)
                                                                for e in entries):
        raise UserError(f"--bench {path}: expected the list `vlsm bench --json` prints (entries with "
                        f"{', '.join(needed)}); {fix}")
    return entries


def _variant(cfg) -> Optional[str]:
    from vlsm.models import get_entry

    return cfg.model.variant or get_entry(cfg.model.name).default_variant


def _key(cfg) -> tuple:
    """What a run needs measured: model, preset, variant, image size (None: the model's), batch size, precision."""
    return (cfg.model.name, cfg.model.preset, _variant(cfg), cfg.model.overrides.get("image_size"),
            cfg.train.batch_size, cfg.train.precision)


def match(cfg, entries: Sequence[dict]) -> Optional[dict]:
    """The bench entry that measured ``cfg``'s model, or None."""
    name, preset, variant, size, batch, precision = _key(cfg)
    found = [e for e in entries if e["model"] == name and e["preset"] == preset
             and e.get("variant") in (variant, None) and (size is None or e["image_size"] == size)]
    if not found:
        return None
    return max(found, key=lambda e: (e["precision"] == precision, e["batch_size"] == batch))


def measure_now(items: Sequence, echo) -> list[dict]:
    """``vlsm bench`` on this machine for each distinct model of ``items`` (:func:`vlsm.bench.bench_model`)."""
    from vlsm.bench import bench_model
    from vlsm.devices import resolve_precision

    entries, done = [], set()
    for item in items:
        key = _key(item.config)
        if key in done:
            continue
        done.add(key)
        name, preset, variant, size, batch, precision = key
        options = {k: v for k, v in item.config.model.without_weights().overrides.items() if k != "image_size"}
        echo(f"bench: {name} ({preset}, {variant or 'default'}, batch {batch}) ...")
        result = bench_model(name, preset=preset, variant=variant, image_size=size, batch_size=batch,
                             precision=resolve_precision(precision, "auto"), steps=2, warmup=1, **options)
        entries.append(result.to_dict())
    return entries


def _listed(path: str, splits: list, cache: dict):
    """The dataset at ``path`` with ``splits`` listed (no image read), kept in ``cache``."""
    from vlsm.data.loading import read_dataset

    key = (path, tuple(splits))
    if key not in cache:
        cache[key] = read_dataset(path, splits, check=False)
    return cache[key]


def run_images(cfg, cache: dict) -> dict:
    """``{"train", "val", "eval"}`` image counts of a run, after its fold and training fraction."""
    import copy

    from vlsm.data.subsets import apply_subsets

    d = cfg.data
    seed = cfg.train.seed if d.split_seed is None else d.split_seed
    counts = {"train": 0, "val": 0, "eval": 0}
    for path in d.paths:
        loaded = copy.copy(_listed(path, list(dict.fromkeys([d.train_split, d.val_split, *cfg.eval.splits])), cache))
        loaded.splits = dict(loaded.splits)
        apply_subsets(loaded, d.train_split, d.val_split, folds=d.folds, fold=d.fold, fraction=d.train_fraction,
                      seed=seed, pattern=d.patient_pattern)
        counts["train"] += len(loaded.splits[d.train_split])
        counts["val"] += len(loaded.splits[d.val_split])
        counts["eval"] += sum(len(loaded.splits[s]) for s in cfg.eval.splits)
    for path in d.test_paths:
        counts["eval"] += len(_listed(path, [d.test_split], cache).splits[d.test_split])
    return counts


def run_seconds(cfg, entry: dict, images: dict, epochs: Optional[int] = None) -> float:
    """The seconds one run takes by ``entry``'s rates (see the module docstring)."""
    epochs = cfg.train.epochs if epochs is None else epochs
    train_rate = entry["train_img_s"]
    cached = entry.get("cached_train_img_s")
    later_rate = cached if cached and cfg.train.feature_cache != "off" and not cfg.data.augment else train_rate
    loader = entry.get("loader_later_img_s")
    if loader:
        train_rate, later_rate = min(train_rate, loader), min(later_rate, loader)
    infer = entry["infer_img_s"]
    train = images["train"] / train_rate + max(0, epochs - 1) * images["train"] / later_rate
    views = 4 if cfg.eval.tta else 1
    return train + epochs * images["val"] / infer + images["eval"] * views / infer


def estimate_sweep(items: Sequence, *, bench: Optional[PathLike] = None, bench_now: bool = False,
                   epochs: Optional[int] = None, echo=print) -> list[str]:
    """The estimate's lines: one per run (hours, or why there is none), then the total and where the figures come
    from."""
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise UserError(f"--estimate-epochs must be a whole number of at least 1, got {epochs!r}")
    entries = load_bench(bench) if bench is not None else measure_now(items, echo)
    source = f"measured by vlsm bench in {bench}" if bench is not None else "measured by vlsm bench here just now"
    devices = sorted({str(e["device"]) for e in entries})
    unit = "GPU-hours" if all(d.startswith("cuda") for d in devices) else "hours"
    lines, total, cache = [], 0.0, {}
    for item in items:
        entry = match(item.config, entries)
        if entry is None:
            name, preset, variant, size, _, _ = _key(item.config)
            lines.append(f"estimate {item.out}: no bench figures for {name} ({preset}, {variant or 'default'}"
                         f"{f', {size} px' if size else ''}); measure it with `vlsm bench {name} --preset {preset}"
                         f"{f' --img-size {size}' if size else ''} --json`")
            continue
        try:
            images = run_images(item.config, cache)
        except (OSError, ValueError) as err:
            lines.append(f"estimate {item.out}: cannot count its images ({str(err).splitlines()[0]})")
            continue
        seconds = run_seconds(item.config, entry, images, epochs)
        total += seconds
        lines.append(f"estimate {item.out}: {seconds / 3600:.3g} {unit} ({images['train']} train / {images['val']} "
                     f"val images x {epochs or item.config.train.epochs} epochs, {images['eval']} evaluated; "
                     f"{entry['train_img_s']:.1f} train img/s, {entry['infer_img_s']:.1f} infer img/s at batch "
                     f"{entry['batch_size']}, {entry['precision']})")
    missing = sum(1 for line in lines if ": no bench figures" in line or ": cannot count" in line)
    bound = f"at {epochs} epochs per run" if epochs else "at most: every run trains all its train.epochs; early " \
                                                          "stopping ends most sooner"
    lines.append(f"estimate: {total / 3600:.2f} {unit} for {len(items) - missing} of {len(items)} run(s) ({bound}), "
                 f"from figures {source} on {', '.join(devices)}" + (f"; {missing} run(s) without an estimate"
                                                                     if missing else ""))
    return lines


__all__ = ["estimate_sweep", "load_bench", "match", "measure_now", "run_images", "run_seconds"]
