"""Randomly initialised CLIPSeg decoders start from the init the papers' code trained from."""
import pytest
import torch

import vlsm


@pytest.mark.parametrize("name", ["clipseg", "biomedclipseg"])
def test_random_decoder_gives_small_initial_logits(name):
    torch.manual_seed(0)
    model = vlsm.create_model(name, preset="tiny").eval()
    s = model.preprocess.image_size
    ids = torch.randint(5, 50, (2, model.preprocess.context_length))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, s, s), ids, torch.ones_like(ids))
    # transformers 5's generic N(0, 1) init gave a std of ~70 here (~500 at paper size)
    assert logits.std() < 1.0


def test_decoder_linear_layers_use_pytorch_default_scale():
    model = vlsm.create_model("biomedclipseg", preset="tiny")
    film = model.decoder.film_mul
    bound = 1 / film.in_features ** 0.5  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert film.weight.abs().max() <= bound + 1e-6
    assert torch.count_nonzero(film.bias) == 0


def test_tiny_clipseg_can_fit_a_batch():
    """With transformers 5's init this stayed at an all-background prediction (Dice ~0.16)."""
    torch.manual_seed(0)
    model = vlsm.create_model("clipseg", preset="tiny", image_size=64)
    tok = model.get_tokenizer()(["polyp"] * 8)
    g = torch.Generator().manual_seed(1)
    y = torch.zeros(8, 1, 64, 64)
    for i in range(8):
        r, c = torch.randint(0, 32, (2,), generator=g).tolist()
        y[i, :, r:r + 32, c:c + 32] = 1
    x = torch.randn(8, 3, 64, 64, generator=g) + 2 * y
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    for _ in range(150):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, **tok), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = model(x, **tok) > 0
    dice = 2 * (pred * y).sum() / (pred.sum() + y.sum())
    assert dice > 0.6
