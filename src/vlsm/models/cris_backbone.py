"""CRIS's encoders: CLIP RN50 (image and text) on open_clip's classes, with OpenAI's parameter names.

The image encoder is open_clip's ``ModifiedResNet`` (``Bottleneck`` blocks, three-conv stem) whose
attention pool is CRIS's: applied at every position instead of pooling, with a residual 1x1 conv
``connect``, so it returns the stride-8/16/32 maps C3, C4, C5. The text encoder is open_clip's
``Transformer`` with CLIP's embeddings, final norm and projection. OpenAI's ``RN50.pt`` and CRIS
checkpoints load by these names. Kept apart from ``cris.py`` so that open_clip is imported only when a
CRIS model is built.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import AttentionPool2d, ModifiedResNet
from open_clip.transformer import LayerNorm, QuickGELU, Transformer
from torch import nn


# -- CLIP RN50 -----------------------------------------------------------------------------------------
class SpatialAttentionPool(AttentionPool2d):
    """open_clip's QKV attention pool applied at every position (no pooling), plus CRIS's 1x1 conv residual
    ``connect``. The learned position codes are resampled (bicubic) for other input sizes."""

    def __init__(self, spatial: int, embed_dim: int, heads: int, output_dim: int):
        super().__init__(spatial, embed_dim, heads, output_dim)
        self.spatial = spatial
        self.connect = nn.Sequential(nn.Conv2d(embed_dim, output_dim, 1, bias=False), nn.BatchNorm2d(output_dim))

    def position_codes(self, height: int, width: int) -> torch.Tensor:
        """(C, H*W): the grid part of the learned embedding (the class slot is unused), resized bicubically."""
        grid = self.positional_embedding[1:]
        dim = grid.shape[-1]
        grid = grid.reshape(1, self.spatial, self.spatial, dim).permute(0, 3, 1, 2)
        if (height, width) != (self.spatial, self.spatial):
            grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        return grid.flatten(2)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        residual = self.connect(x)
        tokens = x.reshape(b, c, h * w) + self.position_codes(h, w).to(x.dtype)
        tokens = tokens.permute(2, 0, 1)  # (HW, B, C)
        out, _ = F.multi_head_attention_forward(
            query=tokens, key=tokens, value=tokens, embed_dim_to_check=c, num_heads=self.num_heads,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias, training=self.training,
            need_weights=False, use_separate_proj_weight=True, q_proj_weight=self.q_proj.weight,
            k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight)
        out = out.permute(1, 2, 0).reshape(b, -1, h, w)
        return F.relu(out + residual, inplace=True)


class CLIPResNet(ModifiedResNet):
    """open_clip's modified ResNet (CLIP RN50's names) returning the stride-8, 16 and 32 maps, the last
    through CRIS's spatial attention pool."""

    def __init__(self, layers, output_dim: int, heads: int, image_resolution: int, width: int):
        super().__init__(list(layers), output_dim, heads, image_size=image_resolution, width=width)
        self.attnpool = SpatialAttentionPool(image_resolution // 32, width * 32, heads, output_dim)
        self.init_parameters()  # CLIP's init for the new pool (and, again, the zero residual-branch scales)

    def forward(self, x: torch.Tensor):
        x = self.layer1(self.stem(x.to(self.conv1.weight.dtype)))
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        c5 = self.attnpool(self.layer4(c4))
        return c3, c4, c5


class CLIPBackbone(nn.Module):
    """CLIP RN50 image and text encoders with OpenAI's parameter names."""

    def __init__(self, clip: dict):
        super().__init__()
        self.visual = CLIPResNet(clip["vision_layers"], clip["embed_dim"], clip["vision_heads"],
                                 clip["image_resolution"], clip["vision_width"])
        width = clip["transformer_width"]
        self.transformer = Transformer(width, clip["transformer_layers"], clip["transformer_heads"],
                                       act_layer=QuickGELU, norm_layer=LayerNorm)
        self.token_embedding = nn.Embedding(clip["vocab_size"], width)
        self.positional_embedding = nn.Parameter(torch.empty(clip["context_length"], width))
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, clip["embed_dim"]))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self._init_text()

    def _init_text(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width, layers = self.transformer.width, self.transformer.layers
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width ** -0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=width ** -0.5 * (2 * layers) ** -0.5)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=width ** -0.5 * (2 * layers) ** -0.5)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    def encode_image(self, pixel_values: torch.Tensor):
        return self.visual(pixel_values)

    def encode_text(self, input_ids: torch.Tensor):
        """Word features (B, L, width) and the sentence embedding (B, embed_dim) at the end token."""
        length = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        causal = torch.full((length, length), float("-inf"), device=x.device).triu_(1).to(x.dtype)
        x = self.transformer(x, attn_mask=causal)  # batch-first in, batch-first out
        x = self.ln_final(x)
        # the end token has the largest id; argmax finds its first occurrence
        eot = x[torch.arange(x.shape[0], device=x.device), input_ids.argmax(dim=-1)]
        return x, eot @ self.text_projection
