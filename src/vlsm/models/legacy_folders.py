"""Model folders written before the one folder format (vlsm up to f4f8edf), read into a
:class:`~vlsm.models.folder.SavedModel` so that they load through the same path as new ones.

Their shapes (``vlsm_config.json`` without ``format``, holding ``spec``, ``preprocess`` and, for ensembles,
an ``ensemble`` section that was never read back)::

    UNet-D, smp baselines   vlsm_config.json, model.safetensors: rebuilt from the spec (no architecture file)
    CLIPSeg, BiomedCLIPSeg  + vlsm_model_config.json (the VLSMConfig), vlsm_tokenizer.json [+ vocab.txt]
    CRIS                    + vlsm_cris_config.json (the CRISConfig), vlsm_tokenizer.json
    A, B, C, Stack          + one subfolder per VLSM (biomedclipseg/, clipseg/, Stack's vlsm/) holding its
                              vlsm_model_config.json and tokenizer files; the rest rebuilt from the spec

Nothing writes these shapes any more (tests/fixtures/model_folders keeps examples). When a new folder is saved
over an earlier one (a finished run of an earlier version resumed), :func:`remove_legacy_files` then removes the
earlier folder's own config and tokenizer files, so that ``vlsm_config.json`` stays the only config file.
"""
from __future__ import annotations

import json
from pathlib import Path

from vlsm.models.folder import SavedModel

#: the architecture files of the earlier folders
VLSM_CONFIG_FILE = "vlsm_model_config.json"
CRIS_CONFIG_FILE = "vlsm_cris_config.json"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore the model folder from a copy") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a config mapping; restore the model folder from a copy")
    return data


def read_legacy_folder(directory: Path, payload: dict) -> SavedModel:
    """The :class:`SavedModel` of an earlier folder whose ``vlsm_config.json`` holds ``payload``."""
    spec = payload["spec"]
    architecture = None
    for name in (VLSM_CONFIG_FILE, CRIS_CONFIG_FILE):
        if (directory / name).is_file():
            architecture = _read_json(directory / name)
    parts = {}
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        if (sub / VLSM_CONFIG_FILE).is_file():
            config = _read_json(sub / VLSM_CONFIG_FILE)
            parts[sub.name] = SavedModel(sub, model=config.get("model"), architecture=config, tokenizer_dir=sub)
    model = spec.get("name")
    if architecture is not None:
        model = architecture.get("model", model)
    return SavedModel(directory, model=model, architecture=architecture, parts=parts, tokenizer_dir=directory,
                      spec=spec, preprocess=payload.get("preprocess"), frozen=payload.get("frozen"))


def is_legacy_folder(directory: Path) -> bool:
    """Whether ``directory`` holds a ``vlsm_config.json`` of an earlier version (no ``format`` key)."""
    from vlsm.models.base import SPEC_FILE

    try:
        payload = json.loads((directory / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(payload, dict) and "spec" in payload and "format" not in payload


def remove_legacy_files(directory: Path) -> None:
    """The files an earlier version's ``save_pretrained`` wrote beside ``vlsm_config.json`` (architecture files,
    tokenizer files, the VLSM subfolders' files); a subfolder is removed when that empties it. Only for a folder
    that :func:`is_legacy_folder` said was written by an earlier version (the caller checks it first)."""
    from vlsm.text.tokenizers import TOKENIZER_FILE

    folders = [directory] + [sub for sub in sorted(directory.iterdir())
                             if sub.is_dir() and (sub / VLSM_CONFIG_FILE).is_file()]
    for folder in folders:
        names = [VLSM_CONFIG_FILE, CRIS_CONFIG_FILE]
        if (folder / TOKENIZER_FILE).is_file():
            vocab = _read_json(folder / TOKENIZER_FILE).get("vocab")
            names += [TOKENIZER_FILE] + ([Path(vocab).name] if isinstance(vocab, str) else [])
        for name in names:
            (folder / name).unlink(missing_ok=True)
        if folder != directory and not any(folder.iterdir()):
            folder.rmdir()


__all__ = ["CRIS_CONFIG_FILE", "VLSM_CONFIG_FILE", "is_legacy_folder", "read_legacy_folder", "remove_legacy_files"]
