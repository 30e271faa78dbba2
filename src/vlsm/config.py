"""Experiment configuration as data: one dataclass tree, loaded from YAML, overridden from the CLI,
and written back resolved into every run folder (``config.yaml``).

Every key and value is checked against the dataclasses' type hints when a file is read and when an
override is applied (:func:`apply_overrides`, the one override path of ``vlsm train`` and
``vlsm sweep --set``), so ``epochs: "5"`` is refused naming the file, the key and the expected type.
The model section is a :class:`vlsm.models.ModelSpec`: exactly what ``vlsm.create_model`` takes."""
from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

import yaml

from vlsm.devices import CHANNELS_LAST_MODES  # noqa: F401 - the choices of train.channels_last, with the others
from vlsm.models import ModelSpec
from vlsm.utils import check_fields, typed_dataclass_from_dict, write_text_atomic

# The model an experiment trains when its file has no model section (or no model name).
DEFAULT_MODEL = "unet-d"


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but ``1e-3`` is a number as in YAML 1.2 and JSON (YAML 1.1, which
    PyYAML follows, reads a float without a dot as text, so ``lr: 1e-3`` would be refused)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_yaml(text: str):
    """Parse YAML text the way experiment files and ``--set`` values are read."""
    return yaml.load(text, Loader=_YamlLoader)  # safe: a SafeLoader subclass


def default_model() -> ModelSpec:
    return ModelSpec(name=DEFAULT_MODEL)


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
    # Decode once: images and masks decoded and resized once per image size into an on-disk cache that
    # every worker, epoch and run reads (vlsm.data.decoded); false decodes the files every epoch.
    cache: bool = True
    # Folder of that cache; None = $VLSM_CACHE_DIR/decoded or ~/.cache/vlsm/decoded.
    cache_dir: Optional[str] = None
    # Leave out of the training split the images also listed in another split (leakage; reported anyway).
    drop_overlap: bool = False
    skip_bad: bool = False
    check: bool = True
    # Images over this many pixels are refused by name (None: Pillow's decompression-bomb limit).
    max_pixels: Optional[int] = None

    def resolved_eval_prompt(self) -> str:
        if self.eval_prompt:
            return self.eval_prompt
        return "p1" if self.prompt == "random" else self.prompt


# The choices of the TrainConfig fields that take a name (checked by vlsm.training.run.check_train_config).
MONITORS = ("val_dice", "val_loss", "val_bce")
SCHEDULERS = ("plateau", "none")
FEATURE_CACHE_MODES = ("auto", "on", "off")
KEEP_CHECKPOINTS = ("last", "all", "none")
DICE_REDUCTIONS = ("image", "batch")


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    # The soft Dice term per image, averaged ("image"), or one Dice over all the batch's pixels ("batch",
    # the paper's UNet-D script: its dice_loss with reduce_batch_first=True).
    dice_reduction: str = "image"
    scheduler_patience: int = 5
    scheduler_factor: float = 0.5
    early_stopping_patience: int = 10
    grad_clip: float = 1.0
    # "auto": 16-bit mixed precision on CUDA (bf16 where supported), fp32 on CPU.
    precision: str = "auto"
    device: str = "auto"          # auto | cpu | cuda
    devices: Union[int, str] = 1  # number of GPUs (or "auto"); >1 uses DDP
    num_workers: int = 2
    seed: int = 42
    max_minutes: Optional[float] = None
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None
    progress_bar: bool = True
    # Lightning's deterministic=True (deterministic GPU kernels; CPU runs are reproducible anyway).
    deterministic: bool = False
    # Start from a weight source that lacks some of the model's tensors (they keep their initialisation,
    # a warning names them) instead of refusing it: create_model(allow_partial_weights=True).
    allow_partial_weights: bool = False
    # Multi-node DDP through Lightning (SLURM/torchrun set the ranks); devices counts GPUs per node.
    num_nodes: int = 1
    # The quantity early stopping and the best checkpoint follow: val_dice (higher is better),
    # val_loss or val_bce (lower is better; val_bce is the BCE part of the loss alone).
    monitor: str = "val_dice"
    # Smallest change of `monitor` that counts as an improvement for early stopping.
    min_delta: float = 0.0
    # Early stopping cannot end training before this many epochs (Lightning's min_epochs).
    min_epochs: int = 0
    # Learning-rate schedule: "plateau" (ReduceLROnPlateau on val_loss, scheduler_factor/patience) or "none".
    scheduler: str = "plateau"
    # After every epoch, continue from the best weights so far (the paper's UNet-D script does this).
    reload_best_each_epoch: bool = False
    # Frozen image encoder: compute its activations once per image and reuse them every epoch.
    # "auto" = on when that is exact (frozen encoder, no augmentation), "on" (refused when not exact), "off".
    feature_cache: str = "auto"
    # What checkpoints/ keeps once the run has finished (model/ then holds the best weights):
    # "last" (to continue training), "all" (best.ckpt too) or "none".
    keep_checkpoints: str = "last"
    # torch.compile the model for training (faster on GPUs after a warm-up; needs a C compiler).
    compile: bool = False
    # Convolution weights channels-last (NHWC) while training: "auto" = on a CUDA GPU, "on" (CPUs too), "off".
    channels_last: str = "auto"


