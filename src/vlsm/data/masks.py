"""Masks: the one rule that turns any mask file into a boolean foreground array.

Every part of ``vlsm`` (datasets, evaluation, converters, ``vlsm data check``) reads masks through
:func:`load_mask` / :func:`binarize_mask`, so a mask means the same thing everywhere.

The binarisation rule
---------------------
1. **Read** the file with Pillow (TIFFs Pillow cannot decode are read with ``tifffile``) and
   decode it completely (a truncated file is an error naming the file).
2. **Reduce to one 8-bit channel** ("intensity", 0..255):

   * 1-bit (mode ``"1"``): 0/255.
   * 8-bit grey ``L`` (and ``LA``): the grey value.
   * 16/32-bit integer and float modes (``I;16``, ``I``, ``F``): Pillow's conversion to ``L``,
     which clips to 0..255 (so 0/1, 0/255 and 0/65535 masks all work).
   * palette (``P``): the palette colours, then as RGB(A).
   * ``RGB``/``RGBA``: Pillow's luma conversion to ``L`` when the mask is grey (no pixel whose
     channels differ by more than :data:`COLOUR_SPREAD`); for a *colour* mask (e.g. BKAI-IGH's
     red/green labels) the largest channel, because luma would turn pure red (76) or blue (29)
     into background.
   * alpha is ignored, except when the colour channels are constant and only alpha varies
     (a mask drawn as transparency): then alpha is the intensity.
3. **Threshold**: foreground = intensity > 127.
   *Exception*: when every value is 0 or 1 the file is a 0/1 label mask and foreground = 1.

JPEG compression noise (values 0-8 and 247-255 in Kvasir-SEG) and anti-aliased edges (CVC-ClinicDB)
therefore binarise as expected. ``numpy`` inputs follow the same rule: bool arrays are used as they
are; (H, W) / (H, W, 3|4) integer arrays as the matching modes; float arrays with all values in
[0, 1] are probabilities or fractions and foreground = value > 0.5.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Union

import numpy as np
from PIL import Image

from vlsm.data.images import decode_file

#: Foreground threshold on the 8-bit intensity (foreground is strictly greater).
THRESHOLD = 127
#: A pixel whose RGB channels differ by more than this marks a colour (not grey) mask.
COLOUR_SPREAD = 64


class MaskIntensity(NamedTuple):
    """The 8-bit intensity the rule thresholds, and how it was obtained."""

    values: np.ndarray  # uint8 (H, W)
    source: str         # "bool", "grey", "colour", "alpha", "float"


def _rgb_intensity(rgb: np.ndarray) -> MaskIntensity:
    """rgb: uint8 (H, W, 3)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if np.array_equal(r, g) and np.array_equal(g, b):
        return MaskIntensity(np.ascontiguousarray(r), "grey")  # luma of a grey pixel is its value
    high = np.maximum(np.maximum(r, g), b)
    low = np.minimum(np.minimum(r, g), b)
    if int((high - low).max()) > COLOUR_SPREAD:
        return MaskIntensity(high, "colour")
    grey = np.asarray(Image.fromarray(np.ascontiguousarray(rgb), "RGB").convert("L"))
    return MaskIntensity(grey, "grey")


def _with_alpha(colour: np.ndarray, alpha: np.ndarray) -> MaskIntensity:
    """colour: (H, W) or (H, W, 3) uint8; alpha (H, W) uint8."""
    flat = colour.reshape(-1, colour.shape[-1]) if colour.ndim == 3 else colour.reshape(-1, 1)
    colour_constant = flat.size == 0 or bool((flat == flat[:1]).all())
    if colour_constant and alpha.size and alpha.min() != alpha.max():
        return MaskIntensity(alpha, "alpha")
    if colour.ndim == 3:
        return _rgb_intensity(colour)
    return MaskIntensity(colour, "grey")


