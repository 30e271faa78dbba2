"""A standalone copy of a trained model: a model folder with every weight, which loads without the weight
sources that a slim run's frozen tensors come from (``vlsm export RUN --standalone OUT``).

The folder is what ``save_pretrained(dir, standalone=True)`` writes (spec, ``model.safetensors`` with every
tensor, tokenizer files) plus the run's model card, and a marker naming it an export (the only kind of
existing folder ``--overwrite`` replaces). It is written into a temporary folder beside ``OUT`` and renamed
into place, so a failure leaves nothing behind.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

from vlsm.errors import UserError
from vlsm.models import SegmentationModel
from vlsm.models.base import SPEC_FILE
from vlsm.utils import make_temp_dir

#: marks a folder written by ``vlsm export --standalone``
MARKER_FILE = ".vlsm-export"
STANDALONE_FORMAT = "vlsm-standalone/1"


def is_standalone_export(path: Path) -> bool:
    try:
        return json.loads((Path(path) / MARKER_FILE).read_text()).get("format") == STANDALONE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_standalone_destination(out: Path, overwrite: bool) -> None:
    """Refuse an existing OUT unless ``overwrite`` and it is an earlier standalone export."""
    out = Path(out)
    if not out.exists():
        return
    if not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace an earlier export, or choose another OUT")
    if not out.is_dir() or not is_standalone_export(out):
        raise UserError(f"{out} exists and is not a folder written by `vlsm export --standalone` (no {MARKER_FILE} "
                        f"of format {STANDALONE_FORMAT}); --overwrite replaces only earlier exports. Choose another OUT")


def export_standalone(model: SegmentationModel, out, *, overwrite: bool = False, summary: Optional[dict] = None,
                      config: Optional[dict] = None) -> Path:
    """Write ``model`` with every weight to the folder ``out`` (with the run's model card when ``summary`` is
    given); ``vlsm.load_pretrained(out)`` then needs no weight source."""
    out = Path(out)
    check_standalone_destination(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, prefix=f".{out.name}.")
    try:
        model.cpu().save_pretrained(tmp, standalone=True)
        if json.loads((tmp / SPEC_FILE).read_text()).get("frozen") is not None:  # (a model class that ignores it)
            raise UserError(f"{type(model).__name__} wrote a slim folder although a standalone one was asked for; "
                            f"nothing was exported")
        if summary is not None:
            from vlsm.model_card import write_model_card

            write_model_card(tmp, summary, config or {})
        (tmp / MARKER_FILE).write_text(json.dumps({"format": STANDALONE_FORMAT, "model": model.spec.name}) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


__all__ = ["export_standalone", "check_standalone_destination", "is_standalone_export", "MARKER_FILE",
           "STANDALONE_FORMAT"]
