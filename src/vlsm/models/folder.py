"""The one model-folder format: what ``SegmentationModel.save_pretrained`` writes and ``vlsm.load_pretrained``
reads, for every model kind (UNet-D, CLIPSeg, BiomedCLIPSeg and -D, CRIS, the ensembles, Stack, the baselines)::

    vlsm_config.json        the folder's one config file (below)
    model.safetensors       the weights: all of them, or all but the sourced frozen ones (a slim folder)
    tokenizer/              the tokenizer files of a model that reads text (vlsm_tokenizer.json, vocab.txt)
    tokenizer/<vlsm>/       an ensemble's or Stack's: one folder per VLSM inside it (``model.vlsms()``)
    README.md               the model card, when training wrote the folder

``vlsm_config.json``::

    {"format": "vlsm-model/2",
     "spec": {...},          # ModelSpec without its weight sources: name, preset, variant, options
     "architecture": {...},  # the model kind's resolved config (UNetDConfig, VLSMConfig, CRISConfig, the smp
                             # arguments, an ensemble's config); a composite's VLSMs (and Stack's CNN) nested
                             # in it: "parts": {"clipseg": {"model": "clipseg", "architecture": {...}}}
     "preprocess": {...},    # Preprocess: image size, mean/std, resize filter, tokenizer kind, context length
     "frozen": {...}}        # slim folders only: where the frozen tensors come from (vlsm.models.frozen)

The tokenizer files sit in ``tokenizer/`` so that ``vlsm_config.json`` is the only config file at the top.
The spec file is written last (atomically): a folder holding it is complete. Saved over a folder of an earlier
version, the earlier folder's config and tokenizer files are removed once the new spec is in place.

Rebuilding goes through one path: :func:`read_model_folder` gives a :class:`SavedModel`, which
``create_model``/``load_pretrained`` hand to the model's builder. A builder takes ``saved.architecture`` as
the base its options apply to, in place of the preset (and of a weight source's config), the architecture of
each part from ``saved.part(name)``, and the tokenizer files from ``saved.tokenizer_dir``.
Folders written before this format (no ``format`` key) are read into the same :class:`SavedModel` by
:mod:`vlsm.models.legacy_folders`. A folder without ``vlsm_config.json`` (a run's ``tokenizer/`` folder, a
folder with a ``vocab.txt``) gives its tokenizer files only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Optional

from torch import nn

from vlsm.models import legacy_folders

# (vlsm.models.base re-exports the two file names: the contract's SPEC_FILE and WEIGHTS_FILE)
SPEC_FILE = "vlsm_config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
#: ``vlsm_config.json``'s ``format``
FOLDER_FORMAT = "vlsm-model/2"


@dataclass(frozen=True)
class SavedModel:
    """What a model folder says about one model (or one part of an ensemble).

    Attributes:
        path: the folder.
        model: the registered name ``architecture`` belongs to (``None``: a folder of tokenizer files only).
        architecture: the resolved architecture (the builder's base), ``None`` when the folder has none (UNet-D,
            baselines and ensembles of folders written before the format: rebuilt from the spec as then).
        parts: the saved parts of a composite, by name (:meth:`part`).
        tokenizer_dir: the folder holding this model's tokenizer files, or ``None``.
        spec, preprocess, frozen: the top level of ``vlsm_config.json`` (dicts; ``frozen`` only when slim).
        format: ``FOLDER_FORMAT``, or ``None`` for a folder of an earlier version.
    """

    path: Path
    model: Optional[str] = None
    architecture: Optional[dict] = None
    parts: Mapping[str, "SavedModel"] = field(default_factory=dict)
    tokenizer_dir: Optional[Path] = None
    spec: Optional[dict] = None
    preprocess: Optional[dict] = None
    frozen: Optional[dict] = None
    format: Optional[str] = None

    def part(self, name: str) -> Optional["SavedModel"]:
        """The saved part ``name`` (an ensemble's ``"clipseg"``, Stack's ``"vlsm"``/``"cnn"``), if any."""
        return self.parts.get(name)

    def for_model(self, name: str, pretrained: Optional[str] = None) -> "SavedModel":
        """What a build of model ``name`` takes from this folder: everything when the architecture is that
        model's and no weight source brings its own, else the tokenizer files only."""
        if self.model == name and pretrained is None:
            return self
        return SavedModel(self.path, tokenizer_dir=self.tokenizer_dir)


def read_model_folder(directory: str | Path) -> SavedModel:
    """The :class:`SavedModel` of a folder: one written by ``save_pretrained`` (this format or an earlier one),
    or a folder of tokenizer files."""
    directory = Path(directory)
    spec_path = directory / SPEC_FILE
    if not spec_path.is_file():
        return SavedModel(directory, tokenizer_dir=directory if directory.is_dir() else None)
    try:
        payload = json.loads(spec_path.read_text())
    except ValueError as err:
        raise ValueError(f"{spec_path} is not valid JSON ({err}); restore the model folder from a copy") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("spec"), dict):
        raise ValueError(f"{spec_path} has no 'spec' section: it is not a vlsm model folder's config file")
    found = payload.get("format")
    if found is None:
        return _legacy_folder(directory, payload)
    if found != FOLDER_FORMAT:
        raise ValueError(f"{spec_path} is of format {found!r}, which this vlsm version does not read (it reads "
                         f"{FOLDER_FORMAT!r} and older folders): load it with the vlsm version that wrote it")
    top = _from_record(directory, payload["spec"].get("name"), payload.get("architecture"),
                       directory / TOKENIZER_DIR)
    return replace(top, spec=payload["spec"], preprocess=payload.get("preprocess"), frozen=payload.get("frozen"),
                   format=found)


