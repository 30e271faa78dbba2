"""The "data adapter" pieces that connect a VLSM to a CNN (VLSM-Ensemble, Dietlmeier et al. 2025).

An adapter turns ViT token activations ``(B, N, D)`` (N = 1 class token + g*g patch tokens) and a
text embedding ``(B, P)`` into a small feature map ``(B, R, g, g)`` that UNet-D takes at its
bottleneck. All sizes come from the constructor (encoder width D, projection P, reduced width R,
token count N, grid g); nothing is fixed to a particular image or patch size.

Pieces:

* :class:`FiLM` - text-conditioned feature modulation ``mul(c) * x + add(c)``.
* :class:`TokensToGrid` - a linear layer across the token axis ``N -> g*g`` (this is how the paper
  drops the class token: it mixes all N tokens into g*g positions) and a reshape to a map.
* :class:`UpsampleHead` - conv3x3, ReLU, two transposed convs: a map ``(R, g, g)`` to one channel
  at ``g * patch_size``.
* :class:`FirstLayerAdapter` - BiomedCLIPSeg-A's adapter: the first extracted activation only.
* :class:`TransformerAdapter` - what CLIPSeg-B's two adapters share (construction, the layer chain).
* :class:`LayerStackAdapter` - CLIPSeg-B's adapter as the paper describes it: one reduction and one
  transformer layer per extracted ViT layer, FiLM after the first, per image (``batch_first``).
* :class:`BatchZipAdapter` - CLIPSeg-B's adapter as the reference code computes it (defects kept,
  see its docstring); used only by ``variant="reference"``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def token_grid(num_tokens: int, prefix_tokens: int = 1) -> int:
    """Side g of the square patch grid for ``num_tokens`` = prefix + g*g tokens (error otherwise)."""
    patches = num_tokens - prefix_tokens
    g = math.isqrt(max(patches, 0))
    if g * g != patches or g == 0:
        raise ValueError(f"{num_tokens} tokens with {prefix_tokens} prefix token(s) do not form a square patch grid")
    return g


class FiLM(nn.Module):
    """``mul(c) * x + add(c)`` for tokens ``x`` (B, N, R) and a condition ``c`` (B, P)."""

    def __init__(self, cond_dim: int, dim: int):
        super().__init__()
        self.mul = nn.Linear(cond_dim, dim)
        self.add = nn.Linear(cond_dim, dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = cond.unsqueeze(1)
        return self.mul(c) * x + self.add(c)


class TokensToGrid(nn.Module):
    """(B, N, R) tokens -> (B, R, g, g) map by a linear layer over the token axis."""

    def __init__(self, num_tokens: int, grid: int):
        super().__init__()
        self.grid = grid
        self.proj = nn.Linear(num_tokens, grid * grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, r = x.shape
        return self.proj(x.transpose(1, 2)).reshape(b, r, self.grid, self.grid)


class UpsampleHead(nn.Sequential):
    """(B, R, g, g) -> (B, 1, g*s1*s2, ...): conv3x3, ReLU, convT(R -> R/2, s1), ReLU, convT(R/2 -> 1, s2).

    ``s1 * s2`` is the encoder's patch size; the reference uses ``s1 = s2 = patch_size // 4``
    (16 -> 4 x 4). Here ``s2 = last_stride`` and ``s1 = patch_size // last_stride``.
    """

    def __init__(self, dim: int, patch_size: int, last_stride: int = 4, out_channels: int = 1):
        if patch_size % last_stride:
            raise ValueError(f"UpsampleHead: patch size {patch_size} is not a multiple of last_stride {last_stride}")
        first = patch_size // last_stride
        super().__init__(
            nn.Conv2d(dim, dim, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(dim, dim // 2, kernel_size=first, stride=first),
            nn.ReLU(),
            nn.ConvTranspose2d(dim // 2, out_channels, kernel_size=last_stride, stride=last_stride),
        )


class FirstLayerAdapter(nn.Module):
    """BiomedCLIPSeg-A: reduce the first extracted activation, FiLM with the text, tokens -> grid."""

    def __init__(self, hidden_size: int, cond_dim: int, reduce_dim: int, num_tokens: int, grid: int):
        super().__init__()
        self.reduce = nn.Linear(hidden_size, reduce_dim)
        self.film = FiLM(cond_dim, reduce_dim)
        self.to_grid = TokensToGrid(num_tokens, grid)

    def forward(self, activations: Sequence[torch.Tensor], cond: torch.Tensor) -> torch.Tensor:
        return self.to_grid(self.film(self.reduce(activations[0]), cond))


class TransformerAdapter(nn.Module):
    """What CLIPSeg-B's two adapters share: FiLM, one reduction and one transformer layer per extracted ViT
    layer, tokens -> grid. Subclasses say how the layers are visited and set ``batch_first``."""

    batch_first: bool
    #: whether forward takes the ViT's last hidden state (B, N, D) instead of the extracted activations
    reads_last_hidden_state: bool

    def __init__(self, hidden_size: int, cond_dim: int, reduce_dim: int, num_tokens: int, grid: int,
                 depth: int, heads: int = 4, ffn_dim: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.film = FiLM(cond_dim, reduce_dim)
        self.reduces = nn.ModuleList(nn.Linear(hidden_size, reduce_dim) for _ in range(depth))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model=reduce_dim, nhead=heads, dim_feedforward=ffn_dim, dropout=dropout,
                                       batch_first=self.batch_first)
            for _ in range(depth))
        self.to_grid = TokensToGrid(num_tokens, grid)

    def chain(self, steps, cond: torch.Tensor) -> torch.Tensor:
        """``a = block_0(FiLM(reduce_0(x_0), c))``, then ``a = block_i(reduce_i(x_i) + a)``; tokens -> grid."""
        a = None
        for x, reduce, block in zip(steps, self.reduces, self.blocks):
            a = self.film(reduce(x), cond) if a is None else reduce(x) + a
            a = block(a)
        return self.to_grid(a)


class LayerStackAdapter(TransformerAdapter):
    """One reduction + transformer layer per extracted ViT layer, per image (fixed variants).

    ``a = layer_0(FiLM(reduce_0(act_0), c))``, ``a = layer_i(reduce_i(act_i) + a)`` for i > 0, in the
    order the activations are given (shallow to deep), then tokens -> grid. Attention runs over the
    tokens of each image (``batch_first=True``), so images in a batch never interact.
    """

    batch_first = True
    reads_last_hidden_state = False

    def forward(self, activations: Sequence[torch.Tensor], cond: torch.Tensor) -> torch.Tensor:
        if len(activations) != len(self.blocks):
            raise ValueError(f"adapter built for {len(self.blocks)} extracted layers, got {len(activations)}")
        return self.chain(activations, cond)


class BatchZipAdapter(TransformerAdapter):
    """CLIPSeg-B's adapter exactly as the reference computes it (``variant="reference"`` only).

    Defects kept on purpose so that reference numbers and checkpoints reproduce:

    1. It iterates over ``last_hidden_state`` (B, N, D), i.e. over the *images of the batch*, not
       over the extracted layers: step i uses image i's final-layer tokens, for i < min(B, depth).
       With B = 1 only the first transformer layer runs.
    2. Its ``nn.TransformerEncoderLayer`` uses ``batch_first=False`` on (B, N, R) input, so the
       attention runs across the B images at each token position.
    3. Broadcasting the (N, R) tokens of image i against the FiLM terms (B, 1, R) gives (B, N, R).

    Consequently one image's output depends on the other images in its batch and on batch size.
    """

    batch_first = False
    reads_last_hidden_state = True

    def forward(self, last_hidden_state: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # iterating a (B, N, D) tensor visits the images of the batch (defect 1); the blocks attend
        # across the batch (defect 2)
        return self.chain(last_hidden_state, cond)


#: CLIPSeg-B's adapters by the name a variant gives (:class:`vlsm.models.ensembles.variants.Variant`)
CLIP_ADAPTER_CLASSES = {"layer-stack": LayerStackAdapter, "batch-zip": BatchZipAdapter}
