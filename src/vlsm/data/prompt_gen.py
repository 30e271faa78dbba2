"""Generate medvlsm-style prompts ``p0``..``p6`` (and optionally ``p7``..``p9``) from a mask.

For datasets without medvlsm's prompt files. The wording and the order of attributes follow
medvlsm's prompts (e.g. ``"one medium yellow round polyp, located in right of the image"``)::

    p0  ""                                   (the empty prompt)
    p1  class                                "polyp"
    p2  shape class                          "round polyp"
    p3  colour shape class                   "yellow round polyp"
    p4  size colour shape class              "medium yellow round polyp"
    p5  number size colour shape class       "one medium yellow round polyp"
    p6  p5 + ", located in <where> of the image"
    p7  [class + " which is " + d for d in descriptions]              (only with ``descriptions``)
    p8  [p5 + " which is " + d ...]
    p9  [p5 + " which is " + d + " located in <where> of the image" ...]

Attributes are measured, not guessed (medvlsm's came from a VQA model, so they differ in detail):

* **shape** of the largest component: ``irregular`` if its solidity (area / convex-hull area) is
  below :data:`SOLIDITY_IRREGULAR`, else ``round`` if the minor/major axis ratio of its moment
  ellipse is at least :data:`ROUND_AXIS_RATIO`, else ``oval``.
* **colour**: the name in :data:`COLOUR_TABLE` nearest (CIE Lab distance) to the mean RGB of the
  image under the mask; left out when no image is given.
* **size** from the foreground fraction of the image: ``small`` below :data:`SIZE_SMALL`,
  ``large`` from :data:`SIZE_LARGE`, ``medium`` between. (On Kvasir-SEG/CVC-ClinicDB these cut
  points separate medvlsm's own small/medium/large labels.)
* **number** of connected components (8-connectivity) of at least :data:`MIN_COMPONENT_FRACTION`
  of the largest one: ``one``, ``two``, ``three`` or ``many``.
* **location**: the cell of a 3 x 3 grid holding each counted component's centroid, largest
  first, duplicates removed (``top left``, ``top``, ``top right``, ``left``, ``center``, ``right``,
  ``bottom left``, ``bottom``, ``bottom right``).

An empty mask gets ``p2``..``p9`` = ``"no <class>"``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image

SOLIDITY_IRREGULAR = 0.85
ROUND_AXIS_RATIO = 0.75
SIZE_SMALL = 0.08
SIZE_LARGE = 0.30
MIN_COMPONENT_FRACTION = 0.05
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}

#: Colour names and representative sRGB values.
COLOUR_TABLE = {
    "white": (240, 240, 240), "gray": (128, 128, 128), "black": (25, 25, 25),
    "red": (200, 40, 40), "pink": (235, 160, 170), "orange": (235, 135, 50),
    "yellow": (230, 205, 80), "brown": (130, 75, 40), "tan": (210, 180, 140),
    "purple": (130, 60, 150), "blue": (60, 90, 200), "green": (60, 150, 70),
}

_ROWS = ("top", "center", "bottom")
_COLS = ("left", "center", "right")


@dataclass
class MaskDescription:
    empty: bool
    shape: str = ""
    colour: str = ""
    size: str = ""
    number: int = 0
    locations: list = field(default_factory=list)

    @property
    def number_word(self) -> str:
        return NUMBER_WORDS.get(self.number, "many")

    @property
    def where(self) -> str:
        return ", ".join(self.locations)


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


_TABLE_LAB = _srgb_to_lab(np.array(list(COLOUR_TABLE.values())))


def colour_name(rgb) -> str:
    """The :data:`COLOUR_TABLE` name nearest to an RGB triple (CIE Lab distance)."""
    d = np.linalg.norm(_TABLE_LAB - _srgb_to_lab(np.asarray(rgb, dtype=np.float64)), axis=1)
    return list(COLOUR_TABLE)[int(np.argmin(d))]


def _shape(component: np.ndarray) -> str:
    from scipy.spatial import ConvexHull, QhullError

    ys, xs = np.nonzero(component)
    area = len(xs)
    if area < 3:
        return "round"
    cov = np.cov(np.stack([xs, ys]).astype(np.float64))
    evals = np.sort(np.linalg.eigvalsh(cov + np.eye(2) / 12.0))  # + pixel extent
    ratio = float(np.sqrt(evals[0] / evals[1])) if evals[1] > 0 else 1.0
    from scipy import ndimage

    edge = component & ~ndimage.binary_erosion(component)  # the hull only needs boundary pixels
    ex, ey = np.nonzero(edge)[1], np.nonzero(edge)[0]
    corners = np.concatenate([np.stack([ex + dx, ey + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    try:
        hull_area = ConvexHull(corners).volume
    except QhullError:
        hull_area = float(area)
    solidity = area / hull_area if hull_area > 0 else 1.0
    if solidity < SOLIDITY_IRREGULAR:
        return "irregular"
    return "round" if ratio >= ROUND_AXIS_RATIO else "oval"


def _cell(cy: float, cx: float, h: int, w: int) -> str:
    row = _ROWS[min(2, int(3 * cy / h))]
    col = _COLS[min(2, int(3 * cx / w))]
    if row == "center" and col == "center":
        return "center"
    if row == "center":
        return col
    if col == "center":
        return row
    return f"{row} {col}"


def describe_mask(mask: np.ndarray, image: Union[None, np.ndarray, Image.Image] = None) -> MaskDescription:
    """Shape, colour, size, number and locations of the foreground of a boolean mask (H, W)."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"describe_mask expects an (H, W) mask, got shape {mask.shape}")
    h, w = mask.shape
    if not mask.any():
        return MaskDescription(empty=True)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    areas = np.bincount(labels.ravel())[1:]
    order = np.argsort(-areas, kind="stable")
    keep = [int(i) + 1 for i in order if areas[i] >= max(1, MIN_COMPONENT_FRACTION * areas[order[0]])]
    centroids = ndimage.center_of_mass(mask, labels, keep)
    locations = []
    for cy, cx in centroids:
        cell = _cell(cy, cx, h, w)
        if cell not in locations:
            locations.append(cell)
    fraction = float(mask.mean())
    size = "small" if fraction < SIZE_SMALL else "large" if fraction >= SIZE_LARGE else "medium"
    colour = ""
    if image is not None:
        arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        if arr.shape[:2] != mask.shape:
            raise ValueError(f"image {arr.shape[:2]} and mask {mask.shape} sizes differ")
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, -1)
        colour = colour_name(arr[..., :3][mask].astype(np.float64).mean(axis=0))
    return MaskDescription(empty=False, shape=_shape(labels == keep[0]), colour=colour, size=size,
                           number=len(keep), locations=locations)


