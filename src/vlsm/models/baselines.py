"""CNN baselines of the medvlsm testbench on segmentation_models_pytorch: UNet, UNet++, DeepLabv3+.

Presets (``configs/baselines.json``): paper = ResNet-50 encoder, 256 px, ImageNet mean/std (medvlsm
``configs/model/{unet,unetpp,deeplabv3plus}.yaml`` and ``configs/experiment/unet.yaml``); tiny = ResNet-18
with three encoder stages and narrow decoders, 64 px.

Encoder weights: ``pretrained=None`` (random init, the default: nothing is downloaded),
``pretrained="imagenet"`` (smp's ImageNet ResNet weights, found through the shared weight resolver:
Hugging Face cache or, when online, a download), or a local folder holding the encoder's
``model.safetensors``.
"""
from __future__ import annotations

from typing import Optional

import torch

from vlsm.models.base import IMAGENET_MEAN, IMAGENET_STD, Preprocess, SegmentationModel
from vlsm.models.presets import preset as preset_values
from vlsm.models.presets import preset_names
from vlsm.models.registry import check_options, register_model

ARCHS = {"unet": "Unet", "unetpp": "UnetPlusPlus", "deeplabv3plus": "DeepLabV3Plus"}
PAPER_NAMES = {"unet": "UNet", "unetpp": "UNet++", "deeplabv3plus": "DeepLabv3+"}

PRESET_TABLE = "baselines.json"  # {preset: {arch: {smp arguments..., image_size}}}
OPTIONS = ("encoder_name", "encoder_depth", "decoder_channels", "encoder_output_stride", "image_size",
           "in_channels", "classes")


class SMPBaseline(SegmentationModel):
    """An smp model behind the toolkit's interface: ``forward(pixel_values, ...) -> logits (B, 1, H, W)``."""

    uses_text = False

    def __init__(self, arch: str, image_size: int, **smp_kwargs):
        super().__init__()
        import segmentation_models_pytorch as smp

        self.arch = arch
        self.encoder_name = smp_kwargs.get("encoder_name")
        self._architecture = {"image_size": image_size, **smp_kwargs}
        self.net = getattr(smp, ARCHS[arch])(encoder_weights=None, **smp_kwargs)
        self.preprocess = Preprocess(image_size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        depth = smp_kwargs.get("encoder_depth", 5)
        self.divisor = 2 ** depth
        if image_size % self.divisor:
            raise ValueError(f"{arch}: image_size {image_size} must be divisible by {self.divisor} "
                             f"(encoder depth {depth})")

    def architecture(self) -> dict:
        """``image_size`` and the smp constructor's arguments."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._architecture.items()}

    def forward(self, pixel_values: torch.Tensor, input_ids=None, attention_mask=None) -> torch.Tensor:
        h, w = pixel_values.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"{self.arch} needs height and width divisible by {self.divisor}; got {h}x{w}. "
                             f"Resize the images (image_size / --img-size) to a multiple of {self.divisor}.")
        return self.net(pixel_values)

    def load_encoder_weights(self, source: str) -> None:
        from safetensors.torch import load_file

        from vlsm.models.weights import FileSpec, resolve_weights

        encoder_name = self.net.encoder.__class__.__name__
        repo = source
        if source == "imagenet":
            from segmentation_models_pytorch.encoders import encoders

            name = getattr(self, "encoder_name", None)
            settings = encoders.get(name, {}).get("pretrained_settings", {}).get("imagenet")
            if settings is None:
                raise ValueError(f"{self.arch}: encoder {name!r} has no ImageNet weights in segmentation_models_pytorch")
            repo = settings["repo_id"]
        resolved = resolve_weights(
            repo, (FileSpec.of("model.safetensors", what=f"{encoder_name} ImageNet weights"),),
            model=f"{self.arch} encoder",
            hint="Or pass pretrained=None to train the baseline from random initialisation.")
        state = load_file(str(resolved.path("model.safetensors")), device="cpu")
        # ImageNet ResNets carry a classifier (fc) the encoder has no use for
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = torch.nn.Module.load_state_dict(self.net.encoder, state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{resolved.folder}: encoder weights do not fit {self.arch}'s encoder "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")


def _make_builder(arch: str):
    def build(*, preset: str = "paper", variant=None, pretrained: Optional[str] = None, saved=None,
              **overrides) -> SMPBaseline:
        check_options(arch, overrides, OPTIONS)
        base = saved.architecture if saved is not None and saved.architecture is not None else \
            preset_values(PRESET_TABLE, preset, model=arch)[arch]
        cfg = {**base, **overrides}
        image_size = int(cfg.pop("image_size"))
        cfg.setdefault("classes", 1)
        if "decoder_channels" in cfg and isinstance(cfg["decoder_channels"], list):
            cfg["decoder_channels"] = tuple(cfg["decoder_channels"])
        model = SMPBaseline(arch, image_size, **cfg)
        if pretrained is not None:
            model.load_encoder_weights(pretrained)
        return model

    build.__name__ = f"build_{arch}"
    return build


for _arch in ARCHS:
    register_model(_arch, description=f"{PAPER_NAMES[_arch]} (segmentation_models_pytorch, ResNet-50 encoder; "
                   f"pretrained='imagenet' loads ImageNet encoder weights when available offline)",
                   presets=preset_names(PRESET_TABLE), uses_text=False, paper_name=PAPER_NAMES[_arch])(_make_builder(_arch))
