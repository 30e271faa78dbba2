"""Shared pieces of the CLIPSeg-style vision-language segmentation models (CLIPSeg, BiomedCLIPSeg).

Both models follow one pipeline, exposed step by step so that ensembles can reuse each part::

    activations, last_hidden_state = model.encode_image(pixel_values)   # ViT tokens (B, N, D)
    conditional_embeddings = model.encode_text(input_ids, attention_mask)  # (B, projection_dim)
    logits = model.decode(activations, conditional_embeddings)          # (B, 1, H, W)

``model.forward_features(...)`` returns all of them as a :class:`VLSMOutput`; ``model(...)`` the logits.
A frozen, deterministic image encoder's outputs are a fixed function of the image:
``model.frozen_image_features(pixel_values)`` returns them (else ``None``) and
``model.forward_with_features(pixel_values, features, ...)`` runs the rest of the model on them; ``model(...)``
is ``forward_with_features`` with ``features=None`` (training's feature cache reuses them across epochs).
``model.config`` is a :class:`VLSMConfig`.

The ViT stops after the last block the decoder reads, so ``last_hidden_state`` is ``None`` unless asked
for (``with_last_hidden_state=True``); the text encoder sees the batch cut to its longest prompt and, when
frozen and deterministic, computes each distinct prompt once (:mod:`vlsm.models.speedups`). In train mode a
frozen encoder runs its dropout (as the reference code) unless ``frozen_dropout=False`` keeps it in eval mode.
"""
from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from vlsm.models.base import Preprocess, SegmentationModel
from vlsm.models.presets import configs_dir, load_config_json  # noqa: F401  (their former home)
from vlsm.models.presets import preset as preset_values
from vlsm.models.speedups import TextEmbeddingCache, is_deterministic, is_frozen, speedups_enabled


@dataclass
class VLSMOutput:
    """Everything one forward pass of a VLSM computes.

    Attributes:
        logits: (B, 1, H, W) at the input size.
        activations: ViT token sequences (B, N, hidden_size) fed to the decoder, one per extract layer,
            in ``config.extract_layers`` order (N = grid*grid + 1, the class token first).
        conditional_embeddings: (B, projection_dim) text embeddings that drive the decoder's FiLM.
        last_hidden_state: (B, N, hidden_size) output of the last ViT block, before the final norm; ``None``
            unless ``with_last_hidden_state=True`` (the blocks after the last extracted one are skipped).
    """

    logits: torch.Tensor
    activations: list
    conditional_embeddings: torch.Tensor
    last_hidden_state: Optional[torch.Tensor] = None


