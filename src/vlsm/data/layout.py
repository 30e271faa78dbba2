"""The two dataset folder layouts, detected automatically, and reading one split of either."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from vlsm.data.folder import is_folder_root, read_folder_split
from vlsm.data.medvlsm import is_medvlsm_root, read_medvlsm_split
from vlsm.data.records import Record

LAYOUT_HELP = (
    "A dataset folder must have one of two layouts:\n"
    "  medvlsm layout: ROOT/images/, ROOT/masks/ and ROOT/anns/{train,val,test}.json\n"
    "                  (`vlsm data convert DATASET RAW_DIR OUT_DIR` writes it from an original download)\n"
    "  plain folder:   ROOT/images/<name>.<ext> and ROOT/masks/<name>[_mask].<ext>, optionally\n"
    "                  ROOT/splits.json {\"train\": [names], \"val\": [...], \"test\": [...]};\n"
    "                  without it the cases are split ~80/10/10 by a hash of each name (stable\n"
    "                  when images are added)")


def detect_layout(path) -> str:
    """``"medvlsm"`` or ``"folder"``; raises ``FileNotFoundError`` describing both layouts otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"dataset folder {path} does not exist.\n{LAYOUT_HELP}")
    if is_medvlsm_root(path):
        return "medvlsm"
    if is_folder_root(path):
        return "folder"
    raise FileNotFoundError(f"{path} is not a dataset folder (no anns/, or no images/ and masks/).\n{LAYOUT_HELP}")


def load_split(path, split: str, *, class_name: Optional[str] = None, seed: int = 0,
               require_masks: bool = True) -> list[Record]:
    """Records of ``split`` of the dataset at ``path``, layout detected automatically.

    ``class_name`` (plain folders only) is the prompt ``p1``; ``seed`` enters the stable ~80/10/10 hash split of
    plain folders without a split file. ``Record.dataset`` is the dataset folder's name. Cases listed in
    two splits are read as listed; :func:`vlsm.data.loading.read_dataset` and the data check report them.
    """
    layout = detect_layout(path)
    if layout == "medvlsm":
        return read_medvlsm_split(path, split)
    return read_folder_split(path, split, class_name=class_name, seed=seed, require_masks=require_masks)


__all__ = ["LAYOUT_HELP", "detect_layout", "load_split"]
