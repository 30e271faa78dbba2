"""Small DICOM, NIfTI and MetaImage files written in the tests by pydicom, nibabel and SimpleITK."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np


def write_dicom(path, pixels: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: Optional[int] = None,
                window: Optional[tuple] = None, spacing: Optional[tuple] = (0.5, 0.25), rescale: Optional[tuple] = None,
                voi_lut: Optional[np.ndarray] = None, preamble: bool = True) -> Path:
    """A DICOM file (explicit VR little endian) of ``pixels``: (H, W) one frame, (N, H, W) N frames or
    (H, W, 3) RGB; ``window`` (centre, width), ``spacing`` PixelSpacing (row, column) in mm,
    ``rescale`` (slope, intercept), ``voi_lut`` a VOI LUT table (its first entry maps value 0)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    path = Path(path)
    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientID = "anon"
    bits = bits_stored or (8 if pixels.dtype == np.uint8 else 16)
    ds.set_pixel_data(pixels, photometric, bits)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if spacing is not None:
        ds.PixelSpacing = list(spacing)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if voi_lut is not None:
        item = Dataset()
        item.LUTDescriptor = [len(voi_lut), 0, 16]
        item.LUTData = np.asarray(voi_lut, dtype="<u2").tobytes()
        ds.VOILUTSequence = Sequence([item])
    ds.save_as(path, enforce_file_format=preamble)
    return path


def write_nifti(path, array_ij: np.ndarray, *, zooms=(0.3, 0.6, 2.0), affine=None) -> Path:
    """A NIfTI file holding ``array_ij`` in voxel order (i, j[, k]); rows of the plane are j, columns i."""
    import nibabel as nib

    array_ij = np.asarray(array_ij)
    if affine is None:
        affine = np.diag((list(zooms) + [1.0, 1.0])[:3] + [1.0])
        affine[:3, 3] = (-10.0, 5.0, 2.5)
    img = nib.Nifti1Image(array_ij, affine)
    img.header.set_zooms(tuple(zooms[:array_ij.ndim]))
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    return Path(path)


def write_metaimage(path, array_yx: np.ndarray, *, spacing=(0.4, 0.8)) -> Path:
    """A MetaImage (.mhd + .raw, or .mha) of ``array_yx`` ((H, W) or (N, H, W)) with spacing (x, y)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.asarray(array_yx))
    img.SetSpacing(tuple(spacing) + ((1.0,) if np.asarray(array_yx).ndim == 3 else ()))
    sitk.WriteImage(img, str(path))
    return Path(path)
