"""Prediction inputs: image files and folders of images, as records without masks.

DICOM, NIfTI and MetaImage files are inputs too (:mod:`vlsm.data.medical`). A file of several planes
(a multi-frame DICOM, a 3-D volume) gives one record per chosen plane: ``slices=K`` its plane K,
``slices="all"`` every plane; without ``slices`` it is refused, naming the file and the choice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Union

from vlsm.data._util import IMAGE_EXTENSIONS, file_stem, file_suffix, is_image_file
from vlsm.data.medical import medical_kind, plane_info
from vlsm.data.records import Record

ALL_SLICES = "all"


def _unique_names(paths: list[Path]) -> list[str]:
    stems = [file_stem(p) for p in paths]
    counts = {s: stems.count(s) for s in set(stems)}
    names = []
    for p, stem in zip(paths, stems):
        if counts[stem] == 1:
            names.append(stem)
        else:  # same stem in two folders or with two extensions: keep the case apart
            names.append(f"{p.parent.name}__{stem}_{file_suffix(p).lstrip('.').replace('.', '_')}")
    return names


def _folder_images(p: Path) -> list[Path]:
    found = sorted(q for q in p.iterdir() if is_image_file(q, sniff=True) and not q.name.startswith("."))
    if not found and (p / "images").is_dir():
        found = sorted(q for q in (p / "images").iterdir()
                       if is_image_file(q, sniff=True) and not q.name.startswith("."))
    if not found:
        raise FileNotFoundError(f"no image files in {p} (looked for {', '.join(IMAGE_EXTENSIONS)}, and DICOM "
                                f"files without an extension)")
    return found


def check_slices(slices) -> Optional[Union[int, str]]:
    """``slices`` as :func:`list_images` takes it (None, a plane number >= 0 or ``"all"``), or a one-line error."""
    if slices is None or slices == ALL_SLICES:
        return slices
    try:
        number = int(slices)
    except (TypeError, ValueError):
        number = -1
    if number < 0 or (isinstance(slices, float) and slices != number):
        raise ValueError(f"--slice must be a frame/slice number (0, 1, ...) or 'all', got {slices!r}")
    return number


def slice_name(stem: str, word: str, index: int, planes: int) -> str:
    """The record name of one plane: ``scan_slice012``, ``cine_frame003``."""
    return f"{stem}_{word}{index:0{max(3, len(str(planes - 1)))}d}"


def _planes(path: Path, name: str, slices) -> list[tuple[str, Optional[int]]]:
    """(record name, slice index) of each plane of ``path`` to predict."""
    if medical_kind(path) is None:
        return [(name, None)]
    info = plane_info(path)
    if info.planes == 1:
        return [(name, None)]
    if slices is None:
        raise ValueError(f"{path} holds {info.planes} {info.word}s: choose one with --slice K (K = 0.."
                         f"{info.planes - 1}) or predict each with --slice all")
    if slices == ALL_SLICES:
        chosen = range(info.planes)
    elif slices >= info.planes:
        raise ValueError(f"{path} has {info.planes} {info.word}s (0..{info.planes - 1}); --slice {slices} is not "
                         f"one of them")
    else:
        chosen = [slices]
    return [(slice_name(name, info.word, k, info.planes), k) for k in chosen]


def list_images(paths: Union[str, Path, Iterable[Union[str, Path]]], slices=None) -> list[Record]:
    """Records (without masks) for prediction from image files and/or folders of images.

    A folder contributes its image files (by extension: {exts}; DICOM files without an extension by
    their preamble; other files are ignored; a dataset root with only an ``images/`` subfolder contributes
    that), sorted by name. A file given explicitly must be an image by its extension (or a DICOM file).
    Names are the file stems (made unique when two inputs share one). ``slices`` chooses the planes of
    multi-frame DICOM files and 3-D volumes (see the module docstring); 2-D files ignore it.
    """
    slices = check_slices(slices)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(_folder_images(p))
        elif p.is_file():
            if not is_image_file(p, sniff=True):
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
    records = []
    for name, f in zip(_unique_names(unique), unique):
        for plane_name, index in _planes(f, name, slices):
            records.append(Record(name=plane_name, image_path=f, mask_path=None, prompts={},
                                  dataset=f.parent.resolve().name, slice_index=index))
    return records


def output_stem(record: Record) -> str:
    """The stem of a prediction's output files: the image file's stem (``scan.nii.gz`` -> ``scan``), with the
    plane's ``_slice012``/``_frame003`` for a plane of a volume or multi-frame file."""
    stem = file_stem(record.image_path)
    if record.slice_index is None:
        return stem
    info = plane_info(record.image_path)
    return slice_name(stem, info.word, record.slice_index, info.planes)


def _nifti_groups(records) -> dict:
    """{NIfTI input: [its records]} (records of other files left out)."""
    groups: dict = {}
    for r in records:
        if medical_kind(r.image_path) == "nifti":
            groups.setdefault(Path(r.image_path), []).append(r)
    return groups


def _nifti_name(path: Path, records: list) -> str:
    """``scan.nii.gz`` for a 2-D image or a whole volume, ``scan_slice012.nii.gz`` for one slice of it."""
    whole = records[0].slice_index is None or len(records) == plane_info(path).planes
    return f"{file_stem(path) if whole else output_stem(records[0])}.nii.gz"


def nifti_outputs(records) -> list[str]:
    """The NIfTI mask files :class:`NiftiMasks` will write for the NIfTI inputs among ``records``."""
    return [_nifti_name(path, group) for path, group in _nifti_groups(records).items()]


class NiftiMasks:
    """Predicted masks of NIfTI inputs, gathered per input file and written as NIfTI on its voxels
    (:func:`vlsm.data.medical.nifti_mask_bytes`): one file per input, its slices together."""

    def __init__(self, records):
        self._groups = _nifti_groups(records)
        self._planes: dict = {}

    def add(self, record: Record, mask) -> None:
        """Keep ``record``'s mask if it is (a slice of) a NIfTI input."""
        if Path(record.image_path) in self._groups:
            self._planes.setdefault(Path(record.image_path), {})[record.slice_index or 0] = mask

    def files(self) -> dict:
        """{file name: .nii.gz bytes} of every NIfTI input given masks."""
        from vlsm.data.medical import nifti_mask_bytes

        return {_nifti_name(path, self._groups[path]): nifti_mask_bytes(path, planes)
                for path, planes in self._planes.items()}


list_images.__doc__ = list_images.__doc__.format(exts=", ".join(IMAGE_EXTENSIONS))


__all__ = ["list_images", "output_stem", "check_slices", "slice_name", "ALL_SLICES", "nifti_outputs", "NiftiMasks"]
