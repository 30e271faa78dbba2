"""Tokenizers: turn prompts into fixed-length ``input_ids`` + ``attention_mask`` for one model.

Every tokenizer is a picklable callable ``tok(texts) -> {"input_ids": (B, L), "attention_mask": (B, L)}``
(LongTensors), with ``context_length`` L. Image-only models use :class:`NullTokenizer`.
"""
from __future__ import annotations

from typing import Sequence

import torch


class NullTokenizer:
    """For image-only models: one dummy token per prompt, so batches keep one shape."""

    context_length = 1

    def __call__(self, texts: Sequence[str]) -> dict:
        n = len(texts)
        return {"input_ids": torch.zeros(n, 1, dtype=torch.long),
                "attention_mask": torch.zeros(n, 1, dtype=torch.long)}
