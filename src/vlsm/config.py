"""Experiment configuration as data: one dataclass tree, loaded from YAML, overridden from the CLI,
and written back resolved into every run folder (``config.yaml``)."""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from vlsm.utils import dataclass_from_dict, write_text_atomic


@dataclass
class ModelConfig:
    name: str = "unet-d"
    preset: str = "paper"
    variant: Optional[str] = None
    pretrained: Optional[str] = None
    # Model-specific fields passed to create_model, e.g. image_size, freeze_encoder.
    overrides: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    # One or more dataset folders (medvlsm or plain layout); several = pooled training.
    paths: list = field(default_factory=list)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    # p0..p9, "random" (a prompt type per sample), or any other text used verbatim.
    prompt: str = "p1"
    # Prompt at validation/test time; None = same as `prompt` ("random" becomes p1 for a stable score).
    eval_prompt: Optional[str] = None
    # Extra datasets evaluated after training but never trained on (cross-dataset testing).
    test_paths: list = field(default_factory=list)
    class_name: Optional[str] = None
    augment: bool = True
    # Keep decoded, resized images in memory after the first epoch (fast CPU training).
    cache: bool = False
    skip_bad: bool = False
    check: bool = True

    def resolved_eval_prompt(self) -> str:
        if self.eval_prompt:
            return self.eval_prompt
        return "p1" if self.prompt == "random" else self.prompt


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    scheduler_patience: int = 5
    scheduler_factor: float = 0.5
    early_stopping_patience: int = 10
    grad_clip: float = 1.0
    # "auto": 16-bit mixed precision on CUDA (bf16 where supported), fp32 on CPU.
    precision: str = "auto"
    device: str = "auto"          # auto | cpu | cuda
    devices: Any = 1              # number of GPUs (or "auto"); >1 uses DDP
    num_workers: int = 2
    seed: int = 42
    max_minutes: Optional[float] = None
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None
    progress_bar: bool = True


@dataclass
class EvalConfig:
    threshold: float = 0.5
    splits: list = field(default_factory=lambda: ["test"])
    batch_size: int = 4


@dataclass
class ExperimentConfig:
    name: Optional[str] = None
    out: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig}


def config_from_dict(d: dict, where: str = "config") -> ExperimentConfig:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping at the top level, got {type(d).__name__}")
    top = {}
    for key, value in d.items():
        if key in _SECTIONS:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ValueError(f"{where}: section '{key}' must be a mapping")
            top[key] = dataclass_from_dict(_SECTIONS[key], value, f"{where} [{key}]")
        else:
            top[key] = value
    cfg = dataclass_from_dict(ExperimentConfig, top, where)
    if isinstance(cfg.data.paths, (str, Path)):
        cfg.data.paths = [cfg.data.paths]
    cfg.data.paths = [expand_path(p, where) for p in cfg.data.paths]
    cfg.data.test_paths = [expand_path(p, where) for p in cfg.data.test_paths]
    if cfg.model.pretrained and "$" in cfg.model.pretrained:
        cfg.model.pretrained = expand_path(cfg.model.pretrained, where)
    return cfg


def expand_path(p, where: str = "config") -> str:
    """Expand ``~`` and ``$VARS`` (e.g. ``$VLSM_DATA_ROOT/kvasir_polyp``); an unset variable is an error."""
    s = os.path.expanduser(os.path.expandvars(str(p)))
    if "$" in s:
        missing = re.findall(r"\$\{?(\w+)", s)
        raise ValueError(f"{where}: path {p!r} uses unset environment variable(s) {missing}; "
                         f"export them (e.g. export VLSM_DATA_ROOT=/path/to/data) or write the path out")
    return s


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    cfg = config_from_dict(raw, where=str(path))
    # Relative dataset paths in a file are relative to where the user runs vlsm (like the CLI),
    # so experiment files stay portable by using $VLSM_DATA_ROOT-style prefixes (see README).
    return cfg


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
