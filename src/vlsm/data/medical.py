"""The clinic's image files as 2-D planes: DICOM (pydicom), NIfTI (nibabel) and MetaImage (SimpleITK).

A plane is what a 2-D model segments: a single-frame DICOM, a 2-D NIfTI or MetaImage, or one frame of a
multi-frame DICOM (a cine loop, a tomosynthesis stack) or one slice of a 3-D volume (along its last
voxel axis). A file with several planes is never read whole by accident: without ``slice_index`` it is
refused in one line that says how many planes it has and how to choose (``vlsm predict --slice K`` or
``--slice all``).

Orientation: a NIfTI plane's rows are its second voxel axis and its columns the first, as SimpleITK
and nnU-Net read NIfTI and MetaImage files (``array[j, i]``); nothing is flipped or resampled, so a
mask written back (:func:`nifti_mask_bytes`) lies on the input's voxels.

Display values (:func:`read_plane`, what :func:`vlsm.data.images.load_image` returns as RGB):

* **DICOM** monochrome: the modality LUT (rescale slope and intercept), then the VOI LUT if the file
  has one, else its first window (centre/width; LINEAR, LINEAR_EXACT or SIGMOID), else 8-bit data as
  stored and deeper data stretched from its minimum to its maximum; MONOCHROME1 is inverted (high
  values dark). RGB and YBR files are read as RGB, PALETTE COLOR through its palette.
* **NIfTI / MetaImage**: 8-bit data as stored; other data from the header's display range
  (NIfTI ``cal_min``/``cal_max``) if set, else stretched from the plane's minimum to its maximum.

``raw=True`` gives the stored values instead (after the modality LUT or NIfTI scaling): label maps
and masks are read that way. Pixel spacing in mm: :func:`read_spacing`.

Every problem is one :class:`~vlsm.data._util.ImageReadError` naming the file; a plane over Pillow's
decompression limit (``--max-pixels``) is refused before it is decoded.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from vlsm.data._util import MEDICAL_EXTENSIONS, ImageReadError, file_suffix, has_dicom_preamble, maybe_dicom_name

#: What to call one plane of each kind of file.
PLANE_WORD = {"dicom": "frame", "nifti": "slice", "metaimage": "slice"}
#: NIfTI spatial units -> millimetres.
_NIFTI_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001, "unknown": 1.0}


def medical_kind(path) -> Optional[str]:
    """``"dicom"``, ``"nifti"`` or ``"metaimage"`` by extension (a DICOM file without an extension by its
    preamble), None for other files."""
    kind = MEDICAL_EXTENSIONS.get(file_suffix(path))
    if kind is None and maybe_dicom_name(Path(path)) and has_dicom_preamble(path):
        return "dicom"
    return kind


@dataclass(frozen=True)
class PlaneInfo:
    """A medical file's planes, from its header (nothing decoded)."""

    kind: str
    width: int
    height: int
    planes: int = 1          # frames of a DICOM, slices of a volume

    @property
    def word(self) -> str:
        return PLANE_WORD[self.kind]


def _fail(path, problem) -> ImageReadError:
    text = " ".join(str(problem).split())  # one line, whatever the library wrote
    return ImageReadError(f"cannot read {path}: {text[:300]}")


def _choose(path, info: PlaneInfo, slice_index: Optional[int]) -> int:
    """The plane to read; a file of several planes needs one chosen."""
    if info.planes == 1:
        if slice_index not in (None, 0):
            raise ImageReadError(f"{path} has one {info.word}, not {info.word} {slice_index}: read it without a "
                                 f"{info.word} number")
        return 0
    if slice_index is None:
        raise ImageReadError(f"{path} holds {info.planes} {info.word}s ({info.width}x{info.height} each): choose one "
                             f"with --slice K (K = 0..{info.planes - 1}; slice_index=K in Python), or every "
                             f"{info.word} with --slice all")
    if not 0 <= int(slice_index) < info.planes:
        raise ImageReadError(f"{path} has {info.planes} {info.word}s (0..{info.planes - 1}); there is no "
                             f"{info.word} {slice_index}: choose one in that range")
    return int(slice_index)


def _check_limit(path, info: PlaneInfo) -> None:
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit and info.width * info.height > limit:
        raise ImageReadError(f"{path} is too large: {info.width}x{info.height} = {info.width * info.height} pixels "
                             f"per {info.word}, over the decompression limit of {int(limit)} (--max-pixels); raise "
                             f"it if the file is trusted")


