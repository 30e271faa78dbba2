import pytest
import torch

from vlsm.training.losses import BCEDiceLoss, soft_dice_loss


def test_soft_dice_near_zero_for_confident_correct_logits():
    target = torch.zeros(2, 1, 4, 4)
    target[:, :, :2] = 1
    logits = (target * 2 - 1) * 20
    assert soft_dice_loss(logits, target) < 1e-3


def test_bce_term_is_single_sigmoid():
    # A double sigmoid would make BCE of logit 0 differ from log(2).
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.ones(1, 1, 2, 2)
    out = BCEDiceLoss(bce_weight=1.0, dice_weight=0.0)(logits, target)
    assert out["bce"].item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["bce"].item())


def test_weights_and_shape_errors():
    with pytest.raises(ValueError, match="weights"):
        BCEDiceLoss(0, 0)
    with pytest.raises(ValueError, match="shape"):
        BCEDiceLoss()(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2))


def test_gradient_flows():
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    BCEDiceLoss(0.2, 1.0)(logits, target)["loss"].backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