@dataclass
class EvalConfig:
    threshold: float = 0.5
    splits: list = field(default_factory=lambda: ["test"])
    batch_size: int = 4


@dataclass
class ExperimentConfig:
    name: Optional[str] = None
    out: Optional[str] = None
    # name, preset, variant, pretrained and overrides (model-specific create_model options such as
    # image_size or freeze_encoder), exactly what vlsm.create_model takes
    model: ModelSpec = field(default_factory=default_model)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"model": ModelSpec, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig}
# Fields naming files or folders: ~ and $VARS are expanded (model.pretrained only when it has a $).
_PATH_LISTS = {("data", "paths"), ("data", "test_paths")}


def _normalised(section: str, key: str, value, where: str):
    """A single dataset path becomes a one-item list; ``~`` and ``$VARS`` in paths are expanded."""
    if (section, key) in _PATH_LISTS:
        if isinstance(value, (str, Path)):
            value = [value]
        if isinstance(value, list):
            value = [expand_path(p, where) for p in value]
    elif (section, key) == ("model", "pretrained") and isinstance(value, str) and "$" in value:
        value = expand_path(value, where)
    return value


def _section_from_dict(section: str, values, where: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"{where}: {section}: expected a mapping, got {values!r} ({type(values).__name__})")
    if section == "model":
        values = {"name": DEFAULT_MODEL, **values}
    values = {k: _normalised(section, k, v, where) for k, v in values.items()}
    return typed_dataclass_from_dict(SECTIONS[section], values, where, section)


