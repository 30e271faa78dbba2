"""What every ensemble shares: adapter sizes, the ensemble config, persistence and parameter groups,
and the builder steps common to the paper models and :class:`~vlsm.models.ensembles.stack.Stack`."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from vlsm.models.base import SPEC_FILE, SegmentationModel, write_weights
from vlsm.models.registry import check_options, create_model
from vlsm.models.unet_d import PRESETS as UNET_PRESETS
from vlsm.models.unet_d import UNetD


@dataclass(frozen=True)
class AdapterSizes:
    """Sizes of the data adapter between a VLSM and UNet-D (the builders' options of the same names)."""

    reduce_dim: int
    adapter_heads: int
    adapter_ffn_dim: int
    adapter_dropout: float

    @classmethod
    def of(cls, preset: str, overrides: Mapping) -> "AdapterSizes":
        """A preset's sizes with any of the fields given in ``overrides`` (other keys are ignored)."""
        base = ADAPTER_PRESETS[preset]
        return dataclasses.replace(base, **{f.name: overrides[f.name] for f in dataclasses.fields(cls)
                                            if overrides.get(f.name) is not None})


# Paper: the reference's reduce_dim 128, 4 heads; its nn.TransformerEncoderLayer uses PyTorch's
# defaults (feed-forward 2048, dropout 0.1).
ADAPTER_PRESETS = {
    "paper": AdapterSizes(reduce_dim=128, adapter_heads=4, adapter_ffn_dim=2048, adapter_dropout=0.1),
    "tiny": AdapterSizes(reduce_dim=16, adapter_heads=2, adapter_ffn_dim=32, adapter_dropout=0.1),
}
ADAPTER_OPTIONS = tuple(f.name for f in dataclasses.fields(AdapterSizes))


@dataclass
class EnsembleConfig:
    model: str
    variant: str
    preset: str
    image_size: int
    sizes: AdapterSizes
    unet: dict = field(default_factory=dict)
    vlsm: dict = field(default_factory=dict)  # VLSM name -> builder overrides

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class VLSMEnsemble(SegmentationModel):
    """Common behaviour of the ensembles: persistence, parameter groups."""

    uses_text = True
    ensemble: EnsembleConfig

    def vlsms(self) -> dict:
        """Subfolder name -> VLSM module inside this ensemble (its config and tokenizer are saved there)."""
        raise NotImplementedError

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

    def split_image_features(self, features: Optional[tuple]) -> list:
        """Per source VLSM, its part of ``features`` (from :meth:`frozen_image_features`), or ``None`` where
        it computes its own."""
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

    def save_pretrained(self, directory: str | Path, standalone: bool = False) -> Path:
        """Spec + weights, and each VLSM's config and tokenizer files in a subfolder named after it (slim unless
        ``standalone``: see :meth:`SegmentationModel.save_pretrained`)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, vlsm in self.vlsms().items():
            sub = directory / name
            sub.mkdir(exist_ok=True)
            vlsm.config.save(sub)
            try:
                tok = vlsm.get_tokenizer()
            except FileNotFoundError:
                tok = None
            if tok is not None and hasattr(tok, "save"):
                tok.save(sub)
        payload = {"spec": self.spec.without_weights().to_dict(), "preprocess": self.preprocess.to_dict(),
                   "ensemble": self.ensemble.to_dict()}
        frozen = write_weights(self, directory, standalone=standalone)
        if frozen is not None:
            payload["frozen"] = frozen
        tmp = directory / (SPEC_FILE + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(directory / SPEC_FILE)
        return directory


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


def vlsm_model_dir(model_dir: Optional[str], vname: str) -> Optional[str]:
    """The subfolder of a saved ensemble that holds one VLSM's config and tokenizer files, if any."""
    if model_dir and (Path(model_dir) / vname).is_dir():
        return str(Path(model_dir) / vname)
    return None


def build_vlsm(vname: str, preset: str, model_dir: Optional[str], image_size: Optional[int],
               defaults: Mapping, user: Optional[Mapping]):
    """An ensemble's VLSM from ``defaults`` and the user's ``vlsm_name={...}`` options."""
    opts = {**defaults, **dict(user or {})}
    vpreset = opts.pop("preset", preset)
    pretrained = opts.pop("pretrained", None)
    sub = vlsm_model_dir(model_dir, vname)
    if sub is not None:
        pretrained = None  # reloading a saved ensemble: its weights come from the ensemble's file
    if image_size is not None:
        opts["image_size"] = image_size
    return create_model(vname, pretrained, preset=vpreset, model_dir=sub, **opts)


def unet_overrides(preset: str, overrides: Mapping) -> dict:
    """UNet-D sizes of an ensemble: its preset (or ``unet={'preset': ...}``) and the user's ``unet={...}``."""
    user = dict(overrides.get("unet") or {})
    unet_preset = user.pop("preset", preset)
    for k in ("inject_channels", "fuse_channels", "image_size"):
        if k in user:
            raise ValueError(f"unet={{'{k}': ...}} is set by the ensemble; leave it out")
    base = dict(UNET_PRESETS[unet_preset])
    base.pop("image_size", None)
    return {**base, **user}