def _legacy_folder(directory: Path, payload: dict) -> SavedModel:
    """An earlier version's folder (:mod:`vlsm.models.legacy_folders`): architecture files beside the spec,
    tokenizer files in the folder itself, an ensemble's VLSMs in subfolders."""
    architecture = legacy_folders.legacy_architecture(directory)
    parts = {name: SavedModel(directory / name, model=config.get("model"), architecture=config,
                              tokenizer_dir=directory / name)
             for name, config in legacy_folders.legacy_parts(directory).items()}
    model = payload["spec"].get("name")
    if architecture is not None:
        model = architecture.get("model", model)
    return SavedModel(directory, model=model, architecture=architecture, parts=parts, tokenizer_dir=directory,
                      spec=payload["spec"], preprocess=payload.get("preprocess"), frozen=payload.get("frozen"))


def _is_legacy_folder(directory: Path) -> bool:
    """Whether ``directory`` holds a ``vlsm_config.json`` of an earlier version (no ``format`` key)."""
    try:
        payload = json.loads((directory / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(payload, dict) and "spec" in payload and "format" not in payload


def _from_record(path: Path, model: Optional[str], architecture: Optional[dict], tokenizers: Path) -> SavedModel:
    arch = dict(architecture) if isinstance(architecture, Mapping) else None
    records = arch.pop("parts", {}) if arch is not None else {}
    parts = {name: _from_record(path, rec.get("model"), rec.get("architecture"), tokenizers / name)
             for name, rec in records.items()}
    return SavedModel(path, model=model, architecture=arch, parts=parts,
                      tokenizer_dir=tokenizers if tokenizers.is_dir() else None)


def read_folder_weights(directory: str | Path) -> dict:
    """The state dict in a model folder's ``model.safetensors``, exactly as written (no prefix is stripped: the
    folder's names are the model's own, even when all of them share one, as ``net.`` in the smp baselines)."""
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the model folder is incomplete; restore it from a copy")
    return load_file(str(path))


def part_record(model: nn.Module, architecture: Optional[dict] = None) -> dict:
    """A part's entry in its composite's ``architecture["parts"]``: its registered name and architecture."""
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError(f"{type(model).__name__} inside the model was not built with vlsm.create_model: a model "
                         f"folder cannot name it; build it with create_model(name, ...)")
    return {"model": spec.name, "architecture": model.architecture() if architecture is None else architecture}


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------
def write_model_folder(model, directory: str | Path, *, standalone: bool = False) -> Path:
    """Write ``model``'s folder (see the module docstring); ``standalone`` keeps every weight (no ``frozen``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    legacy = _is_legacy_folder(directory)
    payload = {"format": FOLDER_FORMAT, "spec": model.spec.without_weights().to_dict(),
               "architecture": model.architecture(), "preprocess": model.preprocess.to_dict()}
    json.dumps(payload)  # not JSON-able: fail before anything is written
    frozen = write_weights(model, directory, standalone=standalone)
    if frozen is not None:
        payload["frozen"] = frozen
    write_tokenizers(model, directory / TOKENIZER_DIR)
    tmp = directory / (SPEC_FILE + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(directory / SPEC_FILE)  # the spec appears last: a folder with it is complete
    if legacy:  # saved over a folder of an earlier version: its own config files go
        legacy_folders.remove_legacy_files(directory)
    return directory


def write_tokenizers(model, folder: Path) -> None:
    """The tokenizer files of ``model`` into ``folder`` (of each of its VLSMs into ``folder/<name>``), for those
    tokenizers that have files to write and are available."""
    vlsms = model.vlsms()
    targets = {folder / name: sub for name, sub in vlsms.items()} if vlsms else {folder: model}
    for target, sub in targets.items():
        tok = _tokenizer_or_none(sub)
        if hasattr(tok, "save"):
            tok.save(target)


def _tokenizer_or_none(model):
    from vlsm.text.tokenizers import TokenizerNotAvailableError

    try:
        return model.get_tokenizer()
    except TokenizerNotAvailableError:
        return None  # e.g. BiomedCLIPSeg built without its weights folder: nothing to write


def write_weights(model: nn.Module, directory: Path, *, standalone: bool = False) -> Optional[dict]:
    """``directory/model.safetensors`` of a model folder: every tensor (``standalone``, or a model without
    sourced frozen tensors; returns None) or all but the sourced frozen ones (returns the
    :class:`~vlsm.models.frozen.FrozenSource` record for the folder's spec file)."""
    from safetensors.torch import save_file, save_model

    from vlsm.models.frozen import frozen_keys, frozen_source, slim_state_dict

    record = None if standalone else frozen_source(model)
    if record is None:
        save_model(model, str(directory / WEIGHTS_FILE))
        return None
    slim = slim_state_dict(model.state_dict(), frozen_keys(model))
    save_file({k: v.detach().contiguous().clone() for k, v in slim.items()}, str(directory / WEIGHTS_FILE))
    return record.to_dict()


__all__ = ["FOLDER_FORMAT", "SPEC_FILE", "TOKENIZER_DIR", "WEIGHTS_FILE", "SavedModel", "part_record", "read_folder_weights", "read_model_folder",
           "write_model_folder",
           "write_tokenizers", "write_weights"]
