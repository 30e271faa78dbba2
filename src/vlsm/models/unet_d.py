"""UNet-D: the CNN of the VLSM-Ensemble paper (Dietlmeier et al., MIDL 2025).

Architecture (paper sizes; every width comes from :class:`UNetDConfig`)::

    image (3, S, S)
      encoder stage k = conv3x3 -> conv3x3 (no activation in between) -> BatchNorm -> ReLU
                        -> Dropout -> MaxPool2       widths 64, 128, 256, 512  (S/2 ... S/16)
      bottleneck      = concat[injected maps..., encoder output] -> conv1x1 (1240) -> ECA
      decoder stage k = ConvTranspose2x2 (stride 2) -> conv3x3 -> the SAME conv3x3 again
                        -> BatchNorm -> ReLU -> concat with the matching encoder output
                        widths 546, 182, 91, 45
      head            = conv1x1 -> logits (num_classes, S, S)
      optional fusion = conv1x1 over concat[extra map, logits]  (the ensembles' "outconv2")

The decoder applies each stage's 3x3 convolution twice with shared weights, exactly as the
reference code does; the parameter count (11.83 M at paper size) depends on it.

The bottleneck takes optional extra feature maps (``inject_channels``) at S/16 resolution: the
ensembles feed their VLSM adapter maps there. ``fuse_channels`` adds the 1x1 fusion of an extra
full-resolution map with the output logits.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from vlsm.models.base import IMAGENET_MEAN, IMAGENET_STD, Preprocess, SegmentationModel
from vlsm.models.presets import preset as preset_values
from vlsm.models.presets import preset_names
from vlsm.models.reference import CheckpointConversionError, PrefixRule, convert_by_prefix, load_weights
from vlsm.models.registry import check_options, register_model


@dataclass
class UNetDConfig:
    """Sizes of UNet-D: a preset of ``configs/unet_d.json`` (``paper``: the reference's) with options applied."""

    in_channels: int
    num_classes: int
    encoder_channels: tuple
    bottleneck_channels: int
    decoder_channels: tuple
    dropout: float
    # ECA kernel size k: t = int(|(log2(C) + eca_b) / eca_gamma|), k = t if t is odd else t + 1
    eca_gamma: float
    eca_b: float
    image_size: int
    # channels of extra maps concatenated at the bottleneck (before the 1x1 conv), one per map
    inject_channels: tuple = ()
    # where the encoder's own map sits in that concatenation; the reference puts it after the
    # first injected map (slot 1). Clipped to len(inject_channels).
    encoder_slot: int = 1
    # channels of an extra full-size map fused with the logits by a 1x1 conv (0 = no fusion)
    fuse_channels: int = 0

    def __post_init__(self):
        self.encoder_channels = tuple(int(c) for c in self.encoder_channels)
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        self.inject_channels = tuple(int(c) for c in self.inject_channels)
        if not self.encoder_channels:
            raise ValueError("UNetDConfig.encoder_channels must name at least one stage")
        if len(self.decoder_channels) != len(self.encoder_channels):
            raise ValueError(
                f"UNetDConfig: decoder_channels {self.decoder_channels} needs one width per encoder stage "
                f"{self.encoder_channels} (got {len(self.decoder_channels)} vs {len(self.encoder_channels)})")
        if self.image_size % self.downsampling:
            raise ValueError(
                f"UNet-D image_size {self.image_size} is not divisible by {self.downsampling} "
                f"({len(self.encoder_channels)} pooling stages); pick e.g. "
                f"{self.image_size - self.image_size % self.downsampling or self.downsampling}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetDConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def downsampling(self) -> int:
        """Total stride of the encoder: input sides must be multiples of it."""
        return 2 ** len(self.encoder_channels)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


PRESET_TABLE = "unet_d.json"


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """Kernel size of Efficient Channel Attention for ``channels`` (always odd)."""
    t = int(abs((math.log(channels, 2) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """Efficient Channel Attention: global average pool -> 1D conv across channels -> sigmoid gate."""

    def __init__(self, channels: int, gamma: float = 2.0, b: float = 1.0):
        super().__init__()
        k = eca_kernel_size(channels, gamma, b)
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)                      # (B, C, 1, 1)
        w = self.conv(w.squeeze(-1).transpose(1, 2))               # (B, 1, C)
        w = torch.sigmoid(w.transpose(1, 2).unsqueeze(-1))         # (B, C, 1, 1)
        return x * w


class EncoderStage(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(dropout)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the reference has no activation between the two convolutions
        return self.pool(self.drop(torch.relu(self.bn(self.conv2(self.conv1(x))))))


class DecoderStage(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2)
        self.conv = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        x = self.conv(self.conv(x))  # same weights twice, as in the reference
        return torch.relu(self.bn(x))


class UNetD(SegmentationModel):
    """UNet-D. ``forward(pixel_values, ..., inject=[maps at S/16], fuse=map at S) -> logits``."""

    uses_text = False

    def __init__(self, config: Optional[UNetDConfig] = None):
        super().__init__()
        self.config = config = config or unet_d_config("paper")
        self.preprocess = Preprocess(image_size=config.image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        enc = config.encoder_channels
        widths = (config.in_channels,) + enc
        self.encoder = nn.ModuleList(
            EncoderStage(widths[i], widths[i + 1], config.dropout) for i in range(len(enc)))
        self.bottleneck = nn.Conv2d(enc[-1] + sum(config.inject_channels), config.bottleneck_channels, 1)
        self.eca = ECA(config.bottleneck_channels, config.eca_gamma, config.eca_b)
        dec = config.decoder_channels
        skips = enc[::-1][1:]  # encoder outputs concatenated after decoder stages 0 .. n-2
        cins = (config.bottleneck_channels,) + tuple(d + s for d, s in zip(dec[:-1], skips))
        self.decoder = nn.ModuleList(DecoderStage(cin, cout) for cin, cout in zip(cins, dec))
        self.head = nn.Conv2d(dec[-1], config.num_classes, 1)
        self.fuse = (nn.Conv2d(config.fuse_channels + config.num_classes, config.num_classes, 1)
                     if config.fuse_channels else None)

    def architecture(self) -> dict:
        return self.config.to_dict()

    def check_input(self, pixel_values: torch.Tensor) -> None:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.in_channels:
            raise ValueError(f"UNet-D expects pixel_values of shape (B, {self.config.in_channels}, H, W); "
                             f"got {tuple(pixel_values.shape)}")
        h, w = pixel_values.shape[-2:]
        d = self.config.downsampling
        if h % d or w % d:
            raise ValueError(
                f"UNet-D needs height and width divisible by {d} ({len(self.config.encoder_channels)} "
                f"pooling stages); got {h}x{w}. Resize the images (image_size / --img-size) to a multiple "
                f"of {d}, e.g. {max(d, h - h % d)}.")

    def forward(self, pixel_values: torch.Tensor, input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None, *,
                inject: Sequence[torch.Tensor] = (), fuse: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits (B, num_classes, H, W). ``input_ids``/``attention_mask`` are ignored.

        Args:
            inject: one map per ``config.inject_channels`` entry, each (B, C_i, H/16, W/16).
            fuse: (B, fuse_channels, H, W) when ``config.fuse_channels`` > 0.
        """
        self.check_input(pixel_values)
        cfg = self.config
        inject = list(inject)
        if len(inject) != len(cfg.inject_channels):
            raise ValueError(f"UNet-D was built for {len(cfg.inject_channels)} injected bottleneck maps "
                             f"(inject_channels={cfg.inject_channels}); got {len(inject)}")
        if (fuse is None) != (self.fuse is None):
            raise ValueError("UNet-D: pass `fuse` exactly when the model was built with fuse_channels > 0 "
                             f"(fuse_channels={cfg.fuse_channels})")
        skips = []
        x = pixel_values
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        if inject:
            slot = min(cfg.encoder_slot, len(inject))
            x = torch.cat(inject[:slot] + [x] + inject[slot:], dim=1)
        x = self.eca(self.bottleneck(x))
        skips = skips[:-1][::-1]
        for i, stage in enumerate(self.decoder):
            x = stage(x)
            if i < len(skips):
                x = torch.cat([x, skips[i]], dim=1)
        logits = self.head(x)
        if self.fuse is not None:
            logits = self.fuse(torch.cat([fuse, logits], dim=1))
        return logits


def unet_d_config(preset: str = "paper", architecture: Optional[Mapping] = None, **overrides) -> UNetDConfig:
    """The config of a preset (or of a saved ``architecture``, which takes the preset's place) with field
    overrides (unknown fields are a clear error)."""
    check_options("unet-d", overrides, (f.name for f in dataclasses.fields(UNetDConfig)))
    base = dict(architecture) if architecture is not None else unet_d_preset(preset)
    return UNetDConfig(**{**base, **overrides})


def unet_d_preset(preset: str) -> dict:
    """The sizes of a UNet-D preset (``configs/unet_d.json``)."""
    return preset_values(PRESET_TABLE, preset, model="unet-d")


# -- the reference code's UNet_D ------------------------------------------------------------------------
# reference module name -> ours (BatchNorm buffers follow their module)
REFERENCE_RENAMES = {
    "conv11": "encoder.0.conv1", "conv12": "encoder.0.conv2", "bn1": "encoder.0.bn",
    "conv22": "encoder.1.conv1", "conv222": "encoder.1.conv2", "bn2": "encoder.1.bn",
    "conv33": "encoder.2.conv1", "conv333": "encoder.2.conv2", "bn3": "encoder.2.bn",
    "conv44": "encoder.3.conv1", "conv444": "encoder.3.conv2", "bn4": "encoder.3.bn",
    "upconv41": "bottleneck", "eca4.conv": "eca.conv",
    "upconv4": "decoder.0.up", "convup4": "decoder.0.conv", "upbn4": "decoder.0.bn",
    "upconv3": "decoder.1.up", "convup3": "decoder.1.conv", "upbn3": "decoder.1.bn",
    "upconv2": "decoder.2.up", "convup2": "decoder.2.conv", "upbn2": "decoder.2.bn",
    "upconv1": "decoder.3.up", "convup1": "decoder.3.conv", "upbn1": "decoder.3.bn",
    "outconv": "head",
}
# built by the reference UNet-D variants but never called in their forward
REFERENCE_UNUSED = ("gn1", "eca3")


def rename_reference_key(key: str, *, fuse: bool) -> Optional[str]:
    """Our name for a reference UNet-D key, or None when the reference forward never uses it.

    ``fuse``: the reference's ``outconv2`` is the ensembles' fusion conv; standalone UNet_D never calls it.
    """
    module, _, leaf = key.rpartition(".")
    if module == "outconv2":
        return f"fuse.{leaf}" if fuse else None
    if module.split(".")[0] in REFERENCE_UNUSED:
        return None
    if module in REFERENCE_RENAMES:
        return f"{REFERENCE_RENAMES[module]}.{leaf}"
    raise CheckpointConversionError(f"unknown UNet-D parameter {key!r} in the reference state dict")


def reference_rule(source: str, target: str, *, fuse: bool) -> PrefixRule:
    """A conversion rule for a reference UNet_D stored under ``source`` (an ensemble's ``decoder2.``)."""
    return PrefixRule(source, target, lambda rest: rename_reference_key(rest, fuse=fuse))


def convert_reference(state: Mapping[str, torch.Tensor]) -> dict:
    """Standalone reference ``UNet_D``: its ``outconv2`` is never called, so it is dropped."""
    return convert_by_prefix("unet-d", [reference_rule("", "", fuse=False)], state)


def infer_reference_overrides(state: Mapping[str, torch.Tensor]) -> dict:
    """UNet-D widths read off a reference state dict (so a tiny or custom checkpoint converts too)."""
    enc = []
    for first in ("conv11", "conv22", "conv33", "conv44"):
        w = state.get(f"{first}.weight")
        if w is None:
            break
        enc.append(int(w.shape[0]))
    dec = [int(state[f"convup{k}.weight"].shape[0]) for k in (4, 3, 2, 1) if f"convup{k}.weight" in state]
    if len(enc) != 4 or len(dec) != 4 or "upconv41.weight" not in state:
        raise CheckpointConversionError(
            "not a reference UNet-D state dict (conv11..conv444, upconv41, convup1..4 expected)")
    over = dict(encoder_channels=tuple(enc), decoder_channels=tuple(dec),
                bottleneck_channels=int(state["upconv41.weight"].shape[0]),
                in_channels=int(state["conv11.weight"].shape[1]),
                num_classes=int(state["outconv.weight"].shape[0]))
    extra = int(state["upconv41.weight"].shape[1]) - enc[-1]
    if extra:
        over["inject_channels"] = (extra,)
    return over


@register_model("unet-d", description="UNet-D: ECA-bottleneck U-Net CNN from VLSM-Ensemble (image only)",
                presets=preset_names(PRESET_TABLE), uses_text=False, paper_name="UNet-D",
                convert_reference=convert_reference)
def build_unet_d(*, preset: str = "paper", variant=None, pretrained=None, saved=None, **overrides) -> UNetD:
    model = UNetD(unet_d_config(preset, saved.architecture if saved is not None else None, **overrides))
    if pretrained is not None:
        if not Path(pretrained).exists():
            raise FileNotFoundError(
                f"UNet-D weights {pretrained!r} not found: UNet-D has no public pretrained weights; pass a "
                f"folder written by save_pretrained or a state-dict file (.pt/.pth/.ckpt/.safetensors).")
        load_weights(model, "unet-d", pretrained)
    return model