def _array_intensity(arr: np.ndarray) -> MaskIntensity:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (2, 3, 4)):
        raise ValueError(f"a mask must be (H, W) or (H, W, 1|2|3|4); got an array of shape {arr.shape}")
    if arr.dtype == bool:
        if arr.ndim == 3:
            arr = arr.any(axis=2)
        return MaskIntensity(arr.astype(np.uint8) * 255, "bool")
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.nan_to_num(arr.astype(np.float64))
        if finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0):
            if finite.ndim == 3:
                finite = finite[..., :3].max(axis=2) if finite.shape[-1] >= 3 else finite[..., 0]
            return MaskIntensity(np.where(finite > 0.5, 255, 0).astype(np.uint8), "float")
        arr = np.clip(np.round(finite), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)  # the same clipping as Pillow's "I" -> "L"
    if arr.ndim == 2:
        return MaskIntensity(arr, "grey")
    if arr.shape[-1] == 2:  # grey + alpha
        return _with_alpha(arr[..., 0], arr[..., 1])
    if arr.shape[-1] == 4:
        return _with_alpha(arr[..., :3], arr[..., 3])
    return _rgb_intensity(arr)


def mask_intensity(mask: Union[Image.Image, np.ndarray]) -> MaskIntensity:
    """Step 2 of the rule: the 8-bit intensity (H, W) of a PIL mask or an array."""
    if isinstance(mask, Image.Image):
        mode = mask.mode
        if mode == "1":
            return MaskIntensity(np.asarray(mask.convert("L")), "grey")
        if mode == "P":
            mask = mask.convert("RGBA" if "transparency" in mask.info else "RGB")
            mode = mask.mode
        if mode in ("L", "RGB", "RGBA", "LA"):
            return _array_intensity(np.asarray(mask))
        if mode.startswith("I") or mode == "F":
            return MaskIntensity(np.asarray(mask.convert("L")), "grey")
        return _array_intensity(np.asarray(mask.convert("RGBA")))
    if isinstance(mask, np.ndarray):
        return _array_intensity(mask)
    raise TypeError(f"binarize_mask expects a PIL image or a numpy array, not {type(mask).__name__}")


def threshold_intensity(values: np.ndarray) -> np.ndarray:
    """Step 3 of the rule: 0/1 label masks keep 1 as foreground, others are thresholded at > 127."""
    if values.size and int(values.max()) <= 1:
        return values == 1
    return values > THRESHOLD


def binarize_mask(mask: Union[Image.Image, np.ndarray]) -> np.ndarray:
    """Boolean foreground (H, W) of a PIL mask or an array, by the module's rule."""
    return threshold_intensity(mask_intensity(mask).values)


def read_mask_intensity(path) -> MaskIntensity:
    """Read a mask file and return its 8-bit intensity (for checks that look at raw values)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    return mask_intensity(decode_file(path, "mask"))


class MaskSizeError(ValueError):
    """A mask whose size differs from its image's (it would otherwise be stretched to fit)."""


def check_mask_size(mask_path, mask_shape, size, *, image_path=None, name: Optional[str] = None) -> None:
    """Raise :class:`MaskSizeError` naming the files unless a mask of ``mask_shape`` (H, W) has the
    image size ``size`` (width, height)."""
    (h, w), (width, height) = tuple(mask_shape)[:2], tuple(size)
    if (h, w) == (height, width):
        return
    whose = f" for {name!r}" if name else ""
    image = f"{image_path} is {width}x{height}" if image_path is not None else f"its image is {width}x{height}"
    raise MaskSizeError(f"image and mask sizes differ{whose}: {image}, {mask_path} is {w}x{h}. The mask "
                        f"probably belongs to another image or was resized; fix the pair (`vlsm data check` "
                        f"lists all such cases)")


def load_mask(path, size: Optional[tuple] = None, *, image_path=None, name: Optional[str] = None) -> np.ndarray:
    """Read a mask file as a boolean foreground array (H, W), by the module's rule.

    With ``size`` = the image's (width, height), a mask of another size is an error
    (:class:`MaskSizeError`, naming ``image_path`` and the mask file), never stretched to fit.
    """
    mask = threshold_intensity(read_mask_intensity(path).values)
    if size is not None:
        check_mask_size(path, mask.shape, size, image_path=image_path, name=name)
    return mask


def save_mask(path, mask: np.ndarray) -> None:
    """Write a boolean (or 0/1) mask as an 8-bit PNG with 0 = background and 255 = foreground."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"save_mask expects an (H, W) mask, got shape {mask.shape}")
    Image.fromarray(np.where(mask.astype(bool), 255, 0).astype(np.uint8), "L").save(path, format="PNG")


__all__ = ["load_mask", "check_mask_size", "MaskSizeError", "binarize_mask", "save_mask", "mask_intensity", "read_mask_intensity",
           "threshold_intensity", "MaskIntensity", "THRESHOLD", "COLOUR_SPREAD"]
