"""Reader for a plain image/mask folder::

    <root>/images/<stem>.<ext>           any image format load_image reads
    <root>/masks/<stem>[suffix].<ext>    suffix "", "_mask", "_segmentation" or "_gt" (any case);
                                         the extension may differ from the image's
    <root>/splits.json                   optional: {"train": [stems], "val": [...], "test": [...]}
    <root>/<split>.txt                   optional alternative: one stem (or file name) per line

Without a split file the pairs are split about 80/10/10 into train/val/test by a hash of each name
(:func:`vlsm.data._util.stable_split`, with the seed in the hash): identical on every run, and
**stable when files are added or removed** — a new image lands in a split of its own and never moves
another image to a different split (a shuffle would, and test images would leak into training
between runs). No file is written into the dataset folder. For exact proportions, or a folder of a
few images (which may get an empty val or test split), write ``splits.json``.

Plain folders carry no text, so every case gets the prompts ``p0 = ""`` and ``p1 = class_name``
(default ``"object"``; pass e.g. ``class_name="polyp"``). ``vlsm data convert folder`` writes the
medvlsm layout with descriptive prompts p2-p6 instead.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

from vlsm.data._util import (
    IMAGE_EXTENSIONS,
    STANDARD_SPLITS,
    file_stem,
    file_suffix,
    is_image_file,
    preview,
    stable_split,
)
from vlsm.data.medvlsm import DatasetLayoutError
from vlsm.data.records import Record

IMAGES_DIR = "images"
MASKS_DIR = "masks"
SPLITS_FILE = "splits.json"
MASK_SUFFIXES = ("", "_mask", "_segmentation", "_gt")
DEFAULT_CLASS_NAME = "object"


def is_folder_root(root) -> bool:
    root = Path(root)
    return (root / IMAGES_DIR).is_dir() and (root / MASKS_DIR).is_dir()


def _strip_ext(name: str) -> str:
    p = Path(name.strip())
    return file_stem(p) if file_suffix(p) in IMAGE_EXTENSIONS else p.name


def folder_pairs(root, *, require_masks: bool = True) -> list[tuple[str, Path, Optional[Path]]]:
    """(stem, image, mask or None) for every image in ``root/images``, sorted by stem.

    Raises ``ValueError`` for two images with one stem, a mask matching several ways, or (with
    ``require_masks``) images without a mask.
    """
    root = Path(root)
    img_dir, mask_dir = root / IMAGES_DIR, root / MASKS_DIR
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{img_dir} does not exist: a plain dataset folder has images/ and masks/")
    images: dict[str, list[Path]] = {}
    for p in sorted(img_dir.iterdir()):
        if is_image_file(p, sniff=True) and not p.name.startswith("."):
            images.setdefault(file_stem(p), []).append(p)
    if not images:
        raise FileNotFoundError(f"no images in {img_dir} (looked for {', '.join(IMAGE_EXTENSIONS)} files)")
    clashes = [f"{s} ({', '.join(p.name for p in ps)})" for s, ps in images.items() if len(ps) > 1]
    if clashes:
        raise DatasetLayoutError(f"several images share a name in {img_dir}: {preview(clashes)}. "
                                 f"Rename or remove one of each so every case has a unique name.")
    masks: dict[str, list[Path]] = {}
    if mask_dir.is_dir():
        for p in sorted(mask_dir.iterdir()):
            if is_image_file(p, sniff=True) and not p.name.startswith("."):
                masks.setdefault(file_stem(p).lower(), []).append(p)
    pairs, missing, ambiguous, used = [], [], [], set()
    for stem in sorted(images):
        found = [m for suf in MASK_SUFFIXES for m in masks.get((stem + suf).lower(), [])]
        if len(found) > 1:
            ambiguous.append(f"{stem} ({', '.join(m.name for m in found)})")
        elif not found:
            missing.append(images[stem][0].name)
        else:
            used.add(found[0])
        pairs.append((stem, images[stem][0], found[0] if len(found) == 1 else None))
    if ambiguous:
        raise DatasetLayoutError(f"several masks match one image in {mask_dir}: {preview(ambiguous)}. "
                                 f"Keep one mask per image (merge them first if they are parts of one lesion).")
    if missing and require_masks:
        raise missing_masks(root, missing)
    unused = sorted(p.name for ps in masks.values() for p in ps if p not in used)
    if unused and require_masks:
        warnings.warn(f"{len(unused)} mask(s) in {mask_dir} match no image and are ignored: {preview(unused)}",
                      UserWarning, stacklevel=2)
    return pairs


def missing_masks(root, images: list[str]) -> FileNotFoundError:
    """The error for images of a plain folder that have no mask (their file names)."""
    root = Path(root)
    return FileNotFoundError(
        f"{len(images)} image(s) in {root / IMAGES_DIR} have no mask in {root / MASKS_DIR}: {preview(images)}. A "
        f"mask must have the image's name (any image extension), optionally with the suffix "
        f"{', '.join(repr(s) for s in MASK_SUFFIXES if s)}. Add the masks or remove those images.")


def split_errors(root, split: str, splits: dict, known) -> Optional[FileNotFoundError]:
    """The error for a split a plain folder does not have, or whose list names images it does not have."""
    root = Path(root)
    if split not in splits:
        return FileNotFoundError(f"split {split!r} not found for {root}; available splits: {', '.join(splits)}")
    unknown = [n for n in splits[split] if n not in known]
    if not unknown:
        return None
    source = SPLITS_FILE if (root / SPLITS_FILE).is_file() else f"{split}.txt"
    return FileNotFoundError(f"{root / source} lists {len(unknown)} case(s) of split {split!r} that are not in "
                             f"{root / IMAGES_DIR}: {preview(unknown)}. Fix the split file or add the images.")


def read_split_file(root) -> Optional[dict[str, list[str]]]:
    """The split lists of a plain folder (splits.json or <split>.txt), or None if it has none."""
    root = Path(root)
    path = root / SPLITS_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DatasetLayoutError(f"{path} is not valid JSON ({err})") from err
        if not isinstance(data, dict) or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v) for v in data.values()):
            raise DatasetLayoutError(f"{path} must be an object mapping split names to lists of image names, "
                                     f'e.g. {{"train": ["case1", ...], "val": [...], "test": [...]}}')
        return {k: [_strip_ext(x) for x in v] for k, v in data.items()}
    txts = {p.stem: p for p in sorted(root.glob("*.txt")) if p.stem in STANDARD_SPLITS}
    if txts:
        return {s: [_strip_ext(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
                for s, p in txts.items()}
    return None


def folder_splits(root, *, seed: int = 0, stems: Optional[list[str]] = None) -> dict[str, list[str]]:
    """Split name -> stems: from the split file, else the stable hash split of all stems (~80/10/10)."""
    given = read_split_file(root)
    if given is not None:
        return given
    if stems is None:
        stems = [s for s, _i, _m in folder_pairs(root, require_masks=False)]
    return stable_split(stems, seed)


def read_folder_split(root, split: str, *, class_name: Optional[str] = None, seed: int = 0,
                      require_masks: bool = True) -> list[Record]:
    """Records of one split of a plain images/ + masks/ folder (see the module docstring)."""
    root = Path(root)
    pairs = folder_pairs(root, require_masks=require_masks)
    by_stem = {s: (i, m) for s, i, m in pairs}
    splits = folder_splits(root, seed=seed, stems=list(by_stem))
    error = split_errors(root, split, splits, by_stem)
    if error is not None:
        raise error
    return [folder_record(root, n, *by_stem[n], class_name=class_name) for n in splits[split]]


def folder_record(root, name: str, image: Path, mask: Optional[Path], *,
                  class_name: Optional[str] = None) -> Record:
    """One case of a plain folder: its files, and the only prompts it has, ``p0 = ""`` and
    ``p1 = class_name`` (default :data:`DEFAULT_CLASS_NAME`)."""
    return Record(name=name, image_path=image, mask_path=mask,
                  prompts={"p0": "", "p1": class_name or DEFAULT_CLASS_NAME}, dataset=Path(root).resolve().name)


__all__ = ["read_folder_split", "folder_record", "folder_pairs", "folder_splits", "read_split_file", "is_folder_root",
           "missing_masks", "split_errors", "MASK_SUFFIXES", "DEFAULT_CLASS_NAME"]
