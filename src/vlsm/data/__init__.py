"""Datasets: reading image/mask/prompt records and turning them into model inputs.

Two dataset layouts are read by :func:`load_split`:

* **medvlsm layout** (what ``vlsm data convert`` writes)::

      <root>/images/   <root>/masks/   <root>/anns/{train,val,test}.json

* **plain folder**::

      <root>/images/<stem>.<ext>   <root>/masks/<stem>[_mask].<ext>   [<root>/splits.json]

Prediction inputs (no masks) come from :func:`list_images`. Images may be PNG, JPEG, BMP, WebP, TIFF, or the
clinic's DICOM, NIfTI and MetaImage files (:mod:`vlsm.data.medical`); :func:`read_spacing` gives their pixel
spacing in mm.
"""
from __future__ import annotations

from vlsm.data.images import ImageReadError, load_image, read_spacing
from vlsm.data.inputs import list_images
from vlsm.data.layout import LAYOUT_HELP, detect_layout, load_split
from vlsm.data.loading import LoadedDataset, dataset_name, load_records, read_dataset
from vlsm.data.masks import binarize_mask, load_mask
from vlsm.data.medvlsm import DatasetLayoutError
from vlsm.data.records import Record


def __getattr__(name):  # torch is imported only when a dataset is needed
    if name == "SegmentationDataset":
        from vlsm.data.dataset import SegmentationDataset

        return SegmentationDataset
    raise AttributeError(f"module 'vlsm.data' has no attribute {name!r}")


__all__ = ["Record", "load_split", "read_dataset", "LoadedDataset", "load_records", "dataset_name", "list_images",
           "load_mask", "load_image", "read_spacing", "binarize_mask", "SegmentationDataset", "detect_layout",
           "ImageReadError", "DatasetLayoutError", "LAYOUT_HELP"]
