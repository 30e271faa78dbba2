"""One case of a segmentation dataset: an image, its mask (if any) and its text prompts."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


@dataclass
class Record:
    """An image/mask pair with its prompts.

    name:       unique name of the case within its split (used for per-case results and outputs)
    image_path: the input image
    mask_path:  the ground-truth mask, or None (prediction inputs)
    prompts:    prompt key -> text or list of texts (medvlsm's ``p0``..``p9``)
    dataset:    name of the dataset, i.e. the dataset folder's name (e.g. ``kvasir_polyp``)
    slice_index: the frame of a multi-frame DICOM or the slice of a 3-D volume the case is (None: the
                image is 2-D)
    """

    name: str
    image_path: Path
    mask_path: Optional[Path]
    prompts: dict = field(default_factory=dict)
    dataset: str = ""
    slice_index: Optional[int] = None

    def __post_init__(self) -> None:
        self.image_path = Path(self.image_path)
        if self.mask_path is not None:
            self.mask_path = Path(self.mask_path)
        if not isinstance(self.prompts, dict):
            raise TypeError(f"Record {self.name!r}: prompts must be a dict, got {type(self.prompts).__name__}")


__all__ = ["Record"]
