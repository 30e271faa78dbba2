"""The data check's vocabulary: an :class:`Issue` is one problem of one file, of a kind that says how to fix it.

Listing a dataset (:mod:`vlsm.data.listing`) and decoding its files (:mod:`vlsm.data.check`) both report
issues; the kinds in :data:`ERROR_KINDS` make a case unusable, the others are warnings.
"""
from __future__ import annotations

from typing import NamedTuple

FIXES = {
    "missing-image": "add the image, or remove the case from the split file",
    "missing-mask": "add the mask (same name as the image; for plain folders optionally with '_mask'), "
                    "or remove the case",
    "unreadable-image": "re-copy or re-export the file (it may be truncated by an interrupted copy), "
                        "or remove the case",
    "unreadable-mask": "re-copy or re-export the mask as PNG with 0 = background and 255 = foreground, "
                       "or remove the case",
    "size-mismatch": "the mask probably belongs to another image or was resized: pair the right files, "
                     "or resize the mask with nearest-neighbour interpolation",
    "grey-mask": "save masks as binary images (0 = background, 255 = foreground); threshold soft or "
                 "probability masks yourself first",
    "dark-mask": "re-export the mask with 255 for foreground (for label masks, decide which classes are "
                 "foreground)",
    "layout": "fix the file (see the message), or re-create the dataset with `vlsm data convert`",
    "near-binary": "nothing to do: these values are thresholded at > 127 (store masks as PNG to avoid it)",
    "colour-mask": "nothing to do if any coloured pixel is foreground; otherwise convert the mask to 0/255",
    "overlap": "results on these splits include the shared cases; remove them from one split for a clean "
               "split, or train with --drop-overlap (keep them to reproduce published numbers)",
    "duplicate": "the case is counted twice; remove the repeated entry unless you reproduce published numbers",
    "patient-overlap": "move all of a patient's images into one split (`vlsm data convert` without --anns keeps "
                       "patients together), or keep them to reproduce published numbers",
}

KIND_TITLES = {
    "missing-image": "missing images", "missing-mask": "missing masks",
    "unreadable-image": "unreadable or truncated images", "unreadable-mask": "unreadable or truncated masks",
    "size-mismatch": "image/mask size mismatch", "grey-mask": "masks that are not binary",
    "dark-mask": "masks with no value above 127", "layout": "layout problems",
    "near-binary": "masks with values other than exactly 0/255 (compression noise, anti-aliased edges)",
    "colour-mask": "colour masks", "overlap": "cases in two splits", "duplicate": "cases listed twice in a split",
    "patient-overlap": "patients in two splits",
}

# the kinds that make a case unusable (the rest are warnings)
ERROR_KINDS = frozenset({"missing-image", "missing-mask", "unreadable-image", "unreadable-mask", "size-mismatch",
                         "grey-mask", "dark-mask", "layout"})


class Issue(NamedTuple):
    """One problem: the file, what is wrong, how to fix it, and its kind (a key of ``FIXES``)."""

    file: str
    problem: str
    fix: str
    kind: str = ""


def issue(kind: str, file, problem: str) -> Issue:
    return Issue(str(file), problem, FIXES[kind], kind)


__all__ = ["Issue", "issue", "FIXES", "KIND_TITLES", "ERROR_KINDS"]
