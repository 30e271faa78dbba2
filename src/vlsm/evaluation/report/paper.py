"""What the paper fixes: its model order, which VLSM each ensemble's gain is measured against, the
datasets' names and column order, and the metrics a table reports."""
from __future__ import annotations

import re
from typing import Optional

#: Row order of the paper's tables.
PAPER_MODEL_ORDER = ("UNet-D", "CLIPSeg", "BiomedCLIPSeg", "CRIS", "BiomedCLIPSeg-A", "CLIPSeg-B",
                     "Ensemble-C")

#: Which VLSM(s) each ensemble's gain is measured against (the better one when there are two).
ENSEMBLE_REFERENCES = {
    "BiomedCLIPSeg-A": ("BiomedCLIPSeg",),
    "CLIPSeg-B": ("CLIPSeg",),
    "Ensemble-C": ("BiomedCLIPSeg", "CLIPSeg"),
}

#: Dataset folder names of the medvlsm testbench -> names used in the papers, in column order.
DATASET_NAMES = {
    "kvasir_polyp": "Kvasir-SEG",
    "clinicdb_polyp": "ClinicDB",
    "bkai_polyp": "BKAI",
    "busi": "BUSI",
    "chexlocalize": "CheXlocalize",
    "colondb_polyp": "ColonDB",
    "etis_polyp": "ETIS",
    "cvc300_polyp": "CVC-300",
    "isic": "ISIC",
    "dfu": "DFU",
    "camus": "CAMUS",
}

METRICS = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "nsd": "NSD"}
#: metrics where lower is better: the best of a column is its lowest, an ensemble is compared with its lower VLSM
LOWER_IS_BETTER = frozenset({"hd95"})
#: what ``--metric`` may ask for: one metric, ``both`` (Dice and IoU) or ``all`` (the four)
METRIC_CHOICES = {"dice": ("dice",), "iou": ("iou",), "hd95": ("hd95",), "nsd": ("nsd",), "both": ("dice", "iou"),
                  "all": ("dice", "iou", "hd95", "nsd")}
SPLIT_ORDER = ("test", "val", "train")


def metric_scale(metric: str) -> float:
    """What a table multiplies a score by: 100 (percent) for the overlap metrics and NSD, 1 for HD95 (a distance)."""
    return 1.0 if metric == "hd95" else 100.0


def better(metric: str, a: float, b: float) -> bool:
    """Whether score ``a`` is better than ``b`` for ``metric``."""
    return a < b if metric in LOWER_IS_BETTER else a > b


def norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


PAPER_BY_NORM = {norm(n): n for n in PAPER_MODEL_ORDER}


def paper_model(label: str, name: str = "") -> Optional[str]:
    """The paper's model name for a row (matched on label, then registry name), else ``None``."""
    for candidate in (label, name):
        if candidate and norm(candidate) in PAPER_BY_NORM:
            return PAPER_BY_NORM[norm(candidate)]
    return None


def dataset_title(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def column_title(dataset: str, split: str) -> str:
    """A table column's dataset heading: the paper's name, with the split unless it is ``test``."""
    title = dataset_title(dataset)
    return title if split == "test" else f"{title} ({split})"


__all__ = ["DATASET_NAMES", "ENSEMBLE_REFERENCES", "LOWER_IS_BETTER", "METRICS", "METRIC_CHOICES", "PAPER_MODEL_ORDER",
           "SPLIT_ORDER", "better", "column_title", "dataset_title", "metric_scale", "norm", "paper_model"]