# -- DICOM --------------------------------------------------------------------------------------

def _dicom_header(path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as err:
        raise _fail(path, f"not a DICOM file ({err})") from None
    if not has_dicom_preamble(path) and not any(tag.group in (0x0008, 0x0010, 0x0028) for tag in ds.keys()):
        raise _fail(path, "not a DICOM file (no DICM preamble and no DICOM attributes)")
    if "Rows" not in ds or "Columns" not in ds:
        raise _fail(path, "this DICOM file holds no image (no Rows/Columns: a report, a structured report "
                          "or a DICOMDIR?)")
    return ds


def _dicom_info(path) -> PlaneInfo:
    ds = _dicom_header(path)
    return PlaneInfo("dicom", int(ds.Columns), int(ds.Rows), int(ds.get("NumberOfFrames", 1) or 1))


def _window(arr: np.ndarray, ds) -> Optional[np.ndarray]:
    """The first VOI window of ``ds`` applied to ``arr``, in [0, 1]; None when there is none."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    center, width = (float(v[0] if ds[k].VM > 1 else v) for k, v in
                     (("WindowCenter", ds.WindowCenter), ("WindowWidth", ds.WindowWidth)))
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    x = arr.astype(np.float64)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / max(width, 1e-6)))
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / max(width, 1e-6) + 0.5, 0.0, 1.0)
    width = max(width, 1.0)  # LINEAR (PS3.3 C.11.2.1.2.1)
    return np.clip((x - (center - 0.5)) / max(width - 1.0, 1e-6) + 0.5, 0.0, 1.0)


def _dicom_display(arr: np.ndarray, ds, raw_bits: int) -> np.ndarray:
    """Monochrome pixel values (after the modality LUT) -> uint8 for display (VOI LUT or window, inversion)."""
    from pydicom.pixels import apply_voi

    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2]) or 16
        unit = apply_voi(arr, ds).astype(np.float64) / float(2 ** bits - 1)
    else:
        unit = _window(arr, ds)
    if unit is None:
        rescaled = "RescaleSlope" in ds or ds.get("ModalityLUTSequence")
        if raw_bits <= 8 and not rescaled:
            unit = arr.astype(np.float64) / 255.0
        else:
            unit = _stretch(arr)
    out = np.round(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    return 255 - out if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1" else out


def _read_dicom(path, slice_index: Optional[int], raw: bool) -> np.ndarray:
    from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array

    ds = _dicom_header(path)
    info = PlaneInfo("dicom", int(ds.Columns), int(ds.Rows), int(ds.get("NumberOfFrames", 1) or 1))
    index = _choose(path, info, slice_index)
    _check_limit(path, info)
    try:
        arr = pixel_array(str(path), index=index if info.planes > 1 else None)
    except Exception as err:  # noqa: BLE001 - pydicom's decoders raise many kinds; all mean "cannot decode"
        raise _fail(path, f"its pixel data cannot be decoded ({err}); a compressed transfer syntax may need "
                          f"pylibjpeg or gdcm installed, or decompress it first (gdcmconv --raw)") from None
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        return _to_uint8_rgb(apply_color_lut(arr, ds))
    if arr.ndim == 3:  # RGB, or YBR converted to RGB by pydicom
        return arr if raw else _to_uint8_rgb(arr)
    if not photometric.startswith("MONOCHROME"):
        raise _fail(path, f"photometric interpretation {photometric or '(none)'} is not supported "
                          f"(MONOCHROME1/2, RGB, YBR and PALETTE COLOR are)")
    values = apply_modality_lut(arr, ds)
    if raw:
        return values
    return _dicom_display(values, ds, int(ds.get("BitsStored", 8) or 8))


def _dicom_spacing(path) -> Optional[tuple]:
    ds = _dicom_header(path)
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if spacing is None and ds.get("SharedFunctionalGroupsSequence"):  # enhanced multi-frame objects
        measures = ds.SharedFunctionalGroupsSequence[0].get("PixelMeasuresSequence")
        spacing = measures[0].get("PixelSpacing") if measures else None
    if not spacing or len(spacing) < 2:
        return None
    return float(spacing[0]), float(spacing[1])  # (between rows, between columns)


# -- NIfTI --------------------------------------------------------------------------------------

def _nifti(path):
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    try:
        img = nib.load(str(path))
    except (ImageFileError, OSError, ValueError, EOFError) as err:
        raise _fail(path, f"not a NIfTI file ({err})") from None
    return img


def _plane_dims(path, shape: tuple, what: str) -> tuple:
    """(first axis, second axis, planes) of a shape, trailing length-1 axes ignored."""
    dims = list(shape)
    while len(dims) > 2 and dims[-1] == 1:
        dims.pop()
    if len(dims) == 2:
        return dims[0], dims[1], 1
    if len(dims) == 3:
        return dims[0], dims[1], dims[2]
    raise _fail(path, f"a {len(dims)}-D {what} of shape {tuple(shape)}: only 2-D images and slices of 3-D volumes "
                      f"are read; split it into 3-D volumes first")


def _nifti_info(path) -> PlaneInfo:
    img = _nifti(path)
    i, j, n = _plane_dims(path, img.shape, "NIfTI image")
    return PlaneInfo("nifti", int(i), int(j), int(n))


def _read_nifti(path, slice_index: Optional[int], raw: bool) -> np.ndarray:
    img = _nifti(path)
    i, j, n = _plane_dims(path, img.shape, "NIfTI image")
    info = PlaneInfo("nifti", int(i), int(j), int(n))
    k = _choose(path, info, slice_index)
    _check_limit(path, info)
    if img.get_data_dtype().names:
        raise _fail(path, "RGB NIfTI images are not supported; store one grey channel")
    index = (slice(None), slice(None)) + ((k,) if len(img.shape) > 2 else ()) + (0,) * max(0, len(img.shape) - 3)
    try:
        plane = np.asarray(img.dataobj[index]).T  # rows = second voxel axis, as SimpleITK reads it
    except (OSError, ValueError, EOFError, gzip.BadGzipFile) as err:
        raise _fail(path, f"its data cannot be read ({err}); the file may be truncated") from None
    if raw or plane.dtype == np.uint8:
        return plane
    low, high = float(img.header.get("cal_min", 0) or 0), float(img.header.get("cal_max", 0) or 0)
    unit = np.clip((plane - low) / (high - low), 0, 1) if high > low else _stretch(plane)
    return np.round(unit * 255.0).astype(np.uint8)


def _nifti_spacing(path) -> tuple:
    img = _nifti(path)
    zooms = img.header.get_zooms()
    unit = _NIFTI_MM.get(img.header.get_xyzt_units()[0], 1.0)
    return round(float(zooms[1]) * unit, 6), round(float(zooms[0]) * unit, 6)  # rows: second voxel axis (float32)


# -- MetaImage ----------------------------------------------------------------------------------

def _metaimage(path):
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise _fail(path, f"not a readable MetaImage file ({_itk_problem(err)})") from None
    return reader


def metaimage_data_file(path) -> Optional[Path]:
    """The file holding a MetaImage header's pixels (its ``ElementDataFile``), None when they are in the
    header's own file (``LOCAL``), or for other files. Read from the header's text: nothing is decoded."""
    if file_suffix(path) != ".mhd":
        return None
    try:
        with open(path, "rb") as fh:
            header = fh.read(65536).decode("latin-1")
    except OSError:
        return None
    for line in header.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ElementDataFile":
            value = value.strip()
            return None if value.upper() == "LOCAL" or not value else Path(path).parent / value
    return None


def _itk_problem(err) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("/", "itk::", "sitk::"))]
    return (useful or lines or ["unknown error"])[-1]


def _metaimage_info(path) -> PlaneInfo:
    x, y, n = _plane_dims(path, tuple(_metaimage(path).GetSize()), "MetaImage")
    return PlaneInfo("metaimage", int(x), int(y), int(n))


def _read_metaimage(path, slice_index: Optional[int], raw: bool) -> np.ndarray:
    import SimpleITK as sitk

    reader = _metaimage(path)
    size = tuple(reader.GetSize())
    x, y, n = _plane_dims(path, size, "MetaImage")
    info = PlaneInfo("metaimage", int(x), int(y), int(n))
    k = _choose(path, info, slice_index)
    _check_limit(path, info)
    if len(size) > 2:  # read only the chosen slice
        reader.SetExtractIndex([0, 0, k] + [0] * (len(size) - 3))
        reader.SetExtractSize([x, y] + [0] * (len(size) - 2))
    try:
        plane = sitk.GetArrayFromImage(reader.Execute())
    except RuntimeError as err:
        raise _fail(path, f"its data cannot be read ({_itk_problem(err)}); is its .raw file beside it and "
                          f"complete?") from None
    if raw or plane.dtype == np.uint8:
        return plane
    return _to_uint8_rgb(plane) if plane.ndim == 3 else np.round(_stretch(plane) * 255.0).astype(np.uint8)


def _metaimage_spacing(path) -> tuple:
    spacing = _metaimage(path).GetSpacing()
    return float(spacing[1]), float(spacing[0])


# -- the kinds together -------------------------------------------------------------------------

def _stretch(arr: np.ndarray) -> np.ndarray:
    """Values -> [0, 1] from the array's minimum to its maximum (a constant array gives zeros)."""
    x = np.nan_to_num(arr.astype(np.float64))
    low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    return (x - low) / (high - low) if high > low else np.zeros_like(x)


def _to_uint8_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0 and arr.max() > 255:
        return np.round(arr.astype(np.float64) * 255.0 / float(2 ** int(np.ceil(np.log2(arr.max() + 1))) - 1)
                        ).astype(np.uint8)
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)


