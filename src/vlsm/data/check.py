"""``check_dataset``: find every problem of a dataset folder before training or evaluating on it.

Errors (the case cannot be used as it is):

* ``missing-image`` / ``missing-mask``: a file named by a split file (or an image without a mask in
  a plain folder) does not exist;
* ``unreadable-image`` / ``unreadable-mask``: the file cannot be decoded completely (truncated,
  corrupt, not an image);
* ``size-mismatch``: image and mask sizes differ;
* ``grey-mask``: more than :data:`MAX_GREY_FRACTION` of a mask's pixels have intensities between
  :data:`GREY_LOW` and :data:`GREY_HIGH` (exclusive), i.e. far from both 0 and 255 — a soft,
  probability or photographic mask whose binarisation at 127 is a guess;
* ``dark-mask``: a mask with values above 1 but none above 127, which binarises to empty
  (a class-label mask 0..K, or a mask scaled wrongly);
* ``layout``: a split file or folder structure that cannot be read.

Warnings (the case is used; worth knowing):

* ``near-binary``: values other than exactly 0/255 (or 0/1) on at most
  :data:`MAX_GREY_FRACTION` grey pixels — JPEG compression noise (Kvasir-SEG: 0-8 and 247-255)
  or anti-aliased edges (CVC-ClinicDB). The binarisation rule (:mod:`vlsm.data.masks`)
  thresholds them at > 127;
* ``colour-mask``: an RGB mask whose channels differ (e.g. BKAI-IGH's red/green labels):
  binarised as "any channel > 127";
* ``overlap`` / ``duplicate``: a case in two split files, or twice in one.

Masks with no foreground are counted per split (BUSI's "normal" images have empty masks by design).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Optional

import numpy as np
from PIL import Image

from vlsm.data._util import preview
from vlsm.data.images import ImageReadError, load_image
from vlsm.data.leakage import Leakage, split_overlaps
from vlsm.data.masks import read_mask_intensity, threshold_intensity

GREY_LOW = 32
GREY_HIGH = 223
MAX_GREY_FRACTION = 0.01

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
}

KIND_TITLES = {
    "missing-image": "missing images", "missing-mask": "missing masks",
    "unreadable-image": "unreadable or truncated images", "unreadable-mask": "unreadable or truncated masks",
    "size-mismatch": "image/mask size mismatch", "grey-mask": "masks that are not binary",
    "dark-mask": "masks with no value above 127", "layout": "layout problems",
    "near-binary": "masks with values other than exactly 0/255 (compression noise, anti-aliased edges)",
    "colour-mask": "colour masks", "overlap": "cases in two splits", "duplicate": "cases listed twice in a split",
}


class Issue(NamedTuple):
    """One problem: the file, what is wrong, how to fix it, and its kind (a key of ``FIXES``)."""

    file: str
    problem: str
    fix: str
    kind: str = ""


def _issue(kind: str, file, problem: str) -> Issue:
    return Issue(str(file), problem, FIXES[kind], kind)


@dataclass
class CheckReport:
    """What :func:`check_dataset` found. ``ok`` is True when there are no errors."""

    root: Path
    layout: str = ""
    errors: list = field(default_factory=list)       # [Issue]
    warnings: list = field(default_factory=list)     # [Issue]
    counts: dict = field(default_factory=dict)       # split -> {"cases": n, "empty_masks": k, "errors": e}
    empty_masks: dict = field(default_factory=dict)  # split -> [record names with empty masks]
    notes: list = field(default_factory=list)        # [str] information that is not a problem
    leakage: Optional[Leakage] = None                # images in two splits (by name)
    strict: bool = False                             # leakage counts as an error
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def bad_files(self) -> set:
        """Resolved paths of the files with errors (to leave those cases out)."""
        return {Path(i.file).resolve() for i in self.errors if i.kind != "layout"}

    def _rel(self, file: str) -> str:
        try:
            return str(Path(file).relative_to(self.root))
        except ValueError:
            return file

    def _section(self, title: str, issues: list, per_kind: int) -> list[str]:
        lines = [f"{title} ({len(issues)}):"]
        kinds: dict[str, list] = {}
        for i in issues:
            kinds.setdefault(i.kind, []).append(i)
        for kind, group in kinds.items():
            lines.append(f"  {KIND_TITLES.get(kind, kind)}: {len(group)}")
            for i in group[:per_kind]:
                lines.append(f"    {self._rel(i.file)}: {i.problem}")
            if len(group) > per_kind:
                lines.append(f"    ... and {len(group) - per_kind} more")
            lines.append(f"    fix: {group[0].fix}")
        return lines

    def format(self, per_kind: int = 8) -> str:
        """A table for the screen: counts per split, then errors and warnings grouped by kind."""
        lines = [f"dataset {self.root} ({self.layout or 'unknown'} layout), checked in {self.seconds:.1f} s"]
        if self.counts:
            w = max(5, *(len(s) for s in self.counts))
            lines.append(f"  {'split':<{w}}  {'cases':>6}  {'empty masks':>11}  {'errors':>6}")
            for split, c in self.counts.items():
                lines.append(f"  {split:<{w}}  {c['cases']:>6}  {c['empty_masks']:>11}  {c['errors']:>6}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.leakage:
            lines.append(f"{'LEAKAGE' if self.strict else 'leakage'}: images listed in two splits "
                         f"({len(self.leakage.names())}):")
            for (a, b), names in self.leakage.pairs.items():
                lines.append(f"  {a} & {b} ({len(names)}): {', '.join(names)}")
            lines.append(f"    fix: {FIXES['overlap']}")
        if self.errors:
            lines += self._section("ERRORS", self.errors, per_kind)
        # the leakage block above names every overlap; the per-file list would repeat it
        warnings = [i for i in self.warnings if not (self.leakage and i.kind == "overlap")]
        if warnings:
            lines += self._section("warnings", warnings, min(per_kind, 3))
        n_bad = len({i.file for i in self.errors})
        if not self.ok:
            lines.append(f"FAILED: {len(self.errors)} error(s) in {n_bad} file(s)")
        elif self.leakage:
            lines.append(f"OK: no errors, but {len(self.leakage.names())} image(s) are in two splits (listed above; "
                         f"--strict makes this an error)")
        else:
            lines.append("OK: no errors")
        return "\n".join(lines)


def _check_image(path: Path) -> tuple[Optional[Image.Image], list]:
    """(the decoded RGB image or None if unusable, issues)."""
    if not path.is_file():
        return None, [_issue("missing-image", path, "file not found")]
    try:
        return load_image(path), []
    except (ImageReadError, OSError) as err:
        return None, [_issue("unreadable-image", path, _short(err, path))]


def _short(err: BaseException, path: Path) -> str:
    """The reader's complaint without the file name (the report shows it) and without the advice."""
    text = str(err)
    for what in ("image", "mask"):
        text = text.replace(f"cannot read {what} {path}: ", "")
    return "cannot be decoded: " + text.split(". The file")[0].split(". Re-export")[0]


