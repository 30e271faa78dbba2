"""Datasets: reading image/mask/prompt records and turning them into model inputs.

Two dataset layouts are read by :func:`load_split`:

* **medvlsm layout** (what ``vlsm data convert`` writes)::

      <root>/images/   <root>/masks/   <root>/anns/{train,val,test}.json

* **plain folder**::

      <root>/images/<stem>.<ext>   <root>/masks/<stem>[_mask].<ext>   [<root>/splits.json]

Prediction inputs (no masks) come from :func:`list_images`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Union

from vlsm.data._util import IMAGE_EXTENSIONS, is_image_file
from vlsm.data.folder import is_folder_root, read_folder_split
from vlsm.data.images import ImageReadError, load_image
from vlsm.data.masks import binarize_mask, load_mask
from vlsm.data.medvlsm import DatasetLayoutError, is_medvlsm_root, read_medvlsm_split
from vlsm.data.records import Record

LAYOUT_HELP = (
    "A dataset folder must have one of two layouts:\n"
    "  medvlsm layout: ROOT/images/, ROOT/masks/ and ROOT/anns/{train,val,test}.json\n"
    "                  (`vlsm data convert DATASET RAW_DIR OUT_DIR` writes it from an original download)\n"
    "  plain folder:   ROOT/images/<name>.<ext> and ROOT/masks/<name>[_mask].<ext>, optionally\n"
    "                  ROOT/splits.json {\"train\": [names], \"val\": [...], \"test\": [...]};\n"
    "                  without it the cases are split 80/10/10 by a seeded shuffle")


def detect_layout(path) -> str:
    """``"medvlsm"`` or ``"folder"``; raises ``FileNotFoundError`` describing both layouts otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"dataset folder {path} does not exist.\n{LAYOUT_HELP}")
    if is_medvlsm_root(path):
        return "medvlsm"
    if is_folder_root(path):
        return "folder"
    raise FileNotFoundError(f"{path} is not a dataset folder (no anns/, or no images/ and masks/).\n{LAYOUT_HELP}")


def load_split(path, split: str, *, class_name: Optional[str] = None, seed: int = 0,
               require_masks: bool = True) -> list[Record]:
    """Records of ``split`` of the dataset at ``path``, layout detected automatically.

    ``class_name`` (plain folders only) is the prompt ``p1``; ``seed`` drives the 80/10/10 split of
    plain folders without a split file. ``Record.dataset`` is the dataset folder's name.
    """
    layout = detect_layout(path)
    if layout == "medvlsm":
        return read_medvlsm_split(path, split)
    return read_folder_split(path, split, class_name=class_name, seed=seed, require_masks=require_masks)


def _unique_names(paths: list[Path]) -> list[str]:
    stems = [p.stem for p in paths]
    counts = {s: stems.count(s) for s in set(stems)}
    names = []
    for p in paths:
        if counts[p.stem] == 1:
            names.append(p.stem)
        else:  # same stem in two folders or with two extensions: keep the case apart
            names.append(f"{p.parent.name}__{p.stem}_{p.suffix.lstrip('.').lower()}")
    return names


def list_images(paths: Union[str, Path, Iterable[Union[str, Path]]]) -> list[Record]:
    """Records (without masks) for prediction from image files and/or folders of images.

    A folder contributes its image files (by extension: {exts}; other files are ignored; a dataset
    root with only an ``images/`` subfolder contributes that), sorted by name. A file given explicitly
    must have an image extension. Names are the file stems (made unique when two inputs share one).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if is_image_file(q) and not q.name.startswith("."))
            if not found and (p / "images").is_dir():
                found = sorted(q for q in (p / "images").iterdir()
                               if is_image_file(q) and not q.name.startswith("."))
            if not found:
                raise FileNotFoundError(f"no image files in {p} (looked for {', '.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ValueError(f"{p} is not an image file by its extension; give image files "
                                 f"({', '.join(IMAGE_EXTENSIONS)}) or folders of them")
            files.append(p)
        else:
            raise FileNotFoundError(f"input {p} does not exist")
    if not files:
        raise FileNotFoundError("no input images given")
    seen, unique = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    names = _unique_names(unique)
    return [Record(name=n, image_path=f, mask_path=None, prompts={}, dataset=f.parent.resolve().name)
            for n, f in zip(names, unique)]


list_images.__doc__ = list_images.__doc__.format(exts=", ".join(IMAGE_EXTENSIONS))


def __getattr__(name):  # torch is imported only when a dataset is needed
    if name == "SegmentationDataset":
        from vlsm.data.dataset import SegmentationDataset

        return SegmentationDataset
    raise AttributeError(f"module 'vlsm.data' has no attribute {name!r}")


__all__ = ["Record", "load_split", "list_images", "load_mask", "load_image", "binarize_mask",
           "SegmentationDataset", "detect_layout", "ImageReadError", "DatasetLayoutError", "LAYOUT_HELP"]