_INFO = {"dicom": _dicom_info, "nifti": _nifti_info, "metaimage": _metaimage_info}
_READ = {"dicom": _read_dicom, "nifti": _read_nifti, "metaimage": _read_metaimage}
_SPACING = {"dicom": _dicom_spacing, "nifti": _nifti_spacing, "metaimage": _metaimage_spacing}


def _kind(path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    kind = medical_kind(path)
    if kind is None:
        raise _fail(path, "not a DICOM, NIfTI or MetaImage file (by its extension)")
    return kind


def plane_info(path) -> PlaneInfo:
    """Width, height and number of planes of a DICOM, NIfTI or MetaImage file, from its header."""
    return _INFO[_kind(path)](Path(path))


def read_plane(path, slice_index: Optional[int] = None, *, raw: bool = False) -> np.ndarray:
    """One plane of a DICOM, NIfTI or MetaImage file: (H, W) uint8 grey or (H, W, 3) uint8 RGB for display,
    or with ``raw`` the stored values (label maps). ``slice_index``: the frame or slice of a file that has
    several (required then)."""
    return _READ[_kind(path)](Path(path), slice_index, raw)


def read_spacing(path) -> Optional[tuple]:
    """(row spacing, column spacing) in mm of a DICOM (PixelSpacing, else ImagerPixelSpacing), NIfTI (voxel
    sizes of its second and first axes, in the header's unit) or MetaImage file; None when a DICOM file
    gives none, and for PNG, JPEG, TIFF and other picture files, which carry no physical spacing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    kind = medical_kind(path)
    return None if kind is None else _SPACING[kind](path)


def nifti_mask_bytes(like, planes: dict) -> bytes:
    """A gzip-compressed NIfTI file (``.nii.gz`` bytes) of 0/1 masks on the voxels of the NIfTI file ``like``.

    ``planes``: {slice index (0 for a 2-D image): (H, W) bool mask}. A 2-D image gives a mask of its shape and
    affine; a volume with every slice given gives the volume; a volume with one slice gives that slice as a
    one-slice volume whose affine places it where it lies in the input; other subsets a volume whose other
    slices are 0.
    """
    img = _nifti(like)
    x, y, n = _plane_dims(like, img.shape, "NIfTI image")
    affine, header = img.affine, img.header.copy()
    if n == 1:
        [mask] = planes.values()
        data = np.asarray(mask, dtype=np.uint8).T.reshape(img.shape)
    elif len(planes) == 1:
        [(k, mask)] = planes.items()
        one = img.slicer[:, :, k:k + 1]
        data, affine, header = np.asarray(mask, dtype=np.uint8).T[:, :, None], one.affine, one.header.copy()
    else:
        volume = np.zeros((x, y, n), dtype=np.uint8)
        for k, mask in planes.items():
            volume[:, :, k] = np.asarray(mask, dtype=np.uint8).T
        data = volume.reshape(img.shape)
    header.set_data_dtype(np.uint8)
    out = type(img)(data, affine, header)
    out.header.set_slope_inter(1, 0)
    out.header["cal_min"], out.header["cal_max"] = 0, 1
    out.header["descrip"] = b"vlsm mask: 1 = foreground"
    return gzip.compress(out.to_bytes(), mtime=0)


__all__ = ["medical_kind", "PlaneInfo", "plane_info", "read_plane", "read_spacing", "nifti_mask_bytes",
           "PLANE_WORD"]
