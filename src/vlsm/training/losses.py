"""Segmentation loss on raw logits: weighted BCE-with-logits + soft Dice.

Both terms take logits for ONE foreground channel; the sigmoid is applied exactly once, inside
this module (MONAI's DiceCELoss gets this wrong for a single sigmoid channel).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image, averaged over the batch. Images with empty masks count through
    ``smooth`` (an all-background prediction of an empty mask scores ~0 loss)."""
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    inter = (probs * target).sum(1)
    denom = probs.sum(1) + target.sum(1)
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


class BCEDiceLoss(nn.Module):
    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0):
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got bce={bce_weight} dice={dice_weight}")
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        dice = soft_dice_loss(logits, target)
        return {"loss": self.bce_weight * bce + self.dice_weight * dice, "bce": bce, "dice": dice}
