"""CRIS (Wang et al., CVPR 2022): CLIP-driven referring image segmentation, with CLIP RN50.

Layout (parameter names follow the CRIS code, so its checkpoints and OpenAI's ``RN50.pt`` load directly):

* ``backbone``: CLIP RN50 on open_clip's classes (:mod:`vlsm.models.cris_backbone`: ``visual`` = open_clip's
  ``ModifiedResNet`` whose attention pool keeps the spatial map and adds a residual ``connect`` branch; text
  transformer, ``token_embedding``, ``positional_embedding``,
  ``ln_final``, ``text_projection``). Returns C3/C4/C5 maps (strides 8/16/32), word features and the
  sentence embedding.
* ``neck``: text-conditioned FPN fusing C3..C5 into one stride-16 map with coordinate channels.
* ``decoder``: transformer decoder (self-attention over pixels, cross-attention to words) with fixed
  sine position codes.
* ``proj``: upsamples to stride 4 and applies a per-sample 3x3 convolution whose weights come from the
  sentence embedding; the output is resized (bicubic) to the input size.

Weights: ``pretrained=<folder>`` holding ``cris.pt`` (a whole CRIS state dict, DataParallel ``module.``
prefixes and ``{"state_dict": ...}`` wrappers accepted) and/or OpenAI's ``RN50.pt`` (TorchScript
archive or plain state dict) for the encoders only.

Padding: ``padding_mask="attention_mask"`` (default) hides padded words from the cross-attention;
``"zero_ids"`` masks words whose id is 0, as the CRIS/medvlsm code does (with transformers'
CLIPTokenizer, which pads with ``<|endoftext|>``, as medvlsm used it, that masks nothing).
"""
from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from vlsm.models.base import Preprocess, SegmentationModel
from vlsm.models.checkpoint import (
    CheckpointError,
    allow_missing,
    load_state_dict_strict,
    read_state_dict_file,
    unwrap_state_dict,
)
from vlsm.models.presets import preset as preset_values
from vlsm.models.registry import check_options, register_model
from vlsm.models.weights import FileSpec, WeightsNotFoundError, resolve_weights

CRIS_FILES = (
    FileSpec.of("cris.pt", "cris_best.pth", required=False, what="whole CRIS model"),
    FileSpec.of("RN50.pt", required=False, what="OpenAI CLIP RN50 for the encoders"),
)
CRIS_OPTIONS = ("image_size", "freeze_encoder", "context_length", "padding_mask", "dropout")
PADDING_MASKS = ("attention_mask", "zero_ids")
RESNET_EXPANSION = 4  # channels of a ResNet bottleneck's output per planes (open_clip's Bottleneck.expansion)
RN50_URL = ("https://openaipublic.azureedge.net/clip/models/"
            "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt")


