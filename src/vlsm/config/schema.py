"""The experiment schema: every option of an experiment, once, with its type, default, choices, bounds, help,
flag, whether ``--resume`` may change it and how the model card states it (:func:`~vlsm.config.options.option`).

An experiment file, ``--set`` and the command-line flags are all checked against these models (pydantic, strict:
``epochs: "5"`` is refused, ``lr: 1`` is a number); the flags of ``vlsm train`` (:mod:`vlsm.config.flags`), the
resume check and ``docs/reference/configuration.md`` are derived from them. Field order is ``config.yaml``'s.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from vlsm.config.options import Card, Option, option
from vlsm.config.paths import expand_path
from vlsm.config.sections import SearchConfig, SweepConfig
from vlsm.devices import CHANNELS_LAST_MODES, PRECISION_NAMES
from vlsm.models import ModelSpec

#: the model an experiment trains when its file names none
DEFAULT_MODEL = "unet-d"
_STRICT = ConfigDict(strict=True, extra="forbid", validate_default=False)


def _path_list(value):
    """A single path is a one-item list; ``~`` and ``$VARS`` are expanded."""
    if isinstance(value, str) or hasattr(value, "__fspath__"):
        value = [value]
    if isinstance(value, list):
        return [expand_path(p) if isinstance(p, str) or hasattr(p, "__fspath__") else p for p in value]
    return value


def _weights_path(value):
    if hasattr(value, "__fspath__"):
        value = str(value)
    return expand_path(value) if isinstance(value, str) and "$" in value else value


_DEVICES = "auto, cpu, cuda, cuda:N or mps"
_GPUS = "a number of GPUs (at least 1) or auto"
_BATCHES = "a number of batches (at least 1) or a fraction of them (above 0, at most 1)"
#: Lightning's loggers a run may log to (train.loggers)
LOGGER_NAMES = ("csv", "tensorboard", "mlflow", "wandb", "comet", "neptune")


def _device(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|gpu|cuda(:\d+)?|mps", value):
        raise PydanticCustomError("choice", f"must be {_DEVICES}")
    return value


def _gpus(value):
    if value != "auto" and value < 1:
        raise PydanticCustomError("choice", f"must be {_GPUS}")
    return value


def _batches(value):
    if value is not None and not (isinstance(value, int) and value >= 1 or isinstance(value, float) and 0 < value <= 1):
        raise PydanticCustomError("choice", f"must be {_BATCHES}")
    return value


def parse_gpus(text: str):
    """``--devices``: a number of GPUs, or ``auto``."""
    return int(text) if text.strip().lstrip("-").isdigit() else text


def parse_count_or_fraction(text: str):
    """``--overfit-batches``: a whole number is a batch count (``1``: one batch), anything else a fraction."""
    return int(text) if text.strip().isdigit() else float(text)


def parse_batches(text: str):
    """``--limit-train-batches``: a whole number above 1 is a batch count, otherwise a fraction of the epoch."""
    value = float(text)
    return int(value) if value.is_integer() and value > 1 else value


PathList = Annotated[list[str], BeforeValidator(_path_list)]
Batches = Annotated[Optional[Union[int, float]], AfterValidator(_batches)]


class ModelSection(BaseModel):
    """``model``: what :func:`vlsm.create_model` takes (a :class:`vlsm.models.ModelSpec` once checked)."""

    model_config = _STRICT
    name: str = option(DEFAULT_MODEL, "registered model name (see `vlsm models`)", flag="--model")
    preset: str = option("paper", "architecture preset: paper or tiny", flag="--preset")
    variant: Optional[str] = option(None, "ensembles: fixed (default) or reference", flag="--variant")
    pretrained: Annotated[Optional[str], BeforeValidator(_weights_path)] = option(None, "initial weights: hub id (hf-hub:ORG/NAME) or a local folder; "
                                             "default random init", flag="--pretrained")
    overrides: dict = option(default_factory=dict, help="model-specific create_model options (image_size, "
                                                        "freeze_encoder, ...): `--set KEY=VALUE`, `--img-size N`")


def _model_spec(value) -> ModelSpec:
    if isinstance(value, ModelSpec):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise PydanticCustomError("dict_type", "expected a mapping")
    return ModelSpec(**ModelSection.model_validate({"name": DEFAULT_MODEL, **value}).model_dump())


ModelField = Annotated[ModelSpec, PlainValidator(_model_spec), PlainSerializer(lambda spec: spec.to_dict())]


class DataConfig(BaseModel):
    """``data``: the datasets, their splits and prompts, and how their images are read."""

    model_config = _STRICT
    paths: PathList = option(default_factory=list, help="dataset folder(s) (medvlsm or plain layout); several = "
                                                        "pooled training", flag="--data")
    train_split: str = option("train", "the split trained on")
    val_split: str = option("val", "the split validated on (early stopping, the best checkpoint)")
    test_split: str = option("test", "the split of the extra test datasets (data.test_paths) evaluated")
    prompt: str = option("p1", "p0..p9 (the annotations' prompt types), random (a type per image and epoch) or a "
                               "fixed text", flag="--prompt")
    eval_prompt: Optional[str] = option(None, "the prompt at validation and test time; null: the training prompt "
                                              "(random becomes p1)")
    test_paths: PathList = option(default_factory=list, help="extra dataset folder(s) only evaluated, never trained "
                                                             "on (cross-dataset testing)", flag="--test-data")
    class_name: Optional[str] = option(None, "class name used as prompt p1 of a plain images/+masks/ folder",
                                       flag="--class-name")
    augment: bool = option(True, "flips and colour jitter on the training images", flag="--augment",
                           card=Card("augmentation", {True: "flips and colour jitter", False: "none"}))
    cache: bool = option(True, "decode and resize each image once into an on-disk cache every worker, epoch and "
                               "run reads", flag="--cache", resumable=True)
    cache_dir: Optional[str] = option(None, "folder of that cache; null: $VLSM_CACHE_DIR/decoded or "
                                            "~/.cache/vlsm/decoded", flag="--cache-dir", resumable=True)
    drop_overlap: bool = option(False, "leave out of training the images also listed in another split (leakage; "
                                       "reported either way)", flag="--drop-overlap",
                                card=Card("images also in another split", {True: "left out of training"},
                                          when={"drop_overlap": True}))
    skip_bad: bool = option(False, "leave out files that fail the data check instead of stopping", flag="--skip-bad")
    check: bool = option(True, "check every split read by the rules of `vlsm data check` before training")
    max_pixels: Optional[int] = option(None, "refuse images with more pixels than this; null: Pillow's "
                                             "decompression-bomb limit", flag="--max-pixels", resumable=True, ge=1)
    folds: Optional[int] = option(None, "K-fold cross-validation on train+val (grouped by patient where the image "
                                        "names carry one): train on K-1 folds, validate on fold data.fold; null: the "
                                        "dataset's own splits", flag="--folds", ge=2)
    fold: Optional[int] = option(None, "the fold validated on, 0..data.folds-1 (the others are trained on)",
                                 flag="--fold", ge=0)
    train_fraction: float = option(1.0, "train on this fraction of the training split (whole patients where names "
                                         "carry one); the subsets are nested: 10% lies inside 25%", flag="--train-fraction",
                                   gt=0, le=1)
    split_seed: Optional[int] = option(None, "the seed of the folds and of the training subset; null: train.seed",
                                       flag="--split-seed", ge=0)
    patient_pattern: Optional[str] = option(None, "a regular expression whose first group is the patient in an "
                                                  "image name, for folds and subsets; null: the one `vlsm data "
                                                  "convert` saved, else every image its own patient",
                                            flag="--patient-pattern", valid="a regular expression")

    @model_validator(mode="after")
    def _folds(self):
        if self.folds is not None and self.fold is None:
            raise PydanticCustomError("related", "names K folds but not the one validated on: give --fold I (0..K-1) "
                                                 "too, or train every fold with `vlsm sweep EXP --folds K`",
                                      {"key": "folds", "value": self.folds})
        if self.fold is not None and self.folds is None:
            raise PydanticCustomError("related", "needs data.folds: give --folds K (the number of folds) too",
                                      {"key": "fold", "value": self.fold})
        if self.folds is not None and self.fold >= self.folds:
            raise PydanticCustomError("related", "must be 0..data.folds-1 ({last})",
                                      {"key": "fold", "last": self.folds - 1, "value": self.fold})
        if self.patient_pattern is not None:
            try:
                re.compile(self.patient_pattern)
            except re.error as err:
                raise PydanticCustomError("related", "must be a regular expression whose first group is the patient "
                                                     "({error}), e.g. '^(patient\\d+)_'",
                                          {"key": "patient_pattern", "error": str(err),
                                           "value": self.patient_pattern}) from None
        return self

    def resolved_eval_prompt(self) -> str:
        if self.eval_prompt:
            return self.eval_prompt
        return "p1" if self.prompt == "random" else self.prompt


_PLATEAU = {"scheduler": "plateau"}


class TrainConfig(BaseModel):
    """``train``: the optimisation recipe and how training runs."""

    model_config = _STRICT
    epochs: int = option(50, "training epochs, at most", flag="--epochs", resumable=True, ge=1,
                         card=Card("epochs, at most"))
    batch_size: int = option(8, "images per training batch", flag="--batch-size", ge=1, card=Card("batch size"))
    lr: float = option(1e-3, "AdamW's learning rate", flag="--lr", gt=0, card=Card("learning rate (AdamW)"))
    weight_decay: float = option(1e-4, "AdamW's weight decay", flag="--weight-decay", ge=0,
                                 card=Card("weight decay (AdamW)"))
    bce_weight: float = option(1.0, "weight of BCE-with-logits in the loss", flag="--bce-weight", ge=0,
                               card=Card("loss weight of BCE-with-logits"))
    dice_weight: float = option(1.0, "weight of the soft Dice in the loss", flag="--dice-weight", ge=0,
                                card=Card("loss weight of the soft Dice"))
    dice_reduction: Literal["image", "batch"] = option(
        "image", "the soft Dice per image, averaged (image), or one Dice over all the batch's pixels (batch: the "
                 "paper's UNet-D script)", card=Card("soft Dice", {"image": "per image, averaged",
                                                                   "batch": "over the whole batch"}))
    scheduler_patience: int = option(5, "ReduceLROnPlateau's patience (epochs)", ge=0,
                                     card=Card("ReduceLROnPlateau patience (epochs)", when=_PLATEAU))
    scheduler_factor: float = option(0.5, "ReduceLROnPlateau's factor", gt=0, lt=1,
                                     card=Card("ReduceLROnPlateau factor", when=_PLATEAU))
    early_stopping_patience: int = option(10, "epochs without improvement of the monitor before early stopping",
                                          flag="--patience", ge=0, card=Card("early-stopping patience (epochs)"))
    grad_clip: float = option(1.0, "gradient clipping by norm; 0: none", ge=0, card=Card("gradient clipping (norm)"))
    precision: Literal[PRECISION_NAMES] = option(
        "auto", "auto: 16-bit mixed precision on CUDA (bf16 where supported), fp32 on a CPU; or Lightning's name",
        flag="--precision")
    device: Annotated[str, AfterValidator(_device)] = option("auto", "auto (CUDA when available, else the CPU), cpu, cuda or mps (Apple GPUs); cuda:N for evaluation (--devices picks the GPUs training uses)",
                                                                     flag="--device", valid=_DEVICES)
    devices: Annotated[Union[int, Literal["auto"]], AfterValidator(_gpus)] = option(
        1, "number of GPUs (per node), or auto; more than 1 trains with DDP", flag="--devices", parse=parse_gpus,
        valid=_GPUS)
    num_workers: int = option(2, "DataLoader worker processes", flag="--num-workers", resumable=True, ge=0)
    seed: int = option(42, "the seed of every random draw (order, augmentation, prompts, dropout)", flag="--seed",
                       ge=0, card=Card("seed"))
    max_minutes: Optional[float] = option(None, "stop training after this many minutes", flag="--max-minutes",
                                          resumable=True, gt=0)
    limit_train_batches: Batches = option(None, "batches (or fraction of them) per training epoch",
                                          flag="--limit-train-batches", parse=parse_batches,
                                          valid=_BATCHES)
    limit_val_batches: Batches = option(None, "batches (or fraction of them) per validation", valid=_BATCHES)
    progress_bar: bool = option(True, "show a progress bar (else logs only)", flag="--progress", resumable=True)
    deterministic: bool = option(False, "deterministic GPU kernels (Lightning's deterministic=True; slower; CPU runs "
                                        "are reproducible anyway)", flag="--deterministic")
    allow_partial_weights: bool = option(False, "accept initial weights that lack some of the model's tensors (they "
                                                "keep their initialisation; a warning names them)",
                                         flag="--allow-partial-weights")
    num_nodes: int = option(1, "machines for multi-node DDP (SLURM or torchrun set the ranks)", flag="--num-nodes",
                            ge=1)
    monitor: Literal["val_dice", "val_loss", "val_bce"] = option(
        "val_dice", "what early stopping and the best checkpoint follow: validation Dice (higher is better), the "
                    "validation loss or its BCE part (lower is better)", flag="--monitor",
        card=Card("monitored (best checkpoint, early stopping)",
                  {"val_dice": "validation Dice", "val_loss": "validation loss", "val_bce": "validation BCE"}))
    min_delta: float = option(0.0, "the smallest change of the monitor that counts as an improvement",
                              flag="--min-delta", ge=0, card=Card("smallest improvement"))
    min_epochs: int = option(0, "early stopping cannot end training before this many epochs (at most train.epochs)",
                             flag="--min-epochs", ge=0, card=Card("epochs, at least"))
    scheduler: Literal["plateau", "none"] = option(
        "plateau", "learning-rate schedule: ReduceLROnPlateau on the validation loss, or a constant rate",
        flag="--scheduler", card=Card("learning-rate schedule", {"plateau": "ReduceLROnPlateau on the validation loss",
                                                                 "none": "constant rate"}))
    reload_best_each_epoch: bool = option(
        False, "after an epoch that does not improve, continue from the best weights so far (the paper's UNet-D "
               "script)", flag="--reload-best-each-epoch",
        card=Card("after an epoch without improvement", {True: "continue from the best weights so far"},
                  when={"reload_best_each_epoch": True}))
    feature_cache: Literal["auto", "on", "off"] = option(
        "auto", "compute a frozen image encoder's outputs once per image and reuse them every epoch (auto: when "
                "exact)", flag="--feature-cache", resumable=True)
    keep_checkpoints: Literal["last", "all", "none"] = option(
        "last", "the checkpoints kept once the run has finished (model/ holds the best weights): last (to continue "
                "training), all, or none", flag="--keep-checkpoints", resumable=True)
    compile: bool = option(False, "torch.compile the model for training (needs a C compiler)", flag="--compile",
                           resumable=True)
    channels_last: Literal[CHANNELS_LAST_MODES] = option(
        "auto", "convolution weights channels-last (NHWC) while training (auto: on a CUDA GPU)",
        flag="--channels-last", resumable=True)
    accumulate_grad_batches: int = option(
        1, "add up the gradients of this many batches before each optimizer step (an effective batch of "
           "batch_size x this many)", flag="--accumulate-grad-batches", ge=1,
        card=Card("gradient accumulation (batches per optimizer step)"))
    fast_dev_run: bool = option(
        False, "debugging: run one training and one validation batch, then stop (Lightning's fast_dev_run); the run "
               "folder keeps no checkpoint, model or results and never counts as finished", flag="--fast-dev-run")
    overfit_batches: Batches = option(
        None, "debugging: train on this many training batches (or this fraction of them), unshuffled, and validate on "
              "as many validation batches, every epoch (Lightning's overfit_batches); the run never counts as finished",
        flag="--overfit-batches", parse=parse_count_or_fraction, valid=_BATCHES)
    profiler: Optional[Literal["simple", "advanced", "pytorch"]] = option(
        None, "profile training with Lightning's profiler (simple, advanced or pytorch); its report goes to RUN/profile/",
        flag="--profiler", resumable=True)
    loggers: list[Literal[LOGGER_NAMES]] = option(
        default_factory=lambda: ["csv", "tensorboard"], help="Lightning's loggers: csv, tensorboard (when installed), "
        "mlflow, wandb, comet, neptune; every run logs its model, data, seed, fold and fraction to them",
        flag="--loggers", resumable=True)
    tracking_uri: Optional[str] = option(None, "where the trackers log: MLflow's tracking URI (null: "
                                               "$MLFLOW_TRACKING_URI, else MLflow's default); W&B, Comet and Neptune "
                                               "read their own settings (WANDB_MODE=offline ...)", flag="--tracking-uri",
                                         resumable=True)
    tracking_project: str = option("vlsm", "the trackers' experiment or project name (MLflow experiment, W&B/Comet "
                                           "project; Neptune: WORKSPACE/PROJECT)", flag="--tracking-project",
                                   resumable=True)
    tune_threshold: bool = option(
        False, "after training, choose the mask threshold on the validation split (0.05 to 0.95 in steps of 0.05, "
               "the highest mean Dice); evaluation and prediction then use it", flag="--tune-threshold",
        card=Card("mask threshold", {True: "tuned on the validation split", False: "fixed (eval.threshold)"}))

    @model_validator(mode="after")
    def _together(self):
        if self.min_epochs > self.epochs:
            raise PydanticCustomError("related", "must be at most train.epochs ({epochs})",
                                      {"key": "min_epochs", "epochs": self.epochs, "value": self.min_epochs})
        if self.bce_weight + self.dice_weight <= 0:
            raise PydanticCustomError("related", "must be positive when train.bce_weight is 0 (the loss needs a term)",
                                      {"key": "dice_weight", "value": self.dice_weight})
        return self


class EvalConfig(BaseModel):
    """``eval``: the evaluation after training (and the validation Dice's threshold)."""

    model_config = _STRICT
    threshold: float = option(0.5, "probability threshold of a mask (validation Dice and evaluation)",
                              flag="--threshold", gt=0, lt=1)
    splits: list[str] = option(default_factory=lambda: ["test"], help="the splits of data.paths evaluated after "
                                                                       "training")
    batch_size: int = option(4, "images per evaluation batch", flag="--batch-size", resumable=True, ge=1)
    tta: bool = option(False, "test-time augmentation: average the probabilities of the image and its horizontal, "
                              "vertical and double flips", flag="--tta",
                       card=Card("test-time augmentation", {True: "flips (horizontal, vertical, both), probabilities "
                                                                  "averaged", False: "none"}))
    postprocess: bool = option(True, "choose a post-processing on the validation split after training (keep the "
                                     "largest component, or drop small components, when that raises validation "
                                     "Dice) and apply the run's choice", flag="--postprocess")
    boundary_metrics: bool = option(False, "also score HD95 and NSD per image (MONAI's implementations; slower)",
                                    flag="--boundary")
    nsd_tolerance: float = option(2.0, "NSD's tolerance: pixels, or mm where the image file gives a pixel spacing",
                                  flag="--nsd-tolerance", ge=0)


class ExperimentConfig(BaseModel):
    """One experiment: what ``config.yaml`` holds (``to_dict()``), what ``vlsm train`` runs."""

    model_config = _STRICT
    name: Optional[str] = option(None, "the experiment's name", resumable=True)
    out: Optional[str] = option(None, "the run folder to create", flag=("--out", "-o"), resumable=True)
    model: ModelField = option(default_factory=lambda: ModelSpec(name=DEFAULT_MODEL),
                               help="the model: name, preset, variant, pretrained and overrides")
    data: DataConfig = option(default_factory=DataConfig, help="the datasets")
    train: TrainConfig = option(default_factory=TrainConfig, help="training")
    eval: EvalConfig = option(default_factory=EvalConfig, help="evaluation")
    search: SearchConfig = option(default_factory=SearchConfig, help="the search of `vlsm tune` (never in config.yaml)",
                                  exclude=True)
    sweep: SweepConfig = option(default_factory=SweepConfig, help="the runs `vlsm sweep` makes of this experiment "
                                                                "(never in config.yaml)", exclude=True)
    #: the experiment file this was read from (messages name it), not a setting
    _source: Optional[str] = PrivateAttr(default=None)

    def to_dict(self) -> dict:
        return self.model_dump()

    def __eq__(self, other: Any) -> bool:  # two experiments are equal when their settings are
        return isinstance(other, ExperimentConfig) and self.to_dict() == other.to_dict()

    __hash__ = None

    @property
    def source(self) -> Optional[str]:
        return self._source


#: the sections of an experiment, by name
SECTIONS = {"model": ModelSection, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig,
            "search": SearchConfig, "sweep": SweepConfig}


def all_options() -> dict[str, Option]:
    """Every option of the schema by dotted key, in ``config.yaml``'s order (``name``, ``out``, ``model.name``,
    ..., ``eval.batch_size``)."""
    found = {key: Option(key, f) for key, f in ExperimentConfig.model_fields.items() if key not in SECTIONS}
    for section, cls in SECTIONS.items():
        found.update({f"{section}.{key}": Option(f"{section}.{key}", f) for key, f in cls.model_fields.items()})
    return found


def get_option(key: str) -> Option:
    """The option of a dotted key; an unknown key is a ``KeyError`` listing the valid ones."""
    options = all_options()
    if key not in options:
        raise KeyError(f"no option {key!r} in the experiment schema; options: {', '.join(options)}")
    return options[key]

__all__ = ["DEFAULT_MODEL", "DataConfig", "EvalConfig", "ExperimentConfig", "LOGGER_NAMES", "ModelSection",
           "SECTIONS", "SearchConfig", "SweepConfig", "TrainConfig", "all_options", "get_option", "parse_batches", "parse_count_or_fraction",
           "parse_gpus"]
