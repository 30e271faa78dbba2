"""``vlsm data convert / check / synthetic / prompts`` as functions."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from vlsm.api._common import check_at_least
from vlsm.errors import UserError

PathLike = Union[str, Path]


def data_convert(dataset: str, raw_dir: PathLike, out_dir: PathLike, *, anns: Optional[PathLike] = None,
                 seed: int = 0, class_name: Optional[str] = None, overwrite: bool = False,
                 allow_missing: bool = False, patient_pattern: Optional[str] = None):
    """Convert an official dataset download (``raw_dir``) into the medvlsm layout in ``out_dir``: images,
    0/255 PNG masks and ``anns/{train,val,test}.json``. ``anns``: medvlsm's split/prompt files; without them
    the splits are ~80/10/10 by a hash of each name (``seed``; of each patient where names carry one:
    CheXlocalize, CAMUS, or ``patient_pattern``, a regular expression whose first group is the patient) and
    prompts are generated from the masks.
    Returns the :class:`vlsm.data.convert.ConvertResult` (counts per split, dropped cases, notes)."""
    from vlsm.data.convert import convert_dataset

    try:
        return convert_dataset(dataset, raw_dir, out_dir, anns=anns, seed=seed, overwrite=overwrite,
                               allow_missing=allow_missing, class_name=class_name, patient_pattern=patient_pattern)
    except FileExistsError as err:
        raise UserError(str(err)) from err


def data_check(path: PathLike, *, splits: Optional[Sequence[str]] = None, workers: Optional[int] = None,
               strict: bool = False, prompts: bool = True, patient_pattern: Optional[str] = None):
    """Decode every image and mask of the dataset at ``path`` (all splits, or ``splits``) and report missing,
    unreadable or truncated files, size mismatches, non-binary or empty masks, images listed in two splits and
    patients with images in two splits (by ``patient_pattern`` or the one its conversion saved; both errors when
    ``strict``) and, with ``prompts``, prompts longer than the CLIP/BERT context. Returns the
    :class:`vlsm.data.check.CheckReport` (``.ok``, ``.format()``)."""
    from vlsm.data.check import check_dataset

    check_at_least("--workers", workers)
    splits = list(splits) if splits else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlaps are part of the report
        report = check_dataset(path, splits=splits, workers=workers, strict=strict, patient_pattern=patient_pattern)
    if prompts:
        from vlsm.data.prompt_lengths import context_length_notes

        report.notes += context_length_notes(path, splits=splits)
    return report


def data_synthetic(out_dir: PathLike, *, n_train: int = 48, n_val: int = 12, n_test: int = 12, image_size: int = 96,
                   seed: int = 0, overwrite: bool = False) -> Path:
    """Write the synthetic polyp dataset (medvlsm layout) to ``out_dir`` and return it; a folder holding the
    same synthetic dataset is reused, any other non-empty one refused unless ``overwrite`` (which replaces
    only a synthetic dataset)."""
    from vlsm.data.synthetic import make_synthetic_dataset

    for flag, value in (("--n-train", n_train), ("--n-val", n_val), ("--n-test", n_test)):
        check_at_least(flag, value, 0)
    if n_train + n_val + n_test == 0:
        raise ValueError("--n-train, --n-val and --n-test are all 0: give at least one image")
    check_at_least("--image-size", image_size, 16)
    try:
        return make_synthetic_dataset(out_dir, n_train=n_train, n_val=n_val, n_test=n_test, image_size=image_size,
                                      seed=seed, overwrite=overwrite)
    except FileExistsError as err:
        raise UserError(str(err)) from err


@dataclass
class PromptListing:
    """The prompts of a split: ``total`` cases, the first ones as ``[(name, {key: prompt or variants})]``."""

    split: str
    total: int
    cases: list = field(default_factory=list)


def data_prompts(path: PathLike, *, split: str = "train", prompt: Optional[str] = None, limit: int = 5,
                 class_name: Optional[str] = None) -> PromptListing:
    """The prompts of the first ``limit`` cases of ``split`` (only key ``prompt`` when given; a missing key
    reads ``None``). ``class_name`` is the prompt p1 of a plain images/ + masks/ folder."""
    from vlsm.data import load_split
    from vlsm.data.prompts import prompt_keys

    records = load_split(path, split, class_name=class_name)
    cases = []
    for r in records[:max(0, limit)]:
        keys = [prompt] if prompt else prompt_keys(r.prompts)
        cases.append((r.name, {key: r.prompts.get(key) for key in keys}))
    return PromptListing(split, len(records), cases)


__all__ = ["PromptListing", "data_check", "data_convert", "data_prompts", "data_synthetic"]
