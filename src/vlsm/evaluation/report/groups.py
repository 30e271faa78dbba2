"""Runs that differ only in their training seed, as one table row (:class:`SeedGroup`), and what a run's
``config.yaml`` says about its seed, fold and training fraction (:func:`run_facts`).

Two results join one group when they are the same model on the same dataset, split and prompt, and their runs'
``config.yaml`` files are equal but for ``train.seed`` (and what never changes a result: the run's name and
folder, and the options ``--resume`` may change but ``train.epochs`` and ``train.max_minutes``). A group's cell is the mean ± std across its seeds of the runs'
means (population std, ``ddof=0``: NumPy's ``std``), with the number of seeds; its confidence interval is a
hierarchical bootstrap (:func:`vlsm.evaluation.stats.hierarchical_bootstrap_ci`: the seeds, then the images,
resampled); its paired test pairs the same images of the same seeds. A run that is alone stays a plain row, as
before. A run with cross-validation folds or a training fraction gets a row of its own for each
(``UNet-D (fold 2 of 5)``, ``UNet-D (25% of train)``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from vlsm import runs
from vlsm.runs.names import EVAL_DIR

#: what the table's notes say about rows over several seeds
SEED_NOTE = ("Rows over several seeds (the cell says how many): mean ± std across the seeds of each run's mean over "
             "the images (population std, ddof=0); their CI is a hierarchical bootstrap (the seeds, then the images, "
             "resampled with replacement), and a paired test pairs the same images of the same seeds.")


@dataclass(frozen=True)
class RunFacts:
    """What a result's run folder says: its seed, its settings but the seed (``key``; None without a run), and the
    row tag of its fold or training fraction."""

    seed: Optional[int] = None
    key: Optional[str] = None
    fold: Optional[int] = None
    folds: Optional[int] = None
    fraction: float = 1.0

    @property
    def tag(self) -> str:
        parts = ([f"fold {self.fold} of {self.folds}"] if self.folds else []) + \
            ([f"{self.fraction * 100:g}% of train"] if self.fraction < 1 else [])
        return f" ({', '.join(parts)})" if parts else ""


#: the options --resume may change that still change a finished run's result (how long it trained)
_CHANGE_RESULTS = {"train.epochs", "train.max_minutes"}


def _config_of(summary_path: Path) -> Optional[dict]:
    """The run config (as a dict) of a summary.json: RUN/summary.json's or RUN/eval/<name>/summary.json's."""
    import yaml

    folder = summary_path.parent
    if not runs.RunFolder(folder).config_file.is_file() and folder.parent.name == EVAL_DIR:
        folder = folder.parent.parent
    run = runs.RunFolder(folder)
    if not run.config_file.is_file():
        return None
    try:
        config = yaml.safe_load(run.config_file.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def run_facts(summary_path: Path) -> RunFacts:
    """The :class:`RunFacts` of the run a summary.json belongs to (empty ones for a standalone evaluation)."""
    from vlsm.config import resumable_keys

    config = _config_of(Path(summary_path))
    if not config or not isinstance(config.get("train"), dict) or not isinstance(config.get("data"), dict):
        return RunFacts()
    seed = config["train"].get("seed")
    data = config["data"]
    ignored = {"name", "out", "train.seed", *resumable_keys()} - _CHANGE_RESULTS
    flat = {}
    for section, values in config.items():
        for key, value in (values.items() if isinstance(values, dict) else [("", values)]):
            dotted = f"{section}.{key}" if key else section
            if dotted not in ignored:
                flat[dotted] = value
    fraction = data.get("train_fraction")
    return RunFacts(seed=seed if isinstance(seed, int) else None, key=json.dumps(flat, sort_keys=True, default=str),
                    fold=data.get("fold"), folds=data.get("folds"),
                    fraction=float(fraction) if isinstance(fraction, (int, float)) else 1.0)


def joins(group: list, facts: RunFacts) -> bool:
    """Whether a result with ``facts`` joins ``group`` (``[(RunFacts, scores)]``): same settings, a new seed."""
    return (facts.key is not None and facts.seed is not None
            and all(f.key == facts.key and f.seed is not None and f.seed != facts.seed for f, _ in group))


@dataclass
class SeedGroup:
    """One model's results on one dataset split from runs that differ only in their seed (sorted by seed); the
    interface of :class:`vlsm.evaluation.report.CaseScores` where a table needs it."""

    members: list  # CaseScores
    seeds: list

    def __post_init__(self):
        first = self.members[0]
        names = set(first.names)
        odd = [s for s, m in zip(self.seeds, self.members) if set(m.names) != names]
        if odd:
            raise ValueError(f"{first.model.label} on {first.dataset}/{first.split}: the runs of seeds "
                             f"{', '.join(map(str, self.seeds))} were not scored on the same images (seed {odd[0]}: "
                             f"{self.members[self.seeds.index(odd[0])].per_case_path}); evaluate every seed on the "
                             f"same split, or pass only the runs that were")

    def __getattr__(self, name):  # model, dataset, split, threshold, prompt, summary_path, per_case_path, ...
        if name in ("members", "seeds"):
            raise AttributeError(name)
        return getattr(self.members[0], name)

    @property
    def n_seeds(self) -> int:
        return len(self.members)

    @property
    def names(self) -> list:
        return list(self.members[0].names)

    @property
    def n(self) -> int:
        return len(self.members[0].names)

    def has(self, metric: str) -> bool:
        return all(m.has(metric) for m in self.members)

    def matrix(self, metric: str) -> np.ndarray:
        """(seeds x images) scores, the images in the first run's order."""
        return np.stack([np.asarray([m.by_name(metric)[n] for n in self.names]) for m in self.members])

    def values(self, metric: str) -> np.ndarray:
        """Every (seed, image) score."""
        return self.matrix(metric).ravel()

    def by_name(self, metric: str) -> dict:
        """``{(seed, image name): score}``: what a paired test matches."""
        return {(seed, name): v for seed, m in zip(self.seeds, self.members) for name, v in m.by_name(metric).items()}

    def run_means(self, metric: str) -> np.ndarray:
        return self.matrix(metric).mean(axis=1)


def make_group(entries: list):
    """``entries`` (``[(RunFacts, CaseScores)]``) as a table value: the scores of one run, or a :class:`SeedGroup`."""
    if len(entries) == 1:
        return entries[0][1]
    ordered = sorted(entries, key=lambda e: e[0].seed)
    return SeedGroup([sc for _, sc in ordered], [f.seed for f, _ in ordered])


def check_pairable(sa, sb, a: str, b: str, title: str) -> None:
    """A paired test pairs the same seeds: refuse (one line naming --compare) results whose seeds differ."""
    seeds_a, seeds_b = getattr(sa, "seeds", None), getattr(sb, "seeds", None)
    if seeds_a == seeds_b:
        return
    def words(seeds):
        return f"seeds {', '.join(map(str, seeds))}" if seeds else "one run"

    raise ValueError(f"--compare {a} {b}: on {title} {a} has {words(seeds_a)} and {b} {words(seeds_b)}; the paired "
                     f"test pairs the same images of the same seeds: give both the same seeds (vlsm sweep --seeds)")


__all__ = ["RunFacts", "SEED_NOTE", "SeedGroup", "check_pairable", "joins", "make_group", "run_facts"]