def _check_mask(path: Path, image_size: Optional[tuple]) -> tuple[Optional[np.ndarray], list]:
    """(the boolean foreground or None if unusable, issues)."""
    if not path.is_file():
        return None, [_issue("missing-mask", path, "file not found")]
    try:
        intensity = read_mask_intensity(path)
    except (ImageReadError, OSError, ValueError) as err:
        return None, [_issue("unreadable-mask", path, _short(err, path))]
    v = intensity.values
    issues = []
    h, w = v.shape
    if image_size is not None and (w, h) != tuple(image_size):
        issues.append(_issue("size-mismatch", path,
                             f"mask is {w}x{h}, its image is {image_size[0]}x{image_size[1]}"))
    hist = np.bincount(v.ravel(), minlength=256)
    total = max(1, v.size)
    grey = int(hist[GREY_LOW + 1:GREY_HIGH].sum())
    present = np.nonzero(hist)[0]
    exact = set(present.tolist()) <= {0, 255} or set(present.tolist()) <= {0, 1}
    fg = threshold_intensity(v)
    empty = not fg.any()
    if grey / total > MAX_GREY_FRACTION:
        issues.append(_issue("grey-mask", path, f"{100 * grey / total:.1f}% of pixels are grey "
                                                f"(values {GREY_LOW + 1}-{GREY_HIGH - 1})"))
    elif empty and present.size and present.max() > 1:
        issues.append(_issue("dark-mask", path, f"values 0-{int(present.max())}, none above 127: "
                                                f"it binarises to an empty mask"))
    elif not exact:
        off = int(total - hist[0] - hist[255])
        issues.append(_issue("near-binary", path, f"{off} pixel(s) not exactly 0/255"))
    if intensity.source == "colour":
        issues.append(_issue("colour-mask", path, "RGB channels differ: foreground = any channel > 127"))
    if any(i.kind in ("grey-mask", "dark-mask", "size-mismatch") for i in issues):
        return None, issues
    return fg, issues


