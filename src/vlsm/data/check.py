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
* ``overlap`` / ``duplicate``: a case in two split files, or twice in one;
* ``patient-overlap``: a patient with images in two splits, where image names carry the patient (the
  pattern ``vlsm data convert`` saved, or ``--patient-pattern``); errors with ``strict``, as overlaps.

Masks with no foreground are counted per split (BUSI's "normal" images have empty masks by design).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from PIL import Image

from vlsm.data.images import ImageReadError, load_image
from vlsm.data.issues import ERROR_KINDS, FIXES, KIND_TITLES, Issue, issue
from vlsm.data.leakage import Leakage, PatientLeakage, find_leakage, patient_leakage, saved_patient_pattern
from vlsm.data.listing import Listing, list_dataset
from vlsm.data.masks import read_mask_intensity, threshold_intensity
from vlsm.data.medvlsm import ANNS_DIR, IMAGES_DIR

GREY_LOW = 32
GREY_HIGH = 223
MAX_GREY_FRACTION = 0.01


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
    patients: Optional[PatientLeakage] = None        # patients in two splits (by the dataset's patient pattern)
    strict: bool = False                             # leakage counts as an error
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def bad_files(self) -> set:
        """Resolved paths of the files with errors (to leave those cases out)."""
        return {Path(i.file).resolve() for i in self.errors if i.kind not in ("layout", "patient-overlap")}

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
        lines += self._patient_lines()
        if self.errors:
            lines += self._section("ERRORS", [i for i in self.errors if i.kind != "patient-overlap"], per_kind)
        # the leakage blocks above name every overlap; the per-file list would repeat them
        warnings = [i for i in self.warnings if not (self.leakage and i.kind == "overlap")
                    and i.kind != "patient-overlap"]
        if warnings:
            lines += self._section("warnings", warnings, min(per_kind, 3))
        n_bad = len({i.file for i in self.errors})
        if not self.ok:
            lines.append(f"FAILED: {len(self.errors)} error(s) in {n_bad} file(s)")
        elif self.leakage or self.patients:
            shared = [f"{len(self.leakage.names())} image(s)" if self.leakage else "",
                      f"{len(self.patients.patients())} patient(s)" if self.patients else ""]
            lines.append(f"OK: no errors, but {' and '.join(x for x in shared if x)} are in two splits (listed above; "
                         f"--strict makes this an error)")
        else:
            lines.append("OK: no errors")
        return "\n".join(lines)


    def _patient_lines(self) -> list[str]:
        found = self.patients
        if found is None:
            return []
        lines = []
        if found:
            lines.append(f"{'PATIENT LEAKAGE' if self.strict else 'patient leakage'}: patients with images in two "
                         f"splits ({len(found.patients())}; patient = {found.pattern}):")
            lines += [f"  {a} & {b} ({len(names)}): {', '.join(names)}" for (a, b), names in found.pairs.items()]
            lines.append(f"    fix: {FIXES['patient-overlap']}")
        if found.unmatched:
            lines.append(f"  note: {len(found.unmatched)} image name(s) hold no patient by {found.pattern}: "
                         f"{', '.join(found.unmatched[:3])}{' ...' if len(found.unmatched) > 3 else ''}")
        return lines


def _patient_issues(listing: Listing, pattern: Optional[str]) -> tuple[Optional[PatientLeakage], list]:
    """Patients in two splits, by ``pattern`` or the one the dataset's conversion saved (None: no pattern)."""
    pattern = pattern or saved_patient_pattern(listing.root)
    if not pattern:
        return None, []
    found = patient_leakage(listing.splits, pattern, listing.root / IMAGES_DIR)
    issues = [issue("patient-overlap", listing.root, f"patient {p} has images in both {a} and {b}")
              for (a, b), names in found.pairs.items() for p in names]
    return found, issues


def _check_image(path: Path) -> tuple[Optional[Image.Image], list]:
    """(the decoded RGB image or None if unusable, issues)."""
    if not path.is_file():
        return None, [issue("missing-image", path, "file not found")]
    try:
        return load_image(path), []
    except (ImageReadError, OSError) as err:
        return None, [issue("unreadable-image", path, _short(err, path))]


def _short(err: BaseException, path: Path) -> str:
    """The reader's complaint without the file name (the report shows it) and without the advice."""
    text = str(err)
    for what in ("image", "mask"):
        text = text.replace(f"cannot read {what} {path}: ", "")
    return "cannot be decoded: " + text.split(". The file")[0].split(". Re-export")[0]


def _check_mask(path: Path, image_size: Optional[tuple]) -> tuple[Optional[np.ndarray], list]:
    """(the boolean foreground or None if unusable, issues)."""
    if not path.is_file():
        return None, [issue("missing-mask", path, "file not found")]
    try:
        intensity = read_mask_intensity(path)
    except (ImageReadError, OSError, ValueError) as err:
        return None, [issue("unreadable-mask", path, _short(err, path))]
    v = intensity.values
    issues = []
    h, w = v.shape
    if image_size is not None and (w, h) != tuple(image_size):
        issues.append(issue("size-mismatch", path,
                             f"mask is {w}x{h}, its image is {image_size[0]}x{image_size[1]}"))
    hist = np.bincount(v.ravel(), minlength=256)
    total = max(1, v.size)
    grey = int(hist[GREY_LOW + 1:GREY_HIGH].sum())
    present = np.nonzero(hist)[0]
    exact = set(present.tolist()) <= {0, 255} or set(present.tolist()) <= {0, 1}
    fg = threshold_intensity(v)
    empty = not fg.any()
    if grey / total > MAX_GREY_FRACTION:
        issues.append(issue("grey-mask", path, f"{100 * grey / total:.1f}% of pixels are grey "
                                                f"(values {GREY_LOW + 1}-{GREY_HIGH - 1})"))
    elif empty and present.size and present.max() > 1:
        issues.append(issue("dark-mask", path, f"values 0-{int(present.max())}, none above 127: "
                                                f"it binarises to an empty mask"))
    elif not exact:
        off = int(total - hist[0] - hist[255])
        issues.append(issue("near-binary", path, f"{off} pixel(s) not exactly 0/255"))
    if intensity.source == "colour":
        issues.append(issue("colour-mask", path, "RGB channels differ: foreground = any channel > 127"))
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
            return verdict.get("empty"), [issue(kind, files[which], problem)
                                          for kind, problem, which in verdict.get("issues", [])]
    pil, issues = _check_image(image)
    size = pil.size if pil is not None else None
    fg = empty = None
    if mask is not None:
        fg, more = _check_mask(mask, size)
        issues = issues + more
        empty = None if fg is None else not fg.any()
    usable = pil is not None and (mask is None or fg is not None)
    if key is not None and usable and not any(i.kind in ERROR_KINDS for i in issues):
        from vlsm.data.decoded import DecodedCase

        which = {str(image): "image", str(mask): "mask"}
        verdict = {"empty": empty, "issues": [[i.kind, i.problem, which[i.file]] for i in issues]}
        small_image, small_mask = decoded.resize(pil, fg)  # at the cache's size, with its filter
        decoded.write(key, DecodedCase(small_image, small_mask, size[1], size[0], verdict), dataset,
                      files=(image, mask))
    return empty, issues


def _leakage_issues(listing: Listing, leakage: Leakage) -> list:
    """The data check's warnings for cases listed twice in a split and images in two splits."""
    found = []
    for split in leakage.duplicates:
        for rec, times in leakage.repeated(split):
            if listing.layout == "medvlsm":  # named as the split file names it
                listed = rec.image_path.relative_to(listing.root / IMAGES_DIR).as_posix()
                found.append(issue("duplicate", listing.root / ANNS_DIR / f"{split}.json",
                                   f"{listed} is listed more than once"))
            else:
                found.append(issue("duplicate", listing.root, f"{rec.name} is listed {times} times in {split}"))
    for a, b in leakage.pairs:
        found += [issue("overlap", rec.image_path, f"in both {a} and {b}") for rec in leakage.shared_records(a, b)]
    return found


def _check_cases(report: CheckReport, per_split: dict, workers: Optional[int], decoded) -> None:
    """Decode every case of ``per_split`` ({split: records}) once, in a thread pool, into ``report``."""
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
            (report.errors if i.kind in ERROR_KINDS else report.warnings).append(i)
    for split, recs in per_split.items():
        empties = [r.name for r in recs if cases[(r.image_path, r.mask_path)][0] is True]
        n_err = sum(1 for r in recs if any(i.kind in ERROR_KINDS for i in cases[(r.image_path, r.mask_path)][1]))
        report.counts[split] = {"cases": len(recs), "empty_masks": len(empties), "errors": n_err}
        report.empty_masks[split] = empties


def check_listing(listing: Listing, splits: Optional[Iterable[str]] = None, *, leakage: Optional[Leakage] = None,
                  workers: Optional[int] = None, decoded=None, strict: bool = False,
                  patient_pattern: Optional[str] = None) -> CheckReport:
    """:func:`check_dataset` of a dataset already listed (``leakage``: its leakage, if already found)."""
    started = time.perf_counter()
    wanted = listing.split_names(splits)
    report = CheckReport(root=listing.root, layout=listing.layout, strict=strict)
    report.errors += listing.issues + [i for s in wanted for i in listing.split_issues.get(s, ())]
    if not splits:
        report.notes += listing.unlisted_note()
    report.leakage = leakage if leakage is not None else find_leakage(listing.splits, listing.name)
    report.warnings += _leakage_issues(listing, report.leakage)  # they concern all splits
    report.patients, patient_issues = _patient_issues(listing, patient_pattern)
    report.warnings += patient_issues
    if strict:
        report.errors += [i for i in report.warnings if i.kind in ("overlap", "patient-overlap")]
        report.warnings = [i for i in report.warnings if i.kind not in ("overlap", "patient-overlap")]
    # (plain folders: an image without a mask is already an error of the listing)
    per_split = {s: [r for r in listing.splits[s] if r.mask_path is not None] for s in wanted if s in listing.splits}
    _check_cases(report, per_split, workers, decoded)
    report.seconds = time.perf_counter() - started
    return report


def check_dataset(path, splits: Optional[Iterable[str]] = None, *, workers: Optional[int] = None,
                  class_name: Optional[str] = None, seed: int = 0, decoded=None,
                  strict: bool = False, patient_pattern: Optional[str] = None) -> CheckReport:
    """Check every image and mask of the dataset at ``path`` (all splits, or only ``splits``).

    Each file is decoded completely (in a thread pool). With ``decoded`` (a
    :class:`~vlsm.data.decoded.DecodedCache`) the decoded pairs are also resized into the cache, and
    pairs the cache has already checked are not decoded again. Images listed in two splits are
    reported by name (``report.leakage``), and patients with images in two splits (``report.patients``) by
    ``patient_pattern`` or the pattern the dataset's conversion saved; with ``strict`` both are errors. Returns a
    :class:`CheckReport`; raises only when ``path`` is not a dataset folder or a requested split does
    not exist.
    """
    started = time.perf_counter()
    report = check_listing(list_dataset(path, class_name=class_name, seed=seed), splits, workers=workers,
                           decoded=decoded, strict=strict, patient_pattern=patient_pattern)
    report.seconds = time.perf_counter() - started
    return report


__all__ = ["check_dataset", "check_listing", "CheckReport", "Issue", "FIXES", "KIND_TITLES", "GREY_LOW", "GREY_HIGH",
           "MAX_GREY_FRACTION"]
