"""Run a model over records and bring its probabilities back to each image's original size."""
from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from vlsm.models.base import SegmentationModel


def resolve_device(device: str = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    return torch.device(device)


def to_original_size(logits: torch.Tensor, size_hw: tuple[int, int]) -> np.ndarray:
    """(1, S, S) logits -> (H, W) float32 probabilities: resize the logits, then the sigmoid."""
    up = F.interpolate(logits[None].float(), size=tuple(size_hw), mode="bilinear", align_corners=False)
    return torch.sigmoid(up[0, 0]).cpu().numpy().astype(np.float32)


def iter_logits(model: SegmentationModel, records: Sequence, *, prompt: str = "p1", device="auto",
                batch_size: int = 4, num_workers: int = 0, seed: int = 0) -> Iterator[tuple]:
    """Yield ``(record, logits (1,S,S) on CPU, prompt_used, (height, width) of the image)`` for every
    record, in order."""
    from vlsm.data import SegmentationDataset

    dev = resolve_device(device) if isinstance(device, str) else device
    # Model inputs only: the masks (if any) are read by the caller at their original size.
    inputs = [dataclasses.replace(r, mask_path=None) for r in records]
    dataset = SegmentationDataset(inputs, model.preprocess, model.get_tokenizer(), prompt=prompt,
                                  augment=False, seed=seed, require_masks=False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval().to(dev)
    try:
        with torch.no_grad():
            for batch in loader:
                logits = model(batch["pixel_values"].to(dev), batch["input_ids"].to(dev),
                               batch["attention_mask"].to(dev)).float().cpu()
                for i, idx in enumerate(batch["index"].tolist()):
                    size = (int(batch["height"][i]), int(batch["width"][i]))
                    yield records[idx], logits[i], batch["prompt"][i], size
    finally:
        model.train(was_training)


def predict_records(model: SegmentationModel, records: Sequence, *, prompt: str = "p1", device="auto",
                    batch_size: int = 4, sizes: Optional[dict] = None) -> dict:
    """{name: probability map (H, W) float32 at the original image size} for a few records.

    ``sizes`` maps name -> (H, W); by default the image's own size is used.
    """
    out = {}
    for record, logits, _, image_hw in iter_logits(model, records, prompt=prompt, device=device,
                                                   batch_size=batch_size):
        out[record.name] = to_original_size(logits, (sizes or {}).get(record.name, image_hw))
    return out
