"""What a converter knows about one raw dataset: its cases (:class:`SourceCase`) and how to read them
(:class:`DatasetSource`); the helpers the finders share.

A case is one (image, mask) pair of the output. Several cases may share an image (CheXlocalize: one mask
per finding; CAMUS: one per structure): they carry the same ``image_key`` and the image is written once.
A mask is the OR of its mask files (binarised by :mod:`vlsm.data.masks`), or what ``make_mask`` returns
when it is not a file of its own (a run-length code, one label of a label map). ``group`` is the patient:
generated splits keep a patient's cases together. ``facts`` feed a source's own prompts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from vlsm.data._util import IMAGE_EXTENSIONS, file_stem, file_suffix
from vlsm.data.leakage import patient_of  # noqa: F401  (re-exported for the converters)

MASK_RULE = "rule"          # vlsm.data.masks binarisation rule
MASK_RED_OR_GREEN = "bkai"  # BKAI-IGH: red (neoplastic) or green (non-neoplastic) > 127

#: The patient of names such as ``patient64541_study1_view1_frontal`` or ``patient0001_2CH_ED``.
PATIENT_PATTERN = r"^(patient\d+)_"


@dataclass
class SourceCase:
    key: str
    image: Path
    masks: list = field(default_factory=list)  # [Path]; several are OR-merged
    mask_mode: str = MASK_RULE
    image_key: Optional[str] = None            # the output image's stem (default: key)
    mask_name: Optional[str] = None            # the output mask's name without --anns (default: the source's)
    make_mask: Optional[Callable] = None       # (image size (w, h)) -> bool (H, W), instead of mask files
    group: Optional[str] = None                # the patient
    facts: dict = field(default_factory=dict)  # what the source's prompts are made of

    @property
    def image_stem(self) -> str:
        return self.image_key or self.key

    @property
    def has_mask(self) -> bool:
        return bool(self.masks) or self.make_mask is not None


@dataclass
class DatasetSource:
    """How to read one raw dataset."""

    name: str
    find: Callable[[Path], list]
    class_name: str
    description: str
    #: mask file name (without anns) for a case key
    mask_name: Callable[[str], str] = lambda key: f"{key}.png"
    #: the case key of a medvlsm split-file entry
    entry_key: Callable[[dict], str] = lambda entry: file_stem(entry["img_name"])
    #: (case, mask, image array) -> prompts p0.., for generated prompts; None: vlsm.data.prompt_gen's
    prompts: Optional[Callable] = None
    #: (raw_dir, {key: case}, seed) -> ({split: [keys]}, notes) for generated splits; None: the stable hash split
    split: Optional[Callable] = None
    #: (anns_dir, {split: entries}, {key: case}) -> None, raising when the split files cannot serve this dataset
    check_anns: Optional[Callable] = None
    #: (entry, split, {key: case}) -> (case or None, why not); None: the case of entry_key(entry)
    match_entry: Optional[Callable] = None
    #: the regular expression whose first group is the patient of an image name (saved for `vlsm data check`)
    patient_pattern: Optional[str] = None


class RawLayoutError(FileNotFoundError):
    """A raw folder that does not look like the dataset's download."""


def images_in(folder: Path) -> dict[str, Path]:
    """{file stem: path} of the image files in ``folder``; two files of one stem are an error."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and file_suffix(p) in IMAGE_EXTENSIONS and not p.name.startswith("."):
            if file_stem(p) in out:
                raise RawLayoutError(f"two files share the name {file_stem(p)} in {folder}: {out[file_stem(p)].name}, "
                                     f"{p.name}; remove one")
            out[file_stem(p)] = p
    return out


def first_dir(raw: Path, candidates: list, need: tuple, what: str) -> Path:
    """The first of ``candidates`` that has every folder of ``need``, or an error saying what was expected."""
    for c in candidates:
        if all((c / n).is_dir() for n in need):
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise RawLayoutError(f"{raw} does not look like {what}: expected the folders {', '.join(need)} in one of "
                         f"{tried}")


def pair_folders(img_dir: Path, mask_dir: Path, mode: str = MASK_RULE) -> list:
    """Cases of an image folder and a mask folder matched by file stem."""
    images, masks = images_in(img_dir), images_in(mask_dir)
    return [SourceCase(k, images[k], [masks[k]] if k in masks else [], mode) for k in sorted(images)]


def numbered_pairs(folder: Path, image_re: re.Pattern, mask_re: re.Pattern) -> tuple[dict, dict]:
    """({number: image}, {number: mask}) of a folder holding numbered images and masks (``N.tif`` and
    ``pN.tif``), numbers without leading zeros; a number given twice is an error."""
    images, masks = {}, {}
    for p in sorted(folder.iterdir()):
        m_img, m_mask = image_re.match(p.name), mask_re.match(p.name)
        if p.is_file() and (m_img or m_mask):
            key = str(int((m_img or m_mask).group(1)))
            target = images if m_img else masks
            if key in target:
                raise RawLayoutError(f"two files share the number {key} in {folder}: {target[key].name}, {p.name}; "
                                     f"remove one")
            target[key] = p
    return images, masks


__all__ = ["SourceCase", "DatasetSource", "RawLayoutError", "MASK_RULE", "MASK_RED_OR_GREEN", "PATIENT_PATTERN",
           "images_in", "first_dir", "pair_folders", "numbered_pairs", "patient_of"]