def _check_case(image: Path, mask: Optional[Path], decoded=None, dataset: str = ""):
    """(is_empty or None if unusable, issues) of one image/mask pair.

    With ``decoded`` (a :class:`~vlsm.data.decoded.DecodedCache`), a pair whose entry carries an
    earlier verdict is not decoded again, and a usable pair decoded here is resized and stored, so the
    check and the first epoch decode each file once between them.
    """
    key = decoded.key(image, mask) if decoded is not None else None
    if key is not None:
        header = decoded.read_header(key, dataset)
        if header is not None and isinstance(header.get("check"), dict):
            verdict = header["check"]
            files = {"image": image, "mask": mask}
            return verdict.get("empty"), [_issue(kind, files[which], problem)
                                          for kind, problem, which in verdict.get("issues", [])]
    pil, issues = _check_image(image)
    size = pil.size if pil is not None else None
    fg = empty = None
    if mask is not None:
        fg, more = _check_mask(mask, size)
        issues = issues + more
        empty = None if fg is None else not fg.any()
    usable = pil is not None and (mask is None or fg is not None)
    if key is not None and usable and not any(i.kind in _ERROR_KINDS for i in issues):
        from vlsm.data.decoded import DecodedCase

        which = {str(image): "image", str(mask): "mask"}
        verdict = {"empty": empty, "issues": [[i.kind, i.problem, which[i.file]] for i in issues]}
        small_image, small_mask = decoded.resize(pil, fg)  # at the cache's size, with its filter
        decoded.write(key, DecodedCase(small_image, small_mask, size[1], size[0], verdict), dataset,
                      files=(image, mask))
    return empty, issues


_ERROR_KINDS = {"missing-image", "missing-mask", "unreadable-image", "unreadable-mask", "size-mismatch",
                "grey-mask", "dark-mask", "layout"}


def _collect_records(root: Path, layout: str, splits: Optional[Iterable[str]], report: CheckReport,
                     class_name, seed) -> dict:
    """split -> records, adding layout errors and split overlap warnings to ``report``."""
    from vlsm.data.folder import folder_pairs, folder_record, folder_splits, read_split_file
    from vlsm.data.medvlsm import available_splits, check_split_overlaps, read_anns, read_medvlsm_split

    out = {}
    if layout == "medvlsm":
        anns = root / "anns"
        have = available_splits(anns)
        wanted = list(splits) if splits else have
        unknown = [s for s in wanted if s not in have]
        if unknown:
            raise FileNotFoundError(f"split(s) {', '.join(unknown)} not found in {anns}; available: "
                                    f"{', '.join(have) or 'none'}")
        entries = {}
        for s in have:
            try:
                entries[s] = read_anns(anns, s)
            except ValueError as err:
                report.errors.append(_issue("layout", anns / f"{s}.json", str(err)))
        for s in wanted:
            if s in entries:
                out[s] = read_medvlsm_split(root, s, check_files=False, warn_overlaps=False, all_entries=entries)
        overlaps = check_split_overlaps(anns, entries)
        for s, names in overlaps.duplicates.items():
            for n in names:
                report.warnings.append(_issue("duplicate", anns / f"{s}.json", f"{n} is listed more than once"))
        for (a, b), names in overlaps.overlaps.items():
            for n in names:
                report.warnings.append(_issue("overlap", root / "images" / n, f"in both {a} and {b}"))
        if not splits:
            listed = {e["img_name"] for es in entries.values() for e in es}
            img_dir = root / "images"
            if img_dir.is_dir():
                extra = sorted(p.name for p in img_dir.iterdir() if p.is_file() and p.name not in listed
                               and not p.name.startswith("."))
                if extra:
                    report.notes.append(f"{len(extra)} file(s) in images/ are in no split: {preview(extra, 3)}")
        return out
    # plain folder
    try:
        pairs = folder_pairs(root, require_masks=False)
    except ValueError as err:
        report.errors.append(_issue("layout", root, str(err)))
        return out
    by_stem = {s: (i, m) for s, i, m in pairs}
    for _stem, i, m in pairs:
        if m is None:
            report.errors.append(_issue("missing-mask", i, "this image has no mask in masks/"))
    split_lists = folder_splits(root, seed=seed, stems=list(by_stem))
    given = read_split_file(root) is not None
    wanted = list(splits) if splits else list(split_lists)
    unknown = [s for s in wanted if s not in split_lists]
    if unknown:
        raise FileNotFoundError(f"split(s) {', '.join(unknown)} not found for {root}; available: "
                                f"{', '.join(split_lists)}")
    seen: dict[str, str] = {}
    for s in split_lists:
        counts: dict[str, int] = {}
        for n in split_lists[s]:
            counts[n] = counts.get(n, 0) + 1
        for n, c in counts.items():
            if c > 1:
                report.warnings.append(_issue("duplicate", root, f"{n} is listed {c} times in {s}"))
            if n in seen and given:
                report.warnings.append(_issue("overlap", by_stem.get(n, (root / n, None))[0],
                                              f"in both {seen[n]} and {s}"))
            seen.setdefault(n, s)
    for s in wanted:
        recs = []
        for n in split_lists[s]:
            if n not in by_stem:
                report.errors.append(_issue("missing-image", root / "images" / n,
                                            f"listed in split {s} but not in images/"))
                continue
            img, mask = by_stem[n]
            if mask is None:
                continue  # already reported
            recs.append(folder_record(root, n, img, mask, class_name=class_name))
        out[s] = recs
    return out