@dataclass
class VLSMConfig:
    """Architecture + preprocessing of one CLIPSeg-style model (a plain, JSON-serialisable dataclass).

    ``activation_offset``: the decoder's activation for extract layer ``i`` is the output of ViT block
    ``i + activation_offset`` (0-based). CLIPSeg (transformers) uses 0; the BiomedCLIPSeg reference code
    (medvlsm, VLSM-Ensemble) uses 1, i.e. blocks 4, 7, 10 for extract layers 3, 6, 9.
    ``clipseg_config`` is the full transformers ``CLIPSegConfig`` dict of the decoder (and, for CLIPSeg,
    of the encoders); ``open_clip_config``/``text_config`` describe BiomedCLIP's towers.
    ``frozen_dropout``: whether a frozen encoder (image or text, every parameter frozen) follows the model
    into train mode, running its dropout as the reference code does (true, the default and the value of
    folders saved before the option existed); false keeps frozen encoders in eval mode, so they are
    deterministic and their outputs can be cached during training too (:meth:`VLSMBase.train`).
    """

    model: str
    preset: str
    image_size: int
    patch_size: int
    hidden_size: int
    num_hidden_layers: int
    projection_dim: int
    extract_layers: tuple
    activation_offset: int
    reduce_dim: int
    decoder_num_attention_heads: int
    decoder_intermediate_size: int
    conditional_layer: int
    use_complex_transposed_convolution: bool
    mean: tuple
    std: tuple
    tokenizer: str
    context_length: int
    freeze_encoder: bool
    freeze_decoder: bool
    clipseg_config: dict = field(default_factory=dict)
    open_clip_config: Optional[dict] = None
    text_config: Optional[dict] = None
    frozen_dropout: bool = True

    def __post_init__(self):
        self.extract_layers = tuple(int(i) for i in self.extract_layers)
        self.mean = tuple(float(x) for x in self.mean)
        self.std = tuple(float(x) for x in self.std)
        self.validate()

    # -- derived sizes ---------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """Patch tokens per side at ``image_size``."""
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens per image: grid*grid patches + the class token."""
        return self.grid_size ** 2 + 1

    @property
    def activation_blocks(self) -> tuple:
        """0-based ViT blocks whose outputs are the decoder's activations."""
        return tuple(i + self.activation_offset for i in self.extract_layers)

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(image_size=self.image_size, mean=self.mean, std=self.std,
                          tokenizer=self.tokenizer, context_length=self.context_length)

    def validate(self) -> None:
        if self.image_size <= 0 or self.image_size % self.patch_size:
            raise ValueError(f"{self.model}: image_size {self.image_size} must be a positive multiple of the "
                             f"patch size {self.patch_size}")
        if not self.extract_layers:
            raise ValueError(f"{self.model}: extract_layers must name at least one ViT layer")
        blocks = self.activation_blocks
        if min(blocks) < 0 or max(blocks) >= self.num_hidden_layers:
            raise ValueError(
                f"{self.model}: extract_layers {list(self.extract_layers)} with activation_offset "
                f"{self.activation_offset} select ViT blocks {list(blocks)}, but the ViT has blocks "
                f"0..{self.num_hidden_layers - 1}")
        if self.context_length < 2:
            raise ValueError(f"{self.model}: context_length must be >= 2, got {self.context_length}")
        if not isinstance(self.frozen_dropout, bool):
            raise ValueError(f"{self.model}: frozen_dropout must be true or false, got {self.frozen_dropout!r} "
                             f"(true: frozen encoders run their dropout in training, as the reference code; "
                             f"false: they stay in eval mode)")

    def clipseg_hf_config(self):
        """The decoder's (and CLIPSeg's) ``transformers.CLIPSegConfig``."""
        from transformers import CLIPSegConfig

        return CLIPSegConfig(**{k: v for k, v in self.clipseg_config.items() if not k.startswith("_")})

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["extract_layers"] = list(self.extract_layers)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VLSMConfig":
        from vlsm.utils import dataclass_from_dict

        return dataclass_from_dict(cls, d, "VLSM config")

def preset_entry(model: str, preset: str) -> dict:
    """A VLSM preset (``configs/vlsm_models.json``): its architecture files, preprocessing and defaults."""
    return preset_values("vlsm_models.json", preset, model=model, within=model)


def restore_decoder_init(decoder: nn.Module) -> nn.Module:
    """Give a freshly built CLIPSeg decoder the initialisation the papers' code trained from.

    transformers 5 initialises every plain Linear/Conv of ``CLIPSegDecoder`` from N(0, 1) (its
    config has no ``initializer_range``, so ``initializer_factor`` = 1 becomes the std): random-init
    logits then have a std of ~500 and a randomly initialised decoder (BiomedCLIPSeg) barely trains.
    transformers 4 (medvlsm, VLSM-Ensemble) kept PyTorch's default init for these layers, with zero
    Linear biases; the attention and MLP layers keep transformers' CLIP-style init either way.
    """
    from transformers.models.clipseg.modeling_clipseg import CLIPSegAttention, CLIPSegMLP

    keep = set()
    for module in decoder.modules():
        if isinstance(module, (CLIPSegAttention, CLIPSegMLP)):
            keep.update(id(m) for m in module.modules())
    with torch.no_grad():
        for module in decoder.modules():
            if id(module) in keep:
                continue
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.reset_parameters()
            elif isinstance(module, nn.Linear):
                module.reset_parameters()
                if module.bias is not None:
                    module.bias.zero_()
    return decoder


