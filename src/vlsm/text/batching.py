"""Token batches at the batch's own length.

Tokenizers pad every prompt to the model's context length (77 CLIP BPE / 256 WordPiece tokens), but a
batch of p6 prompts uses 15-40 of them. Positions that the attention mask hides in *every* row change
no output of an encoder that honours the mask, so they can be cut before the encoder runs; the models
decide where that holds and say which further positions they must keep (e.g. CLIP's pooling token).
"""
from __future__ import annotations

from typing import Optional

import torch


def needed_lengths(attention_mask: torch.Tensor, keep: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """Per row, how many leading positions hold every token the mask shows (its last 1, plus one).

    ``keep`` (B,) adds a position per row that must stay (it raises the row's length to ``keep + 1``).
    ``None`` when a row shows no token at all: such a row attends to every position uniformly, so its
    result depends on the padded length and nothing may be cut.
    """
    if attention_mask.ndim != 2:
        raise ValueError(f"attention_mask must be (B, L), got {tuple(attention_mask.shape)}")
    shown = attention_mask != 0
    positions = torch.arange(1, shown.shape[1] + 1, device=shown.device)
    lengths = (shown * positions).amax(dim=1)  # 0 for a row with no shown token
    if keep is None and bool((lengths == 0).any()):
        return None
    if keep is not None:
        lengths = torch.maximum(lengths, keep.to(lengths.device) + 1)
    return lengths


def trim_to_lengths(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
                    lengths: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``input_ids``/``attention_mask`` cut to the longest of ``lengths`` (unchanged when ``lengths`` is None)."""
    if lengths is None or lengths.numel() == 0:
        return input_ids, attention_mask
    length = max(int(lengths.max()), 1)
    if length >= input_ids.shape[1]:
        return input_ids, attention_mask
    return input_ids[:, :length], None if attention_mask is None else attention_mask[:, :length]
