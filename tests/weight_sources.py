"""Weight sources in their real on-disk formats, for tests of frozen weights that come from a source.

``clipseg_source(folder)`` writes what ``CIDAS/clipseg-rd64-refined`` holds (transformers'
``save_pretrained``: config.json + model.safetensors, plus the CLIP tokenizer files when given), at the tiny
preset's sizes unless told otherwise.
"""
from __future__ import annotations

from pathlib import Path

import torch

from vlsm.models.vlsm_base import load_config_json


def clipseg_source(folder: Path, *, seed: int = 1, config: str = "clipseg_tiny.json") -> Path:
    """A CLIPSeg weight folder in transformers' format (random weights from ``seed``)."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    torch.manual_seed(seed)
    hf = CLIPSegForImageSegmentation(CLIPSegConfig(**load_config_json(config))).eval()
    hf.save_pretrained(folder)
    return Path(folder)
