"""Segmentation loss on raw logits: weighted BCE-with-logits + soft Dice.

Both terms take logits for ONE foreground channel; the sigmoid is applied exactly once, inside
this module (MONAI's DiceCELoss gets this wrong for a single sigmoid channel).

The soft Dice is reduced per image (``"image"``: each image's Dice, smoothed by 1, averaged over the
batch) or over the whole batch (``"batch"``: one Dice of all the batch's pixels, the ``dice_loss`` of
the paper's UNet-D script, modeling_UNet_D/utils/dice_score.py with ``reduce_batch_first=True``).
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


def batch_soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, epsilon: float = 1e-6) -> torch.Tensor:
    """1 - soft Dice of all the batch's pixels at once (the reference UNet-D script's ``dice_loss``:
    ``(2 * intersection + eps) / (sum of both + eps)``, with an all-empty batch counting as a match)."""
    probs = torch.sigmoid(logits.float())
    target = target.float()
    inter = 2 * (probs * target).sum()
    sets_sum = probs.sum() + target.sum()
    sets_sum = torch.where(sets_sum == 0, inter, sets_sum)
    return 1.0 - (inter + epsilon) / (sets_sum + epsilon)


# How the soft Dice term is reduced over a batch (TrainConfig.dice_reduction).
DICE_REDUCTIONS = {"image": soft_dice_loss, "batch": batch_soft_dice_loss}


class BCEDiceLoss(nn.Module):
    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, dice_reduction: str = "image"):
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got bce={bce_weight} dice={dice_weight}")
        if dice_reduction not in DICE_REDUCTIONS:
            raise ValueError(f"dice_reduction must be one of {', '.join(DICE_REDUCTIONS)}, got {dice_reduction!r}")
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.dice_loss = DICE_REDUCTIONS[dice_reduction]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        dice = self.dice_loss(logits, target)
        return {"loss": self.bce_weight * bce + self.dice_weight * dice, "bce": bce, "dice": dice}