@dataclass
class CRISConfig:
    preset: str
    image_size: int
    mean: tuple
    std: tuple
    tokenizer: str
    context_length: int
    clip: dict
    fpn_in: tuple
    fpn_out: tuple
    vis_dim: int
    word_dim: int
    num_layers: int
    num_head: int
    dim_ffn: int
    dropout: float
    projector_kernel: int
    freeze_encoder: bool
    padding_mask: str = "attention_mask"
    model: str = field(default="cris")

    def __post_init__(self):
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        self.fpn_in, self.fpn_out = tuple(self.fpn_in), tuple(self.fpn_out)
        self.validate()

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(image_size=self.image_size, mean=self.mean, std=self.std, tokenizer=self.tokenizer,
                          context_length=self.context_length)

    def validate(self) -> None:
        c = self.clip
        width = c["vision_width"]
        expansion = RESNET_EXPANSION
        want_in = (width * 2 * expansion, width * 4 * expansion, c["embed_dim"])
        problems = []
        if self.fpn_in != want_in:
            problems.append(f"fpn_in must be the C3/C4/C5 channels {list(want_in)} of the ResNet, got {list(self.fpn_in)}")
        if self.word_dim != c["embed_dim"]:
            problems.append(f"word_dim {self.word_dim} must equal CLIP's embed_dim {c['embed_dim']}")
        if self.vis_dim != self.fpn_out[1] or self.vis_dim != c["transformer_width"]:
            problems.append(f"vis_dim {self.vis_dim} must equal fpn_out[1] {self.fpn_out[1]} and the text width "
                            f"{c['transformer_width']}")
        if self.image_size % 32:
            problems.append(f"image_size {self.image_size} must be a multiple of 32 (the ResNet's stride)")
        if not 2 <= self.context_length <= c["context_length"]:
            problems.append(f"context_length {self.context_length} must be in 2..{c['context_length']}")
        if self.padding_mask not in PADDING_MASKS:
            problems.append(f"padding_mask must be one of {PADDING_MASKS}, got {self.padding_mask!r}")
        if problems:
            raise ValueError("cris: " + "; ".join(problems))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in ("mean", "std", "fpn_in", "fpn_out"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CRISConfig":
        return cls(**d)


# -- neck, decoder, projector ---------------------------------------------------------------------------
def conv_bn_relu(cin: int, cout: int, kernel: int = 1, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, 1, padding, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class CoordConv(nn.Module):
    """A conv-BN-ReLU over the input plus two channels of normalised x/y coordinates."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = conv_bn_relu(cin + 2, cout, kernel, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype),
                                torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype), indexing="ij")
        coords = torch.stack([xs, ys]).expand(b, -1, -1, -1)
        return self.conv1(torch.cat([x, coords], dim=1))


class TextConditionedFPN(nn.Module):
    """Fuses C3..C5 (gated by the sentence embedding at C5) into one stride-16 map."""

    def __init__(self, fpn_in, fpn_out):
        super().__init__()
        c3, c4, c5 = fpn_in
        o3, o4, o5 = fpn_out
        self.txt_proj = nn.Sequential(nn.Linear(c5, o5, bias=False), nn.BatchNorm1d(o5), nn.ReLU(inplace=True))
        self.f1_v_proj = conv_bn_relu(c5, o5)
        self.norm_layer = nn.Sequential(nn.BatchNorm2d(o5), nn.ReLU(inplace=True))
        self.f2_v_proj = conv_bn_relu(c4, o4, 3, 1)
        self.f2_cat = conv_bn_relu(o5 + o4, o4)
        self.f3_v_proj = conv_bn_relu(c3, o3, 3, 1)
        self.f3_cat = conv_bn_relu(o3 + o4, o4)
        self.f4_proj5 = conv_bn_relu(o5, o4, 3, 1)
        self.f4_proj4 = conv_bn_relu(o4, o4, 3, 1)
        self.f4_proj3 = conv_bn_relu(o4, o4, 3, 1)
        self.aggr = conv_bn_relu(3 * o4, o4)
        self.coordconv = nn.Sequential(CoordConv(o4, o4, 3, 1), conv_bn_relu(o4, o4, 3, 1))

    def forward(self, maps, sentence: torch.Tensor) -> torch.Tensor:
        c3, c4, c5 = maps
        gate = self.txt_proj(sentence)[:, :, None, None]
        f5 = self.norm_layer(self.f1_v_proj(c5) * gate)
        f4 = self.f2_v_proj(c4)
        f4 = self.f2_cat(torch.cat([f4, F.interpolate(f5, size=f4.shape[-2:], mode="bilinear")], dim=1))
        f3 = F.avg_pool2d(self.f3_v_proj(c3), 2, 2)
        f3 = self.f3_cat(torch.cat([f3, f4], dim=1))
        q5 = F.interpolate(self.f4_proj5(f5), size=f4.shape[-2:], mode="bilinear")
        q = self.aggr(torch.cat([self.f4_proj3(f3), self.f4_proj4(f4), q5], dim=1))
        return self.coordconv(q)


def sine_codes_1d(dim: int, length: int) -> torch.Tensor:
    """(length, 1, dim) sine/cosine position codes (even channels sine, odd cosine)."""
    if dim % 2:
        raise ValueError(f"1-d sine position codes need an even width, got {dim}")
    pos = torch.arange(length, dtype=torch.float)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim)
    codes[:, 0::2] = torch.sin(pos * freq)
    codes[:, 1::2] = torch.cos(pos * freq)
    return codes[:, None]


def sine_codes_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """(height*width, 1, dim) codes: the first half of the channels encodes x, the second half y."""
    if dim % 4:
        raise ValueError(f"2-d sine position codes need a width divisible by 4, got {dim}")
    half = dim // 2
    freq = torch.exp(torch.arange(0.0, half, 2) * (-math.log(10000.0) / half))
    xs = torch.arange(0.0, width)[:, None] * freq  # (W, half/2)
    ys = torch.arange(0.0, height)[:, None] * freq  # (H, half/2)
    codes = torch.zeros(dim, height, width)
    codes[0:half:2] = torch.sin(xs).t()[:, None, :].expand(-1, height, -1)
    codes[1:half:2] = torch.cos(xs).t()[:, None, :].expand(-1, height, -1)
    codes[half::2] = torch.sin(ys).t()[:, :, None].expand(-1, -1, width)
    codes[half + 1::2] = torch.cos(ys).t()[:, :, None].expand(-1, -1, width)
    return codes.reshape(dim, 1, height * width).permute(2, 1, 0)


class VisionLanguageDecoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_ffn: int, dropout: float):
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, kdim=d_model, vdim=d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, dim_ffn), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.LayerNorm(dim_ffn), nn.Linear(dim_ffn, d_model))
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, vis, txt, vis_pos, txt_pos, pad_mask):
        h = self.norm1(vis)
        q = h + vis_pos
        h = self.self_attn_norm(self.self_attn(q, q, value=h)[0])
        vis = vis + self.dropout1(h)
        h = self.norm2(vis)
        h = self.multihead_attn(query=h + vis_pos, key=txt + txt_pos, value=txt, key_padding_mask=pad_mask)[0]
        vis = vis + self.dropout2(self.cross_attn_norm(h))
        return vis + self.dropout3(self.ffn(self.norm3(vis)))


class VisionLanguageDecoder(nn.Module):
    def __init__(self, num_layers: int, d_model: int, nhead: int, dim_ffn: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList([VisionLanguageDecoderLayer(d_model, nhead, dim_ffn, dropout)
                                     for _ in range(num_layers)])
        self.norm = nn.LayerNorm(d_model)

    def forward(self, vis: torch.Tensor, txt: torch.Tensor, pad_mask: Optional[torch.Tensor]) -> torch.Tensor:
        b, c, h, w = vis.shape
        vis_pos = sine_codes_2d(c, h, w).to(vis.device, vis.dtype)
        txt_pos = sine_codes_1d(txt.shape[-1], txt.shape[1]).to(txt.device, txt.dtype)
        out = vis.reshape(b, c, h * w).permute(2, 0, 1)
        words = txt.permute(1, 0, 2)
        for layer in self.layers:
            out = layer(out, words, vis_pos, txt_pos, pad_mask)
        return self.norm(out).permute(1, 2, 0).reshape(b, c, h, w)


class DynamicProjector(nn.Module):
    """Upsample x4, then a per-sample k x k convolution generated from the sentence embedding."""

    def __init__(self, word_dim: int, in_dim: int, kernel_size: int = 3):
        super().__init__()
        self.in_dim = in_dim
        self.kernel_size = kernel_size
        self.vis = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear"), conv_bn_relu(in_dim * 2, in_dim * 2, 3, 1),
            nn.Upsample(scale_factor=2, mode="bilinear"), conv_bn_relu(in_dim * 2, in_dim, 3, 1),
            nn.Conv2d(in_dim, in_dim, 1))
        self.txt = nn.Linear(word_dim, in_dim * kernel_size * kernel_size + 1)

    def forward(self, x: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        x = self.vis(x)
        b, c, h, w = x.shape
        params = self.txt(sentence)
        weight = params[:, :-1].reshape(b, c, self.kernel_size, self.kernel_size)
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, bias=params[:, -1], padding=self.kernel_size // 2,
                       groups=b)
        return out.transpose(0, 1)


class CRIS(SegmentationModel):
    """CRIS with CLIP RN50: ``forward(pixel_values, input_ids, attention_mask) -> logits (B, 1, H, W)``."""

    uses_text = True

    def __init__(self, config: CRISConfig):
        super().__init__()
        self.config = config
        self.preprocess = config.preprocess
        from vlsm.models.cris_backbone import CLIPBackbone  # open_clip is imported when a CRIS is built

        self.backbone = CLIPBackbone(config.clip)
        self.neck = TextConditionedFPN(config.fpn_in, config.fpn_out)
        self.decoder = VisionLanguageDecoder(config.num_layers, config.vis_dim, config.num_head, config.dim_ffn,
                                             config.dropout)
        self.proj = DynamicProjector(config.word_dim, config.vis_dim // 2, config.projector_kernel)
        self._tokenizer = None
        self.apply_freezing()

    def apply_freezing(self) -> None:
        self.backbone.requires_grad_(not self.config.freeze_encoder)

    def get_tokenizer(self):
        from vlsm.text.tokenizers import ClipBPETokenizer

        if self._tokenizer is None:
            self._tokenizer = ClipBPETokenizer(context_length=self.config.context_length)
        return self._tokenizer

    def forward(self, pixel_values: torch.Tensor, input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if input_ids is None:
            raise ValueError("cris is a text-prompted model: pass input_ids (and attention_mask) from "
                             "model.get_tokenizer()")
        if pixel_values.ndim != 4 or pixel_values.shape[-1] % 32 or pixel_values.shape[-2] % 32:
            raise ValueError(f"cris needs (B, 3, H, W) images with H and W multiples of 32, got "
                             f"{tuple(pixel_values.shape)}; resize to {self.config.image_size}")
        if input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(f"got {input_ids.shape[0]} prompts for {pixel_values.shape[0]} images; pass one "
                             f"prompt per image")
        if self.training and pixel_values.shape[0] < 2:
            raise ValueError("cris cannot train on a batch of one image: its text projection uses BatchNorm1d "
                             "(as in CRIS). Use batches of 2 or more (drop_last=True), or call model.eval().")
        if self.config.padding_mask == "attention_mask" and attention_mask is not None:
            input_ids, attention_mask = self._trim_text(input_ids, attention_mask)
            pad_mask = attention_mask == 0
        else:
            pad_mask = input_ids == 0
        frozen = not any(p.requires_grad for p in self.backbone.parameters())
        with torch.no_grad() if frozen else nullcontext():
            maps = self.backbone.encode_image(pixel_values)
            words, sentence = self.backbone.encode_text(input_ids)
        fq = self.neck(maps, sentence)
        fq = self.decoder(fq, words, pad_mask)
        logits = self.proj(fq, sentence)
        return F.interpolate(logits, size=tuple(pixel_values.shape[-2:]), mode="bicubic", align_corners=True)

    @staticmethod
    def _trim_text(input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """The prompts cut to the batch's longest one. Exact here: the text encoder is causal (a word sees only
        earlier ones), the sentence is read at the end token (the largest id, kept), the decoder's
        cross-attention hides the cut words and their position codes do not depend on the length. Never
        with ``padding_mask="zero_ids"``, where every position is attended to."""
        from vlsm.models.speedups import speedups_enabled
        from vlsm.text.batching import needed_lengths, trim_to_lengths

        if not speedups_enabled():
            return input_ids, attention_mask
        lengths = needed_lengths(attention_mask, keep=input_ids.argmax(dim=-1))
        return trim_to_lengths(input_ids, attention_mask, lengths)

    # -- weights -----------------------------------------------------------------------------------------
    def load_cris_checkpoint(self, path: Path) -> None:
        """A whole CRIS state dict (DataParallel's ``module.`` and ``{"state_dict": ...}`` wrappers accepted)."""
        load_state_dict_strict(self, read_state_dict_file(path), source=str(path), model_name="cris")

    def load_clip_checkpoint(self, path: Path) -> None:
        """OpenAI's RN50.pt (TorchScript archive or state dict) into the encoders; the CRIS-only
        ``visual.attnpool.connect`` branch keeps its initialisation."""
        state = read_state_dict_file(path)  # a TorchScript archive only with --trust-checkpoint
        state = unwrap_state_dict({k: v for k, v in state.items()
                                   if k not in ("input_resolution", "context_length", "vocab_size")})
        ours = self.backbone.state_dict()
        unexpected = [k for k in state if k not in ours]
        mismatched = [k for k in state if k in ours and tuple(state[k].shape) != tuple(ours[k].shape)]
        if unexpected or mismatched:
            first = (f"first mismatch {mismatched[0]} {tuple(state[mismatched[0]].shape)} vs "
                     f"{tuple(ours[mismatched[0]].shape)}" if mismatched else f"unexpected {unexpected[:6]}")
            raise CheckpointError(f"{path} is not a CLIP checkpoint of this architecture (model cris): {first}")
        allow_missing(str(path), "cris (its CLIP encoders)",
                      [k for k in ours if k not in state and not k.startswith("visual.attnpool.connect.")])
        self.backbone.load_state_dict(state, strict=False)

    def architecture(self) -> dict:
        return self.config.to_dict()


def cris_config(preset: str, overrides: dict, architecture: Optional[dict] = None) -> CRISConfig:
    """The config of a preset (``configs/cris.json``), or of a saved ``architecture`` in its place, with
    ``overrides`` applied."""
    base = dict(architecture) if architecture is not None else \
        {"preset": preset, **preset_values("cris.json", preset, model="cris")}
    return CRISConfig.from_dict({**base, **overrides})


@register_model("cris", description="CRIS: CLIP RN50 encoders + text-conditioned FPN, vision-language transformer "
                "decoder and text-generated projector (416 px, CLIP BPE prompts of 77 tokens)",
                uses_text=True, paper_name="CRIS")
def build_cris(*, preset: str = "paper", variant=None, pretrained: Optional[str] = None, saved=None,
               **overrides) -> CRIS:
    check_options("cris", overrides, CRIS_OPTIONS)
    config = cris_config(preset, overrides, saved.architecture if saved is not None else None)
    model = CRIS(config)
    if pretrained is not None:
        resolved = resolve_weights(pretrained, CRIS_FILES, model="cris")
        cris_file = resolved.get(*CRIS_FILES[0].names)
        clip_file = resolved.get(*CRIS_FILES[1].names)
        if cris_file is None and clip_file is None:
            raise WeightsNotFoundError(
                f"cris weights not found in {resolved.folder}: looked for cris.pt or cris_best.pth (a whole CRIS "
                f"model) and RN50.pt (OpenAI CLIP RN50, encoders only). Get RN50.pt from {RN50_URL}; CRIS "
                f"checkpoints come from the CRIS.pytorch authors (see the medvlsm README).")
        if cris_file is not None:
            model.load_cris_checkpoint(cris_file)
        else:
            model.load_clip_checkpoint(clip_file)
        model.apply_freezing()
    tokenizer_dir = saved.tokenizer_dir if saved is not None else None
    if tokenizer_dir is not None:
        from vlsm.text.tokenizers import TOKENIZER_FILE, load_tokenizer

        if (tokenizer_dir / TOKENIZER_FILE).is_file():
            model._tokenizer = load_tokenizer(tokenizer_dir, context_length=config.context_length)
    return model