class VLSMBase(SegmentationModel):
    """Common behaviour of CLIPSeg and BiomedCLIPSeg (see module docstring)."""

    uses_text = True
    config: VLSMConfig

    def __init__(self, config: VLSMConfig):
        super().__init__()
        self.config = config
        self.preprocess = config.preprocess
        self._tokenizer = None
        self._tokenizer_error: Optional[str] = None
        self.text_cache = TextEmbeddingCache()

    # -- parts subclasses implement ------------------------------------------------------------
    def encode_image(self, pixel_values: torch.Tensor,
                     with_last_hidden_state: bool = False) -> tuple[list, Optional[torch.Tensor]]:  # pragma: no cover
        """(activations at ``config.activation_blocks``, last block's output or ``None``)."""
        raise NotImplementedError

    @property
    def image_modules(self) -> list:  # pragma: no cover
        """The modules :meth:`encode_image` computes with (what decides whether its outputs may be reused)."""
        raise NotImplementedError

    @property
    def text_modules(self) -> list:  # pragma: no cover
        """The modules the text embedding is computed with (what the text cache watches)."""
        raise NotImplementedError

    def run_text_encoder(self, input_ids: torch.Tensor,
                         attention_mask: Optional[torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        """The text embedding (B, projection_dim) of exactly these inputs."""
        raise NotImplementedError

    def text_lengths(self, input_ids: torch.Tensor,
                     attention_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:  # pragma: no cover
        """Per prompt, the leading positions its embedding depends on; ``None`` where cutting is not exact."""
        raise NotImplementedError

    def last_needed_block(self, with_last_hidden_state: bool) -> int:
        """0-based index of the last ViT block to run."""
        if with_last_hidden_state or not speedups_enabled():
            return self.config.num_hidden_layers - 1
        return max(self.config.activation_blocks)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The decoder's conditional embedding (B, projection_dim), from the prompts cut to the batch's
        longest one; a frozen, deterministic text encoder reuses the embeddings of prompts seen before."""
        with self._encoder_context():
            if not speedups_enabled():
                return self.run_text_encoder(input_ids, attention_mask)
            lengths = self.text_lengths(input_ids, attention_mask)
            if lengths is None:
                return self.run_text_encoder(input_ids, attention_mask)
            if self.text_cache.usable(self.text_modules):
                return self.text_cache.encode(self.text_modules, self.run_text_encoder, input_ids, attention_mask,
                                              lengths)
            from vlsm.text.batching import trim_to_lengths

            return self.run_text_encoder(*trim_to_lengths(input_ids, attention_mask, lengths))

    @property
    def decoder_module(self) -> torch.nn.Module:  # pragma: no cover
        raise NotImplementedError

    @property
    def encoder_modules(self) -> list:  # pragma: no cover
        raise NotImplementedError

    # -- freezing ------------------------------------------------------------------------------
    def apply_freezing(self) -> None:
        """Set requires_grad from ``config.freeze_encoder`` / ``config.freeze_decoder`` (and, with
        ``config.frozen_dropout`` false, put the encoders frozen now in eval mode)."""
        for module in self.encoder_modules:
            module.requires_grad_(not self.config.freeze_encoder)
        self.decoder_module.requires_grad_(not self.config.freeze_decoder)
        if not self.config.frozen_dropout:
            self.train(self.training)  # which encoders are frozen may have changed

    def frozen_encoders(self) -> list:
        """The modules of the image and of the text encoder, for each one whose parameters are all frozen."""
        return [m for group in (self.image_modules, self.text_modules) if is_frozen(group) for m in group]

    def train(self, mode: bool = True):
        """``nn.Module.train``, except that with ``config.frozen_dropout`` false the frozen encoders stay in
        eval mode: their dropout off, they compute the same outputs every step, so the text cache and the
        frozen image features serve training too. The decoder and every trainable part switch as usual."""
        super().train(mode)
        if mode and not self.config.frozen_dropout:
            for module in self.frozen_encoders():
                module.eval()
        return self

    def _encoder_context(self):
        """``no_grad`` while the encoder is frozen (never inference_mode: its outputs feed trainable layers)."""
        frozen = not any(p.requires_grad for m in self.encoder_modules for p in m.parameters())
        return torch.no_grad() if frozen else nullcontext()

    # -- the pipeline ------------------------------------------------------------------------------
    def _check_pixels(self, pixel_values: torch.Tensor) -> None:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be (B, 3, H, W), got {tuple(pixel_values.shape)}")
        h, w = pixel_values.shape[-2:]
        if h != w:
            raise ValueError(f"{self.config.model} needs square images (its decoder reshapes tokens to a square "
                             f"grid); got {h}x{w}. Resize to {self.config.image_size}x{self.config.image_size}.")
        if h % self.config.patch_size:
            raise ValueError(f"image side {h} is not a multiple of the patch size {self.config.patch_size}; "
                             f"resize to {self.config.image_size}x{self.config.image_size}")

    def decode(self, activations: list, conditional_embeddings: torch.Tensor,
               output_size: Optional[tuple] = None, align_corners: bool = False) -> torch.Tensor:
        """CLIPSeg decoder: activations + FiLM conditioning -> logits (B, 1, H, W).

        ``output_size`` (H, W) resizes bilinearly (``align_corners`` as given) when the decoder's native size
        (grid * patch) differs.
        """
        if len(activations) != len(self.config.extract_layers):
            raise ValueError(f"decode needs {len(self.config.extract_layers)} activations "
                             f"(one per extract layer), got {len(activations)}")
        logits = self.decoder_module(activations, conditional_embeddings).logits
        batch = conditional_embeddings.shape[0]
        logits = logits.reshape(batch, 1, *logits.shape[-2:])  # HF squeezes the channel axis
        if output_size is not None and tuple(logits.shape[-2:]) != tuple(output_size):
            logits = F.interpolate(logits, size=tuple(output_size), mode="bilinear", align_corners=align_corners)
        return logits

    # -- the image encoder's outputs as features (see SegmentationModel.frozen_image_features) ----------
    def image_feature_count(self, with_last_hidden_state: bool = False) -> int:
        """How many tensors :meth:`image_features` returns."""
        return len(self.config.extract_layers) + int(bool(with_last_hidden_state))

    def image_features(self, pixel_values: torch.Tensor, with_last_hidden_state: bool = False) -> tuple:
        """:meth:`encode_image` as one flat tuple: the activations in ``config.extract_layers`` order, then the
        last block's output when asked for."""
        activations, last_hidden_state = self.encode_image(pixel_values, with_last_hidden_state)
        return (*activations, last_hidden_state) if with_last_hidden_state else tuple(activations)

    def has_frozen_image_features(self) -> bool:
        """The image encoder is frozen and deterministic (eval mode, or no dropout that is on)."""
        return is_frozen(self.image_modules) and is_deterministic(self.image_modules)

    def frozen_image_features(self, pixel_values: torch.Tensor, with_last_hidden_state: bool = False):
        """:meth:`image_features` when the image encoder is frozen and deterministic, else ``None``."""
        if not self.has_frozen_image_features():
            return None
        return self.image_features(pixel_values, with_last_hidden_state)

    def split_image_features(self, features, with_last_hidden_state: bool = False) -> tuple[list, Optional[torch.Tensor]]:
        """(activations, last block's output or ``None``) from what :meth:`image_features` returned."""
        count = self.image_feature_count(with_last_hidden_state)
        if len(features) != count:
            raise ValueError(f"{self.config.model} takes {count} image feature tensors (one per extract layer"
                             f"{' and the last block' if with_last_hidden_state else ''}), got {len(features)}")
        features = list(features)
        last_hidden_state = features.pop() if with_last_hidden_state else None
        return features, last_hidden_state

    def forward_features(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                         attention_mask: Optional[torch.Tensor] = None,
                         with_last_hidden_state: bool = False, features: Optional[tuple] = None,
                         align_corners: bool = False) -> VLSMOutput:
        """Every output of one pass; ``features``: :meth:`image_features` of these images, computed earlier;
        ``align_corners``: of the logits' resize to the input size (:meth:`decode`)."""
        if input_ids is None:
            raise ValueError(f"{self.config.model} is a text-prompted model: pass input_ids (and attention_mask) "
                             f"from model.get_tokenizer()")
        if input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(f"got {input_ids.shape[0]} prompts for {pixel_values.shape[0]} images; pass one "
                             f"prompt per image")
        if features is None:
            features = self.image_features(pixel_values, with_last_hidden_state)
        activations, last_hidden_state = self.split_image_features(features, with_last_hidden_state)
        conditional = self.encode_text(input_ids, attention_mask)
        logits = self.decode(activations, conditional, output_size=tuple(pixel_values.shape[-2:]),
                             align_corners=align_corners)
        return VLSMOutput(logits=logits, activations=activations, conditional_embeddings=conditional,
                          last_hidden_state=last_hidden_state)

    def forward_with_features(self, pixel_values: torch.Tensor, features: Optional[tuple],
                              input_ids: Optional[torch.Tensor] = None,
                              attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward_features(pixel_values, input_ids, attention_mask, features=features).logits

    def forward(self, pixel_values: torch.Tensor, input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward_with_features(pixel_values, None, input_ids, attention_mask)

    # -- tokenizer -------------------------------------------------------------------------------
    def set_tokenizer(self, tokenizer, error: Optional[str] = None) -> None:
        self._tokenizer = tokenizer
        self._tokenizer_error = error

    def get_tokenizer(self):
        from vlsm.text.tokenizers import TokenizerNotAvailableError

        if self._tokenizer is None:
            raise TokenizerNotAvailableError(self._tokenizer_error or f"{self.config.model} has no tokenizer")
        return self._tokenizer

    # -- the folder's architecture (vlsm.models.folder) ---------------------------------------------
    def architecture(self) -> dict:
        return self.config.to_dict()
