"""Decode once: every image and mask is decoded and resized one time per image size, then shared by
all DataLoader workers, all epochs and all runs on the same files.

Where::

    <cache dir>/<dataset>-<S>px/<key>.bin            one entry per case and image size S (bilinear resize)
    <cache dir>/<dataset>-<S>px-<filter>/<key>.bin   the same with another resize filter (e.g. bicubic)

The cache dir is ``cache_dir`` if given (``data.cache_dir``), else :func:`default_cache_dir`:
``$VLSM_CACHE_DIR/decoded`` or ``~/.cache/vlsm/decoded``. Delete it at any time; it is rebuilt.

What an entry holds: exactly what :class:`~vlsm.data.dataset.SegmentationDataset` computes from the
files before normalising (:func:`resize_pair`): the RGB image resized to S x S by Pillow (with the
model's filter, ``Preprocess.interpolation``: bilinear by default; antialiased when shrinking) as uint8, the binarised mask resized nearest as 0/1, the original height
and width, and, when the data check wrote it, the check's verdict on the pair (so that a second run's
check does not decode the files again).

The key: SHA-256 of the entry format, Pillow's version (its resize defines the pixels), S, the resize
filter (so bicubic and bilinear entries never mix), and for the
image and the mask their absolute path, size in bytes and modification time in nanoseconds. Editing,
re-exporting, copying over or re-downloading a file changes its modification time, so its entry is
rebuilt; a stat costs microseconds where hashing the contents would cost as much as decoding them.
(The one thing missed: a file replaced by another of exactly the same size whose modification time
was set back to the old nanosecond, e.g. ``cp -p`` of a same-sized file; delete the cache then.)
Keys are taken when a dataset is built, so every epoch of a run sees the same data.

The entry file: ``b"VLSMDEC1"``, a little-endian uint32 header length, a JSON header (``size``,
``height``, ``width``, ``has_mask``, ``check``), then S*S*3 image bytes and S*S mask bytes. It is
written to a temporary file in the same folder and renamed into place, so a reader never sees half an
entry, any number of builders (DataLoader workers, parallel runs) can fill one cache, and an
interrupted build keeps what it wrote. A damaged or foreign entry is rebuilt.

Why one file per case rather than one array per split: the cases of a run are not known in advance
(``--skip-bad``, ``--drop-overlap``, pooled datasets, evaluation splits), and the data check writes
entries while it decodes; per-case entries serve every subset of a dataset from one build. Reading an
entry is a single read of about S*S*4 bytes, usually from the page cache.

A cache folder that cannot be written is not an error: the data are then decoded from the files as
before, with one warning naming the folder and how to choose another.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import PIL
from PIL import Image

from vlsm.data.medical import metaimage_data_file
from vlsm.utils import cache_root, write_bytes_atomic

log = logging.getLogger("vlsm")

FORMAT = 1
MAGIC = b"VLSMDEC1"
_LENGTH = struct.Struct("<I")


def default_cache_dir() -> Path:
    """``$VLSM_CACHE_DIR/decoded``, else ``$XDG_CACHE_HOME/vlsm/decoded`` or ``~/.cache/vlsm/decoded``."""
    return cache_root() / "decoded"


# Preprocess.interpolation -> Pillow's filter (the names of vlsm.models.base.INTERPOLATIONS)
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
              "lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}


def resample_filter(interpolation: str):
    """Pillow's filter named ``interpolation`` (a ``Preprocess.interpolation``)."""
    try:
        return RESAMPLING[interpolation]
    except (KeyError, TypeError):
        raise ValueError(f"image interpolation must be one of {', '.join(RESAMPLING)}, got {interpolation!r}") from None


def resize_pair(image: Image.Image, mask: Optional[np.ndarray], size: int, interpolation: str = "bilinear"):
    """The one resize of the data pipeline: (uint8 (S, S, 3), bool (S, S) or None).

    The RGB image with Pillow's ``interpolation`` filter on the 8-bit image (antialiased when shrinking;
    Pillow rounds and clips to uint8, as ``PIL.Image.resize`` in the reference UNet-D script and
    torchvision's ``Resize`` on PIL images in medvlsm do); the boolean mask with nearest neighbour, so
    it stays exactly binary (as medvlsm and the UNet-D script do).
    """
    resample = resample_filter(interpolation)
    small = None
    if mask is not None:
        small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255, "L").resize((size, size), Image.NEAREST)) > 127
    resized = np.asarray(image.resize((size, size), resample), dtype=np.uint8)
    return resized, small


class DecodedCase(NamedTuple):
    """One case at one image size: what an entry holds."""

    image: np.ndarray            # uint8 (S, S, 3)
    mask: Optional[np.ndarray]   # bool (S, S), or None for an image without a mask
    height: int                  # the original image size
    width: int
    check: Optional[dict] = None  # the data check's verdict ({"empty": bool, "issues": [...]}) or None


def _file_signature(path) -> Optional[str]:
    # a MetaImage header's pixels are in another file (its .raw): a change to either is a new entry
    data_file = metaimage_data_file(path)
    signature = []
    for part in (path, data_file) if data_file is not None else (path,):
        try:
            st = os.stat(part)
        except OSError:
            return None
        signature.append(f"{os.path.abspath(part)}|{st.st_size}|{st.st_mtime_ns}")
    return "|".join(signature)