def config_from_dict(d: dict, where: str = "config") -> ExperimentConfig:
    """An experiment from its YAML/dict form; every key and value type is checked against the
    dataclasses above and errors name ``where``, the key and the expected type."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping at the top level, got {type(d).__name__}")
    top = {key: _section_from_dict(key, value, where) if key in SECTIONS else value for key, value in d.items()}
    return typed_dataclass_from_dict(ExperimentConfig, top, where)


def parse_override(text: str) -> tuple[str, object]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE)`` with VALUE read as YAML (numbers, booleans, null, lists,
    mappings): ``"train.epochs=5"`` -> ``("train.epochs", 5)``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, read_yaml(value)
    except yaml.YAMLError as err:
        raise ValueError(f"{text!r}: the value is not valid YAML ({err})") from err


def apply_overrides(cfg: ExperimentConfig, pairs: Iterable[tuple[str, object]], *,
                    where: str = "override") -> ExperimentConfig:
    """A copy of ``cfg`` with each ``(dotted key, value)`` of ``pairs`` set, in order.

    Keys are ``SECTION.FIELD`` (``train.epochs``, ``data.paths``, ``model.name``), a top-level field
    (``name``, ``out``), or ``model.overrides.OPTION`` for a create_model option
    (``model.overrides.image_size``; nested options take a mapping value:
    ``("model.overrides.clipseg", {"pretrained": ...})``). Values are checked
    against the field's type exactly as in an experiment file; errors name ``where`` (e.g. ``--set``),
    the key, the expected type and the valid keys. ``cfg`` itself is never changed.
    """
    cfg = copy.deepcopy(cfg)
    for key, value in pairs:
        _apply_override(cfg, key, value, where)
    return cfg


def _apply_override(cfg: ExperimentConfig, key: str, value, where: str) -> None:
    head, *rest = key.split(".")
    if head in SECTIONS and rest:
        target = getattr(cfg, head)
        name = rest[0]
        if (head, name) == ("model", "overrides") and len(rest) > 1:
            # one create_model option, named by the rest of the key (as `--set KEY=VALUE` names it)
            target.overrides = {**target.overrides, ".".join(rest[1:]): value}
            return
        if len(rest) > 1 and name in {f.name for f in dataclasses.fields(target)}:
            raise ValueError(f"{where}: {key}: {head}.{name} has no sub-keys; set {head}.{name} itself")
        value = _normalised(head, name, value, where)
        check_fields(type(target), {".".join(rest): value}, where, head)
        setattr(target, name, value)
    elif not rest and head not in SECTIONS:
        check_fields(ExperimentConfig, {head: value}, where)
        setattr(cfg, head, value)
    else:
        tops = [f.name for f in dataclasses.fields(ExperimentConfig) if f.name not in SECTIONS]
        raise ValueError(f"{where}: {key!r}: expected SECTION.KEY with SECTION one of {sorted(SECTIONS)} "
                         f"(e.g. train.epochs), or one of {tops}")


def expand_path(p, where: str = "config") -> str:
    """Expand ``~`` and ``$VARS`` (e.g. ``$VLSM_DATA_ROOT/kvasir_polyp``); an unset variable is an error."""
    s = os.path.expanduser(os.path.expandvars(str(p)))
    if "$" in s:
        missing = re.findall(r"\$\{?(\w+)", s)
        raise ValueError(f"{where}: path {p!r} uses unset environment variable(s) {missing}; "
                         f"export them (e.g. export VLSM_DATA_ROOT=/path/to/data) or write the path out")
    return s


#: settings a resumed run may change: how long it trains, how it reads its data, shows progress and keeps its
#: checkpoints, not what it computes (the decoded-image cache gives bit-identical items; the feature cache and
#: torch.compile and channels-last convolutions change only float rounding)
RESUMABLE_KEYS = ("name", "out", "train.epochs", "train.max_minutes", "train.progress_bar", "train.num_workers",
                  "eval.batch_size", "data.cache", "data.cache_dir", "data.max_pixels", "train.keep_checkpoints",
                  "train.feature_cache", "train.compile", "train.channels_last")


def config_changes(old: ExperimentConfig, new: ExperimentConfig, *, ignore: Iterable[str] = ()) -> list[str]:
    """``["train.lr: 0.001 -> 0.01", ...]``: the dotted keys whose values differ between two experiments
    (keys in ``ignore`` left out)."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in d.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict) and value and dotted != "model.overrides":
                out.update(flat(value, dotted + "."))
            else:
                out[dotted] = value
        return out

    a, b = flat(old.to_dict()), flat(new.to_dict())
    skip = set(ignore)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in skip and a.get(k) != b.get(k)]


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {path} not found")
    try:
        raw = read_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML{where}: {problem}") from None
    cfg = config_from_dict(raw, where=str(path))
    # Relative dataset paths in a file are relative to where the user runs vlsm (like the CLI),
    # so experiment files stay portable by using $VLSM_DATA_ROOT-style prefixes (see README).
    return cfg


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
