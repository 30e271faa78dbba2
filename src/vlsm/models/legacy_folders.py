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
from typing import Optional

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


def legacy_architecture(directory: Path) -> Optional[dict]:
    """The architecture file of an earlier folder (a VLSM's or CRIS's config), or ``None`` (UNet-D, the
    baselines and the ensembles had none: they were rebuilt from the spec)."""
    for name in (VLSM_CONFIG_FILE, CRIS_CONFIG_FILE):
        if (directory / name).is_file():
            return _read_json(directory / name)
    return None


def legacy_parts(directory: Path) -> dict:
    """Subfolder name -> the VLSM config saved there (an ensemble's ``biomedclipseg/``, ``clipseg/``, Stack's
    ``vlsm/``); each subfolder also holds that VLSM's tokenizer files."""
    return {sub.name: _read_json(sub / VLSM_CONFIG_FILE) for sub in sorted(directory.iterdir())
            if sub.is_dir() and (sub / VLSM_CONFIG_FILE).is_file()}


def remove_legacy_files(directory: Path) -> None:
    """The files an earlier version's ``save_pretrained`` wrote beside ``vlsm_config.json`` (architecture files,
    tokenizer files, the VLSM subfolders' files); a subfolder is removed when that empties it. Only for a folder
    whose ``vlsm_config.json`` was of an earlier version (the caller checks it)."""
    from vlsm.text.tokenizers import TOKENIZER_FILE

    for folder in [directory] + [directory / name for name in legacy_parts(directory)]:
        names = [VLSM_CONFIG_FILE, CRIS_CONFIG_FILE]
        if (folder / TOKENIZER_FILE).is_file():
            vocab = _read_json(folder / TOKENIZER_FILE).get("vocab")
            names += [TOKENIZER_FILE] + ([Path(vocab).name] if isinstance(vocab, str) else [])
        for name in names:
            (folder / name).unlink(missing_ok=True)
        if folder != directory and not any(folder.iterdir()):
            folder.rmdir()


__all__ = ["CRIS_CONFIG_FILE", "VLSM_CONFIG_FILE", "legacy_architecture", "legacy_parts", "remove_legacy_files"]
