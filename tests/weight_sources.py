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


def frozen_clipseg_experiment(root: Path) -> tuple[Path, Path]:
    """``(source, experiment file)``: a tiny CLIPSeg trained from ``source`` with its encoders frozen, the case
    whose checkpoints and model folders are slim."""
    source = clipseg_source(Path(root) / "clipseg-source")
    exp = Path(root) / "exp.yaml"
    exp.write_text(f"model:\n  name: clipseg\n  preset: tiny\n  pretrained: {source}\n"
                   f"  overrides: {{freeze_encoder: true}}\n")
    return source, exp


def seeded_logits(model) -> torch.Tensor:
    """The model's logits (eval mode) for one seeded random image and the prompt "a polyp"."""
    model.eval()
    t = model.get_tokenizer()(["a polyp"])
    s = model.preprocess.image_size
    x = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x, t["input_ids"], t["attention_mask"])