class DecodedCache:
    """Entries of one image size in one cache folder (see the module docstring). Picklable, so
    DataLoader workers share it; use :func:`open_decoded_cache` to get one that has been checked
    to be writable."""

    def __init__(self, folder, image_size: int, interpolation: str = "bilinear"):
        self.folder = Path(folder)
        self.image_size = int(image_size)
        if self.image_size <= 0:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        resample_filter(interpolation)  # a known filter
        self.interpolation = interpolation
        self._write_failed = False

    def __repr__(self) -> str:
        return f"DecodedCache({str(self.folder)!r}, image_size={self.image_size}, interpolation={self.interpolation!r})"

    def resize(self, image: Image.Image, mask: Optional[np.ndarray]):
        """:func:`resize_pair` at this cache's image size and filter (what its entries hold)."""
        return resize_pair(image, mask, self.image_size, self.interpolation)

    # -- keys and paths ----------------------------------------------------------------------
    def key(self, image_path, mask_path=None) -> Optional[str]:
        """The entry key of a case as its files are now, or None when a file is missing."""
        parts = [f"vlsm-decoded/{FORMAT}", f"pillow {PIL.__version__}", str(self.image_size), self.interpolation]
        for path in (image_path, mask_path):
            if path is None:
                parts.append("-")
                continue
            sig = _file_signature(path)
            if sig is None:
                return None
            parts.append(sig)
        return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()

    def path(self, key: str, dataset: str = "") -> Path:
        group = "".join(c if c.isalnum() or c in "-_." else "_" for c in (dataset or "data"))
        resize = "" if self.interpolation == "bilinear" else f"-{self.interpolation}"
        return self.folder / f"{group}-{self.image_size}px{resize}" / f"{key}.bin"

    # -- reading -----------------------------------------------------------------------------
    def _parse_header(self, data: bytes) -> Optional[tuple[dict, int]]:
        head = len(MAGIC) + _LENGTH.size
        if len(data) < head or data[:len(MAGIC)] != MAGIC:
            return None
        (n,) = _LENGTH.unpack_from(data, len(MAGIC))
        try:
            header = json.loads(data[head:head + n].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(header, dict) or header.get("size") != self.image_size:
            return None
        return header, head + n

    def read_header(self, key: str, dataset: str = "") -> Optional[dict]:
        """The JSON header of an entry (without reading its pixels), or None if there is none."""
        try:
            with open(self.path(key, dataset), "rb") as fh:
                start = fh.read(len(MAGIC) + _LENGTH.size)
                if len(start) < len(MAGIC) + _LENGTH.size:
                    return None
                (n,) = _LENGTH.unpack_from(start, len(MAGIC))
                parsed = self._parse_header(start + fh.read(n))
        except OSError:
            return None
        return parsed[0] if parsed else None

    def read(self, key: str, dataset: str = "") -> Optional[DecodedCase]:
        """The entry, or None when it is missing or damaged (then the caller decodes the files)."""
        try:
            data = self.path(key, dataset).read_bytes()
        except OSError:
            return None
        parsed = self._parse_header(data)
        if parsed is None:
            return None
        header, offset = parsed
        s = self.image_size
        n_mask = s * s if header.get("has_mask") else 0
        if len(data) != offset + s * s * 3 + n_mask:
            return None
        image = np.frombuffer(data, np.uint8, s * s * 3, offset).reshape(s, s, 3)
        mask = np.frombuffer(data, np.uint8, n_mask, offset + s * s * 3).reshape(s, s) != 0 if n_mask else None
        return DecodedCase(image, mask, int(header["height"]), int(header["width"]), header.get("check"))

    # -- writing -----------------------------------------------------------------------------
    def write(self, key: str, case: DecodedCase, dataset: str = "", *, files=None) -> bool:
        """Store ``case`` under ``key``. With ``files`` (image path, mask path), only if they still
        have that key (a file changed while it was decoded is not cached under its old key). A failure
        (full disk, permissions) warns once and leaves the cache unused for writing; never raises."""
        if self._write_failed:
            return False
        if files is not None and self.key(*files) != key:
            return False
        s = self.image_size
        image = np.ascontiguousarray(case.image, dtype=np.uint8)
        if image.shape != (s, s, 3) or (case.mask is not None and case.mask.shape != (s, s)):
            raise ValueError(f"a {s}px entry needs a ({s}, {s}, 3) image and a ({s}, {s}) mask, "
                             f"got {image.shape} and {None if case.mask is None else case.mask.shape}")
        header = json.dumps({"size": s, "height": int(case.height), "width": int(case.width),
                             "has_mask": case.mask is not None, "check": case.check}).encode("utf-8")
        parts = [MAGIC, _LENGTH.pack(len(header)), header, image.tobytes()]
        if case.mask is not None:
            parts.append(np.ascontiguousarray(case.mask, dtype=np.uint8).tobytes())
        path = self.path(key, dataset)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, b"".join(parts))
        except OSError as err:
            self._write_failed = True
            log.warning("decoded-image cache: cannot write %s (%s); decoding from the files from now on. "
                        "Free some space or choose another folder (--cache-dir, data.cache_dir or "
                        "$VLSM_CACHE_DIR)", path, err.strerror or err)
            return False
        return True


def open_decoded_cache(cache_dir=None, image_size: int = 0, interpolation: str = "bilinear") -> Optional[DecodedCache]:
    """A :class:`DecodedCache` for ``image_size`` and the resize filter ``interpolation`` in ``cache_dir``
    (default :func:`default_cache_dir`), or None with one warning when the folder cannot be created or written (then nothing is cached)."""
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        write_bytes_atomic(probe, b"")
        probe.unlink()
    except OSError as err:
        log.warning("decoded-image cache disabled: cannot write to %s (%s). Images are decoded from the files "
                    "every epoch; choose a writable folder with --cache-dir (data.cache_dir) or $VLSM_CACHE_DIR",
                    folder, err.strerror or err)
        return None
    return DecodedCache(folder, image_size, interpolation)


__all__ = ["DecodedCache", "DecodedCase", "open_decoded_cache", "default_cache_dir", "resize_pair", "resample_filter"]
