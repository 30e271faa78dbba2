"""What every ensemble shares: adapter sizes, the ensemble config, its architecture and parameter groups,
and the builder steps common to the paper models and :class:`~vlsm.models.ensembles.stack.Stack`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from vlsm.models.base import SegmentationModel
from vlsm.models.folder import part_record
from vlsm.models.presets import load_config_json
from vlsm.models.registry import build, check_options
from vlsm.models.unet_d import UNetD, unet_d_preset


@dataclass(frozen=True)
class AdapterSizes:
    """Sizes of the data adapter between a VLSM and UNet-D (the builders' options of the same names)."""

    reduce_dim: int
    adapter_heads: int
    adapter_ffn_dim: int
    adapter_dropout: float

    @classmethod
    def of(cls, preset: str, overrides: Mapping) -> "AdapterSizes":
        """A preset's sizes (``configs/adapters.json``) with any of the fields given in ``overrides``."""
        return ADAPTER_PRESETS[preset].with_options(overrides)

    def with_options(self, overrides: Mapping) -> "AdapterSizes":
        """These sizes with any of the fields given in ``overrides`` (other keys are ignored)."""
        return dataclasses.replace(self, **{f.name: overrides[f.name] for f in dataclasses.fields(self)
                                            if overrides.get(f.name) is not None})


#: the adapter presets of configs/adapters.json
ADAPTER_PRESETS = {name: AdapterSizes(**sizes) for name, sizes in load_config_json("adapters.json").items()}
ADAPTER_OPTIONS = tuple(f.name for f in dataclasses.fields(AdapterSizes))


@dataclass
class EnsembleConfig:
    """An ensemble's own architecture (its VLSMs' architectures are theirs): adapter sizes and UNet-D's sizes."""

    model: str
    variant: str
    preset: str
    image_size: int
    sizes: AdapterSizes
    unet: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["unet"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["unet"].items()}
        return d


class VLSMEnsemble(SegmentationModel):
    """Common behaviour of the ensembles: persistence, parameter groups."""

    uses_text = True
    ensemble: EnsembleConfig

    def vlsms(self) -> dict:
        """Name -> VLSM module inside this ensemble (its architecture and tokenizer are saved under that name)."""
        raise NotImplementedError

    def architecture(self) -> dict:
        """The ensemble's config and, under ``parts``, each VLSM's architecture."""
        return {**self.ensemble.to_dict(), "parts": {name: part_record(vlsm) for name, vlsm in self.vlsms().items()}}

    def image_feature_sources(self) -> list:
        """``[(vlsm, with_last_hidden_state), ...]``: the VLSMs whose image encoders this ensemble runs, in the
        order their features are concatenated, and whether it reads each one's last ViT block."""
        raise NotImplementedError

    # -- frozen image features: the frozen VLSMs' image_features, one after another --------------------
    def has_frozen_image_features(self) -> bool:
        return any(vlsm.has_frozen_image_features() for vlsm, _ in self.image_feature_sources())

    def frozen_image_features(self, pixel_values: torch.Tensor) -> Optional[tuple]:
        """The image features of every VLSM whose image encoder is frozen (those of a trainable one are
        computed in the forward pass), concatenated; ``None`` when none is frozen."""
        frozen = [(vlsm, last) for vlsm, last in self.image_feature_sources() if vlsm.has_frozen_image_features()]
        if not frozen:
            return None
        return tuple(t for vlsm, last in frozen for t in vlsm.image_features(pixel_values, last))

    def features_per_vlsm(self, features: Optional[tuple]) -> list:
        """Per source VLSM (:meth:`image_feature_sources`), its part of ``features`` (from
        :meth:`frozen_image_features`), or ``None`` where it computes its own."""
        sources = self.image_feature_sources()
        if features is None:
            return [None] * len(sources)
        parts, start = [], 0
        for vlsm, last in sources:
            if not vlsm.has_frozen_image_features():
                parts.append(None)
                continue
            count = vlsm.image_feature_count(last)
            parts.append(tuple(features[start:start + count]))
            start += count
        if start != len(features):
            raise ValueError(f"{self.ensemble.model} takes {start} frozen image feature tensors, got {len(features)}: "
                             f"pass what frozen_image_features returns")
        return parts

    def forward(self, pixel_values, input_ids=None, attention_mask=None):
        return self.forward_with_features(pixel_values, None, input_ids, attention_mask)

    def parameter_groups(self) -> dict:
        """(total, trainable) per component, e.g. ``{"vlsm.encoder": (..), "unet": (..)}``."""
        groups: dict = {}
        for name, p in self.named_parameters():
            key = _group_of(name)
            t, tr = groups.get(key, (0, 0))
            groups[key] = (t + p.numel(), tr + (p.numel() if p.requires_grad else 0))
        return groups

def _group_of(name: str) -> str:
    parts = name.split(".")
    for i, p in enumerate(parts):
        if p == "vlsm":
            sub = parts[i + 1] if i + 1 < len(parts) else ""
            kind = "decoder" if sub == "decoder" or (len(parts) > i + 2 and parts[i + 2] == "decoder") else "encoder"
            return ".".join(parts[:i + 1] + [kind])
        if p in ("adapter", "head", "unet", "fusion", "fusion_weight", "cnn"):
            return ".".join(parts[:i + 1])
    return parts[0]


# -- maps into UNet-D ----------------------------------------------------------------------------------
def fit_map(x: torch.Tensor, size: Sequence[int], strict: bool, what: str) -> torch.Tensor:
    """Bring an adapter map to UNet-D's bottleneck size (resize in fixed models, error in reference ones)."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    if strict:
        raise ValueError(f"{what}: adapter map {tuple(x.shape[-2:])} does not match UNet-D's bottleneck {size}; "
                         f"the reference architecture needs patch size == UNet-D's total stride")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def bottleneck_size(unet: UNetD, pixel_values: torch.Tensor) -> tuple:
    d = unet.config.downsampling
    return pixel_values.shape[-2] // d, pixel_values.shape[-1] // d


# -- builder steps ---------------------------------------------------------------------------------------
ENSEMBLE_OPTIONS = ("image_size", *ADAPTER_OPTIONS, "unet")


def check_ensemble_options(name: str, overrides: Mapping, vlsm_names: Sequence[str]) -> None:
    check_options(name, overrides, (*ENSEMBLE_OPTIONS, *vlsm_names),
                  hint="VLSM options go in a dict under the VLSM's name, UNet-D options under 'unet'")


def build_vlsm(vname: str, preset: str, saved, image_size: Optional[int], defaults: Mapping,
               user: Optional[Mapping]):
    """An ensemble's VLSM from ``defaults`` and the user's ``vlsm_name={...}`` options; rebuilding a saved
    ensemble (``saved``), from the VLSM's saved architecture and tokenizer files."""
    opts = {**defaults, **dict(user or {})}
    vpreset = opts.pop("preset", preset)
    pretrained = opts.pop("pretrained", None)
    part = saved.part(vname) if saved is not None else None
    if part is not None:
        pretrained = None  # reloading a saved ensemble: its weights come from the ensemble's file
    if image_size is not None:
        opts["image_size"] = image_size
    return build(vname, pretrained, preset=vpreset, saved=part, **opts)


def unet_overrides(preset: str, overrides: Mapping, base: Optional[Mapping] = None) -> dict:
    """UNet-D sizes of an ensemble: ``base`` (a saved ensemble's), else its preset (or ``unet={'preset': ...}``),
    with the user's ``unet={...}``."""
    user = dict(overrides.get("unet") or {})
    unet_preset = user.pop("preset", preset)
    for k in ("inject_channels", "fuse_channels", "image_size"):
        if k in user:
            raise ValueError(f"unet={{'{k}': ...}} is set by the ensemble; leave it out")
    if base is None:
        base = {k: v for k, v in unet_d_preset(unet_preset).items() if k != "image_size"}
    return {**base, **user}


def ensemble_config(name: str, variant: str, preset: str, image_size: int, overrides: Mapping,
                    saved=None) -> EnsembleConfig:
    """The ensemble's config: from its preset, or a saved ensemble's architecture in the preset's place, with the
    options applied."""
    arch = saved.architecture if saved is not None else None
    if arch is None:
        return EnsembleConfig(name, variant, preset, image_size, AdapterSizes.of(preset, overrides),
                              unet_overrides(preset, overrides))
    sizes = AdapterSizes(**arch["sizes"]).with_options(overrides)
    return EnsembleConfig(name, variant, preset, image_size, sizes, unet_overrides(preset, overrides, arch["unet"]))
