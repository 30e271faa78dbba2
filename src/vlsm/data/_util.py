"""Small helpers shared by the data modules (not public API)."""
from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from vlsm.utils import make_temp_dir, preview  # noqa: F401  (preview is re-exported for the data modules)

#: File extensions of the formats Pillow (and tifffile) read (lower case, with the dot).
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: The clinic's formats, by reader: DICOM (pydicom), NIfTI (nibabel), MetaImage (SimpleITK).
MEDICAL_EXTENSIONS = {".dcm": "dicom", ".dicom": "dicom", ".nii": "nifti", ".nii.gz": "nifti",
                      ".mhd": "metaimage", ".mha": "metaimage"}
#: File extensions treated as images (lower case, with the dot).
IMAGE_EXTENSIONS = PICTURE_EXTENSIONS + tuple(MEDICAL_EXTENSIONS)

#: The split names of the medvlsm layout, in their usual order.
STANDARD_SPLITS = ("train", "val", "test")


class ImageReadError(ValueError):
    """An image or mask file that cannot be read or is truncated."""


# What to do about an unreadable file, by what it was read as.
_REREAD_ADVICE = {
    "image": "Re-copy or re-export it, or remove it from the dataset",
    "mask": "Re-export the mask (PNG, 0 = background, 255 = foreground) or remove the case from the dataset",
}


def read_error(path: Path, err, what: str) -> ImageReadError:
    """The one-line error for a file that cannot be read as an image or mask (``what``)."""
    return ImageReadError(
        f"cannot read {what} {path}: {err}. The file is unreadable, truncated or not an image "
        f"(an interrupted copy or download?). {_REREAD_ADVICE[what]} "
        f"(`vlsm data check` lists every such file).")


def file_suffix(path) -> str:
    """The file's extension in lower case, ``.nii.gz`` counted as one."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def file_stem(path) -> str:
    """The file's name without its extension (``scan.nii.gz`` -> ``scan``)."""
    name = Path(path).name
    return name[:len(name) - len(file_suffix(path))] if file_suffix(path) else name


def has_dicom_preamble(path) -> bool:
    """True for a file whose bytes 128-131 are ``DICM`` (DICOM files without an extension)."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_image_file(path: Path, sniff: bool = False) -> bool:
    """An image by its extension (with ``sniff``, also a DICOM file without one, by its preamble)."""
    if not path.is_file():
        return False
    suffix = file_suffix(path)
    return suffix in IMAGE_EXTENSIONS or (sniff and maybe_dicom_name(path) and has_dicom_preamble(path))


def maybe_dicom_name(path: Path) -> bool:
    """No extension, or a number as one (``IM000001``, ``1.2.840.113619.2.1``): how DICOM files are often named."""
    return not path.suffix or path.suffix[1:].isdigit()


def stable_split(keys: Sequence[str], seed: int = 0,
                 fractions: tuple = (0.8, 0.1, 0.1)) -> dict[str, list[str]]:
    """Train/val/test split of ``keys`` by a hash of each key: adding or removing keys never moves
    another key to a different split (a shuffle would reshuffle everything).

    Each key's place is ``sha256(f"{seed}/{key}")`` read as a number in [0, 1): below ``fractions[0]``
    it is train, below ``fractions[0] + fractions[1]`` val, otherwise test. The proportions are met
    on average, not exactly: a folder of a few images may get an empty val or test split (write a
    split file then). Each split keeps the keys' sorted order; another ``seed`` gives another split.
    """
    train_end, val_end = fractions[0], fractions[0] + fractions[1]
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for key in sorted(set(keys)):
        digest = hashlib.sha256(f"{int(seed)}/{key}".encode("utf-8")).digest()
        place = int.from_bytes(digest[:8], "big") / 2.0 ** 64
        out["train" if place < train_end else "val" if place < val_end else "test"].append(key)
    return out


def check_output_dir(out_dir: Path, overwrite: bool, protect: Sequence[Path] = (),
                     markers: Sequence[str] = ()) -> None:
    """Refuse an output folder that would destroy something that is not ours.

    * ``out_dir`` equal to, inside or around an input in ``protect`` is always refused;
    * a non-empty ``out_dir`` is refused unless ``overwrite``;
    * with ``overwrite``, a non-empty ``out_dir`` is replaced only if it holds one of the ``markers``
      (the file this toolkit writes into every folder it makes, e.g. ``vlsm_convert.json``).
    """
    out_dir = Path(out_dir)
    resolved = out_dir.resolve()
    for p in protect:
        p = Path(p).resolve()
        if p == resolved or p in resolved.parents:
            raise ValueError(f"refusing to write {out_dir}: it is (inside) the input {p}. "
                             f"Choose an output folder outside the input.")
        if resolved in p.parents and overwrite:
            raise ValueError(f"refusing to overwrite {out_dir}: it contains the input {p}. "
                             f"Choose an output folder outside the input.")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder: choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output folder {out_dir} is not empty: choose a new folder, or pass --overwrite "
                f"(overwrite=True) to replace it")
        if markers and not any((out_dir / m).is_file() for m in markers):
            raise FileExistsError(
                f"refusing to overwrite {out_dir}: it was not written by vlsm (no {' or '.join(markers)} in it), "
                f"and --overwrite only replaces folders vlsm made. Choose a new output folder, or remove "
                f"{out_dir} yourself")


@contextmanager
def atomic_directory(out_dir: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; on success it replaces ``out_dir`` in one rename.

    On an exception (or interruption) the temporary folder is removed and ``out_dir`` is untouched,
    so a reader never sees a half-written dataset. The folder gets the umask's permissions (not
    mkdtemp's 0o700), so colleagues can read a dataset on a shared machine.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out_dir.parent, prefix=f".{out_dir.name}.tmp-")
    try:
        yield tmp
        old = None
        if out_dir.exists():
            if any(out_dir.iterdir()) and not overwrite:
                raise FileExistsError(f"output folder {out_dir} appeared while writing; not replacing it")
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