def check_dataset(path, splits: Optional[Iterable[str]] = None, *, workers: Optional[int] = None,
                  class_name: Optional[str] = None, seed: int = 0, decoded=None,
                  strict: bool = False) -> CheckReport:
    """Check every image and mask of the dataset at ``path`` (all splits, or only ``splits``).

    Each file is decoded completely (in a thread pool). With ``decoded`` (a
    :class:`~vlsm.data.decoded.DecodedCache`) the decoded pairs are also resized into the cache, and
    pairs the cache has already checked are not decoded again. Images listed in two splits are
    reported by name (``report.leakage``); with ``strict`` they are errors. Returns a
    :class:`CheckReport`; raises only when ``path`` is not a dataset folder or a requested split does
    not exist.
    """
    from vlsm.data.layout import detect_layout

    started = time.perf_counter()
    root = Path(path)
    layout = detect_layout(root)
    report = CheckReport(root=root, layout=layout, strict=strict)
    per_split = _collect_records(root, layout, splits, report, class_name, seed)
    report.leakage = split_overlaps(root, class_name=class_name, seed=seed)
    if strict:
        report.errors += [i for i in report.warnings if i.kind == "overlap"]
        report.warnings = [i for i in report.warnings if i.kind != "overlap"]
    cases = {}
    for recs in per_split.values():
        for r in recs:
            cases[(r.image_path, r.mask_path)] = r.dataset
    n_workers = workers or min(8, 2 * (os.cpu_count() or 1))
    keys = list(cases)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        results = list(pool.map(lambda k: _check_case(*k, decoded=decoded, dataset=cases[k]), keys))
    seen_issue = set()
    for key, (empty, issues) in zip(keys, results):
        cases[key] = (empty, issues)
        for i in issues:
            if (i.file, i.kind) in seen_issue:
                continue
            seen_issue.add((i.file, i.kind))
            (report.errors if i.kind in _ERROR_KINDS else report.warnings).append(i)
    for split, recs in per_split.items():
        empties = [r.name for r in recs if cases[(r.image_path, r.mask_path)][0] is True]
        n_err = sum(1 for r in recs if any(i.kind in _ERROR_KINDS for i in cases[(r.image_path, r.mask_path)][1]))
        report.counts[split] = {"cases": len(recs), "empty_masks": len(empties), "errors": n_err}
        report.empty_masks[split] = empties
    report.seconds = time.perf_counter() - started
    return report


__all__ = ["check_dataset", "CheckReport", "Issue", "FIXES", "GREY_LOW", "GREY_HIGH", "MAX_GREY_FRACTION"]
