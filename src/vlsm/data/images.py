"""Reading input images.

:func:`load_image` returns a fully decoded ``PIL.Image`` in RGB for PNG, JPEG, BMP, WebP and TIFF
files, and for the clinic's DICOM, NIfTI and MetaImage files (one plane, read by
:mod:`vlsm.data.medical`: a multi-frame file or a volume needs ``slice_index``). TIFFs that Pillow
cannot decode (e.g. the CVC-ClinicDB originals) are read with ``tifffile``. The whole file is decoded on reading, so a truncated or corrupt file fails here with
an :class:`ImageReadError` naming the file, not later inside a training loop.

EXIF orientation tags are deliberately *not* applied: masks carry no such tag, and rotating only
the image would misalign it with its mask.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlsm.data._util import ImageReadError
from vlsm.data._util import read_error as _read_error
from vlsm.data.medical import medical_kind, plane_info, read_plane, read_spacing

TIFF_SUFFIXES = (".tif", ".tiff")


def read_tiff_array(path: Path) -> np.ndarray:
    """The first page of a TIFF as an array (H, W) or (H, W, C), via tifffile."""
    import tifffile

    arr = tifffile.imread(str(path), key=0)
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) storage
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"unexpected TIFF array shape {arr.shape}")
    return arr


def array_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale an integer/float/bool array to uint8 the way image viewers do (by its dtype's range)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        if info.min < 0:
            arr = arr.astype(np.float64) - info.min
        return np.round(arr.astype(np.float64) * (255.0 / (info.max - info.min))).astype(np.uint8)
    arr = np.nan_to_num(arr.astype(np.float64))
    if arr.size and arr.max() <= 1.0 and arr.min() >= 0.0:
        arr = arr * 255.0
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)


def decode_file(path, what: str = "image") -> Union[Image.Image, np.ndarray]:
    """Fully decode an image or mask file (``what`` says which, for the error): a ``PIL.Image``, or
    tifffile's array for a TIFF Pillow cannot decode (e.g. CVC-ClinicDB's). A truncated, corrupt or
    non-image file raises :class:`ImageReadError` naming the file and the fix."""
    path = Path(path)
    if medical_kind(path) is not None:  # a mask as its stored labels, an image as displayed
        return read_plane(path, raw=what == "mask")
    data = path.read_bytes()  # no file handle stays open, whatever the format
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # force a full decode: truncated files fail here
        return img
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        problem = err
        if path.suffix.lower() in TIFF_SUFFIXES:
            try:
                return read_tiff_array(path)
            except Exception as terr:  # noqa: BLE001 - report both readers' complaints
                problem = f"{err}; tifffile: {terr}"
        raise _read_error(path, problem, what) from None


def load_image(path, slice_index: Optional[int] = None) -> Image.Image:
    """Read an image file as a fully decoded RGB ``PIL.Image``.

    Grey, palette, 16-bit and alpha images are converted to RGB (alpha is dropped); DICOM, NIfTI and
    MetaImage planes as :mod:`vlsm.data.medical` displays them. ``slice_index``: the frame of a
    multi-frame DICOM or the slice of a 3-D volume (required for those, refused for other files).
    Raises ``FileNotFoundError`` for a missing file and :class:`ImageReadError` (a ``ValueError``)
    naming the file for an unreadable or truncated one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if medical_kind(path) is not None:
        return to_rgb(read_plane(path, slice_index))
    if slice_index is not None:
        raise ImageReadError(f"{path} is a 2-D picture: it has no frame or slice {slice_index} to choose")
    img = decode_file(path, "image")
    if isinstance(img, np.ndarray):  # a TIFF read by tifffile: scale by its dtype's range
        arr = array_to_uint8(img)
        img = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 2 else arr)
    return to_rgb(img)


def to_rgb(image: Union[Image.Image, np.ndarray]) -> Image.Image:
    """An in-memory image in RGB, converted as :func:`load_image` converts files: 16-bit and float values
    scaled to 8 bits, grey and RGBA to RGB (alpha dropped)."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
            raise ValueError(f"an image array must be (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, "
                             f"got shape {image.shape}")
        image = Image.fromarray(array_to_uint8(arr))
    elif not isinstance(image, Image.Image):
        raise TypeError(f"images are paths, PIL images or numpy arrays, got {type(image).__name__}")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = Image.fromarray(array_to_uint8(np.asarray(image)))
    return image if image.mode == "RGB" else image.convert("RGB")


def image_size(path) -> tuple[int, int]:
    """(width, height) of an image file without decoding the pixels (TIFFs via tifffile if needed)."""
    path = Path(path)
    if medical_kind(path) is not None:
        info = plane_info(path)
        return info.width, info.height
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError):
        if path.suffix.lower() in TIFF_SUFFIXES:
            arr = read_tiff_array(path)
            return arr.shape[1], arr.shape[0]
        raise


def check_pixel_limit(paths: Iterable, max_pixels: Optional[int] = None, *,
                      flag: str = "--max-pixels") -> None:
    """Refuse, by name, an input image with more than ``max_pixels`` pixels (read from its header, nothing
    decoded), and make Pillow refuse such images wherever they are decoded later. ``None`` keeps
    Pillow's decompression-bomb limit. Unreadable files are left to the readers, which name them."""
    import warnings

    from PIL import Image

    limit = int(max_pixels) if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    if not limit:
        return
    Image.MAX_IMAGE_PIXELS = None  # the headers are read here, with the size compared below
    try:
        for path in paths:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    width, height = image_size(path)
            except (OSError, ValueError, SyntaxError):
                continue
            if width * height > limit:
                raise ValueError(f"{path} is too large: {width}x{height} = {width * height} pixels, over the limit "
                                 f"of {limit} ({flag}); raise {flag} if the file is trusted, or downscale it")
    finally:
        Image.MAX_IMAGE_PIXELS = limit  # and wherever images are decoded later


__all__ = ["load_image", "to_rgb", "decode_file", "ImageReadError", "image_size", "check_pixel_limit", "read_spacing"]
