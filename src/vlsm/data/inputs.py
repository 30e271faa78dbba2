"""Prediction inputs: image files and folders of images, as records without masks."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Union

from vlsm.data._util import IMAGE_EXTENSIONS, is_image_file
from vlsm.data.records import Record


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


__all__ = ["list_images"]