def prompts_from_description(desc: MaskDescription, class_name: str,
                             descriptions: Optional[Sequence[str]] = None) -> dict:
    """The prompt dict ``p0``..``p6`` (+ ``p7``..``p9`` with ``descriptions``) for a description."""
    cls = class_name.strip()
    if not cls:
        raise ValueError("class_name must not be empty")
    prompts = {"p0": "", "p1": cls}
    if desc.empty:
        none = f"no {cls}"
        prompts.update({f"p{i}": none for i in range(2, 7)})
        if descriptions:
            prompts.update({f"p{i}": [none] for i in range(7, 10)})
        return prompts
    p2 = f"{desc.shape} {cls}"
    p3 = f"{desc.colour} {p2}" if desc.colour else p2
    p4 = f"{desc.size} {p3}"
    p5 = f"{desc.number_word} {p4}"
    where = f"located in {desc.where} of the image"
    prompts.update({"p2": p2, "p3": p3, "p4": p4, "p5": p5, "p6": f"{p5}, {where}"})
    if descriptions:
        prompts["p7"] = [f"{cls} which is {d}" for d in descriptions]
        prompts["p8"] = [f"{p5} which is {d}" for d in descriptions]
        prompts["p9"] = [f"{p5} which is {d} {where}" for d in descriptions]
    return prompts


def generate_prompts(mask: np.ndarray, image=None, class_name: str = "polyp",
                     descriptions: Optional[Sequence[str]] = None) -> dict:
    """medvlsm-style prompts for one case (see the module docstring)."""
    return prompts_from_description(describe_mask(mask, image), class_name, descriptions)


__all__ = ["generate_prompts", "describe_mask", "prompts_from_description", "colour_name",
           "MaskDescription", "COLOUR_TABLE"]
