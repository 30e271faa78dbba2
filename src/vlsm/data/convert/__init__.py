"""Convert an official dataset download into the medvlsm layout.

``convert_dataset("kvasir", RAW_DIR, OUT_DIR)`` (CLI: ``vlsm data convert kvasir RAW_DIR OUT_DIR``)
writes::

    OUT_DIR/images/<key>.<ext>     PNG/JPEG images copied byte for byte (TIFF, BMP, ... -> PNG)
    OUT_DIR/masks/<mask>.png       binary masks, 8-bit PNG, 0 = background, 255 = foreground
    OUT_DIR/anns/{train,val,test}.json
    OUT_DIR/vlsm_convert.json      what was converted, from where, and what was left out

Masks are binarised with the toolkit's one rule (:mod:`vlsm.data.masks`), except BKAI-IGH's colour
masks (polyp = red > 127 or green > 127); several mask files of one case (BUSI's ``_mask_1.png``...)
are merged by OR.

With ``anns=DIR`` the split files in DIR (medvlsm's ``anns/*.json``) decide the splits and prompts:
their entries are matched to the raw cases by the image's file stem and copied with ``img_name`` and
``mask_name`` set to the files written (e.g. Kvasir's JPEG masks become ``.png``). Entries whose case
is not in the raw folder are an error unless ``allow_missing`` (then they are left out and counted).
Without ``anns`` the cases are split about 80/10/10 by a hash of each name, stable when cases are
added (:func:`vlsm.data._util.stable_split`; or by a plain folder's own split
file) and prompts p0-p6 are generated from each mask (:mod:`vlsm.data.prompt_gen`).

Everything is written to a temporary folder first and renamed into place at the end; on any error
nothing is left behind. A non-empty ``out_dir`` is refused unless ``overwrite``, and even then it is
replaced only if it is an earlier conversion (it holds ``vlsm_convert.json``); an ``out_dir`` equal to or
inside ``raw_dir`` is always refused.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from vlsm.data._util import atomic_directory, check_output_dir, file_stem, file_suffix, preview, stable_split
from vlsm.data.convert.base import MASK_RED_OR_GREEN, RawLayoutError, SourceCase, patient_of
from vlsm.data.convert.sources import SOURCES, get_source
from vlsm.data.images import ImageReadError, load_image
from vlsm.data.masks import load_mask, save_mask

COPY_SUFFIXES = (".png", ".jpg", ".jpeg")
SUMMARY_FILE = "vlsm_convert.json"


class DatasetConversionError(ValueError):
    """Raw files that cannot be converted (listed in the message); nothing was written."""


@dataclass
class ConvertResult:
    out_dir: Path
    dataset: str
    counts: dict = field(default_factory=dict)       # split -> entries written
    dropped: dict = field(default_factory=dict)      # split -> [names in anns but not in the raw folder]
    unused: list = field(default_factory=list)       # raw case keys in no split file
    notes: list = field(default_factory=list)

    @property
    def n_dropped(self) -> int:
        return sum(len(v) for v in self.dropped.values())

    def format(self) -> str:
        lines = [f"converted {self.dataset} into {self.out_dir}: "
                 + ", ".join(f"{s} {n}" for s, n in self.counts.items())]
        if self.n_dropped:
            lines.append(f"  {self.n_dropped} split-file entr{'y' if self.n_dropped == 1 else 'ies'} "
                         f"dropped (case not in the raw folder): "
                         + "; ".join(f"{s}: {len(v)}" for s, v in self.dropped.items() if v))
        if self.unused:
            lines.append(f"  {len(self.unused)} raw case(s) are in no split file and were not written: "
                         f"{preview(self.unused, 3)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _read_anns_dir(anns: Path) -> dict[str, list]:
    from vlsm.data.medvlsm import available_splits, read_anns

    anns = Path(anns)
    if (anns / "anns").is_dir():
        anns = anns / "anns"
    splits = available_splits(anns)
    if not splits:
        raise FileNotFoundError(f"no split files (*.json) in {anns}: --anns must point at medvlsm's "
                                f"anns folder of this dataset (e.g. data/kvasir_polyp/anns)")
    return {s: read_anns(anns, s) for s in splits}


def _load_case_mask(case: SourceCase, size: tuple) -> np.ndarray:
    if case.make_mask is not None:
        return case.make_mask(size)
    merged = None
    for path in case.masks:
        if case.mask_mode == MASK_RED_OR_GREEN:
            rgb = np.asarray(load_image(path))
            m = (rgb[..., 0] > 127) | (rgb[..., 1] > 127)
        else:
            m = load_mask(path)
        if m.shape != (size[1], size[0]):
            raise ValueError(f"mask {path} is {m.shape[1]}x{m.shape[0]} but its image {case.image} is "
                             f"{size[0]}x{size[1]}")
        merged = m if merged is None else (merged | m)
    return merged


def _image_suffix(case: SourceCase, wanted: Optional[str]) -> str:
    src = file_suffix(case.image)
    if wanted and (wanted.lower() == src or wanted.lower() == ".png"):
        return wanted
    return src if src in COPY_SUFFIXES else ".png"


#: image stem -> (image file, output image name, [(case, output mask name)]): the files to write
Jobs = dict


def _add_job(jobs: Jobs, case: SourceCase, image_name: str, mask_name: str, where: str) -> None:
    image, name, pairs = jobs.setdefault(case.image_stem, (case.image, image_name, []))
    if name != image_name:
        raise DatasetConversionError(f"{where}: image {case.image_stem} is named both {name} and {image_name}")
    for other, other_mask in pairs:
        if other.key == case.key:
            if other_mask != mask_name:
                raise DatasetConversionError(f"{where}: case {case.key} appears with different mask names")
            return
    pairs.append((case, mask_name))


def _convert_image(tmp: Path, image_path: Path, image_name: str, pairs: list, prompts_for) -> dict:
    """Write one image and its masks; {case key: {"bbox", "prompts"?}}, or a ValueError saying what is wrong."""
    missing = [c.key for c, _m in pairs if not c.has_mask]
    if missing:
        raise ValueError(f"no mask found for image {image_path}")
    image = load_image(image_path)  # full decode: truncated files fail here
    target = tmp / "images" / image_name
    target.parent.mkdir(parents=True, exist_ok=True)
    if Path(image_name).suffix.lower() == file_suffix(image_path) and file_suffix(image_path) in COPY_SUFFIXES:
        shutil.copyfile(image_path, target)
    else:
        rgb = np.asarray(image)
        grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        (image.convert("L") if grey else image).save(target, format="PNG")  # a grey source stays grey
    infos, pixels = {}, np.asarray(image)
    for case, mask_name in pairs:
        mask = _load_case_mask(case, image.size)
        save_mask(tmp / "masks" / mask_name, mask)
        ys, xs = np.nonzero(mask)
        info = {"bbox": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if xs.size else None}
        if prompts_for is not None:
            info["prompts"] = prompts_for(case, mask, pixels)
        infos[case.key] = info
    return infos


def _plan_from_anns(anns: Path, cases: dict, raw_dir: Path, source, allow_missing: bool,
                    result: ConvertResult) -> tuple[dict, Jobs]:
    """medvlsm's split files decide splits and prompts: each entry matched to its raw case (by the image's
    file stem, or the source's rule), with ``img_name``/``mask_name`` set to the files written."""
    plan, jobs, missing_all, reasons = {}, {}, [], []
    all_entries = _read_anns_dir(anns)
    if source.check_anns is not None:
        source.check_anns(anns, all_entries, cases)
    for split, entries in all_entries.items():
        kept = []
        for e in entries:
            if source.match_entry is not None:
                case, why = source.match_entry(e, split, cases)
            else:
                case, why = cases.get(source.entry_key(e)), None
            if case is None:
                named = e["img_name"] if source.entry_key(e) == file_stem(e["img_name"]) else e["mask_name"]
                result.dropped.setdefault(split, []).append(named)
                missing_all.append(named)
                reasons += [why] if why else []
                continue
            image_name = case.image_stem + _image_suffix(case, Path(e["img_name"]).suffix)
            mask_name = _prefixed(case.image_stem, str(Path(e["mask_name"]).with_suffix(".png")))
            _add_job(jobs, case, image_name, mask_name, str(anns))
            entry = copy.deepcopy(e)
            entry["img_name"], entry["mask_name"] = image_name, mask_name
            kept.append(entry)
        plan[split] = kept
    if missing_all and not allow_missing:
        why = f" ({reasons[0]})" if reasons else ""
        raise FileNotFoundError(
            f"{len(missing_all)} case(s) named in the split files in {anns} are not in {raw_dir}{why}: "
            f"{preview(missing_all)}. Point RAW_DIR at the complete download ({source.description}), "
            f"or pass --allow-missing (allow_missing=True) to write only the cases found.")
    if reasons:
        result.notes.append(f"entries left out: {reasons[0]}" + (f" (and {len(reasons) - 1} more)"
                                                                  if len(reasons) > 1 else ""))
    used = {c.key for _i, _n, pairs in jobs.values() for c, _m in pairs}
    result.unused = sorted(set(cases) - used)
    return plan, jobs


def _prefixed(image_stem: str, mask_name: str) -> str:
    """A mask name kept in its image's subfolder (``testing/patient0001_2CH_ED`` -> ``testing/mask_1/...``)."""
    folder = str(Path(image_stem).parent)
    return mask_name if folder in (".", "") or mask_name.startswith(folder + "/") else f"{folder}/{mask_name}"


def _patients(cases: dict, pattern: Optional[str], raw_dir: Path) -> None:
    """Set each case's ``group`` (its patient) from ``pattern``; names it does not match are an error."""
    if not pattern:
        return
    try:
        re.compile(pattern)
    except re.error as err:
        raise ValueError(f"--patient-pattern {pattern!r} is not a regular expression ({err}); e.g. "
                         f"'^(patient\\d+)_' for names such as patient12_study1") from None
    unmatched = []
    for case in cases.values():
        case.group = patient_of(pattern, case.image_stem)
        if case.group is None:
            unmatched.append(case.image_stem)
    if unmatched:
        raise ValueError(f"--patient-pattern {pattern!r} finds no patient in {len(unmatched)} name(s) of {raw_dir}: "
                         f"{preview(unmatched)}; write a pattern whose first group is the patient in every name")


def _generated_keys(dataset: str, raw_dir: Path, cases: dict, source, seed: int, result: ConvertResult) -> dict:
    """{split: [case keys]}: the source's own split, a plain folder's split file, or the stable hash split of
    the patients (or images) so that no patient or image is in two splits."""
    if source.split is not None:
        split_keys, notes = source.split(raw_dir, cases, seed)
        result.notes += notes
        return split_keys
    if dataset == "folder":
        from vlsm.data.folder import read_split_file

        split_keys = read_split_file(raw_dir)
        unknown = sorted({k for ks in (split_keys or {}).values() for k in ks} - set(cases))
        if unknown:
            raise FileNotFoundError(f"the split file of {raw_dir} names cases not in images/: {preview(unknown)}")
        if split_keys is not None:
            return split_keys
    unit = {key: case.group or case.image_stem for key, case in cases.items()}
    by_unit = stable_split(sorted(set(unit.values())), seed)
    place = {u: split for split, units in by_unit.items() for u in units}
    return {split: [k for k in sorted(cases) if place[unit[k]] == split] for split in by_unit}


def _plan_generated(dataset: str, raw_dir: Path, cases: dict, source, seed: int,
                    result: ConvertResult) -> tuple[dict, Jobs]:
    """Without split files: the splits of :func:`_generated_keys`; prompts come later."""
    plan, jobs = {}, {}
    for split, keys in _generated_keys(dataset, raw_dir, cases, source, seed, result).items():
        plan[split] = []
        for key in keys:
            case = cases[key]
            image_name = case.image_stem + _image_suffix(case, None)
            mask_name = case.mask_name or source.mask_name(key)
            _add_job(jobs, case, image_name, mask_name, str(raw_dir))
            plan[split].append({"img_name": image_name, "mask_name": mask_name, "cat": 0,
                                "segment_id": case.image_stem, "_key": key})
    return plan, jobs


def _convert_all(tmp: Path, jobs: Jobs, prompts_for, workers: Optional[int], raw_dir: Path) -> dict:
    """Write every image and mask into ``tmp`` (threads); {case key: info}, or one error listing every image
    that failed."""
    for sub in ("images", "masks", "anns"):
        (tmp / sub).mkdir()
    for _image, _name, pairs in jobs.values():
        for _case, mask_name in pairs:
            (tmp / "masks" / mask_name).parent.mkdir(parents=True, exist_ok=True)

    def work(item):
        _stem, (image, image_name, pairs) = item
        try:
            return _convert_image(tmp, image, image_name, pairs, prompts_for), None
        except (ImageReadError, OSError, ValueError) as err:
            return None, str(err)

    with ThreadPoolExecutor(max_workers=workers or min(8, 2 * (os.cpu_count() or 1))) as pool:
        outcomes = list(pool.map(work, sorted(jobs.items())))
    problems = [err for _info, err in outcomes if err]
    if problems:
        raise DatasetConversionError(f"{len(problems)} case(s) of {raw_dir} cannot be converted; nothing was "
                                     f"written:\n  " + "\n  ".join(problems[:10])
                                     + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
                                     + "\nRe-download the damaged files or remove those cases from the raw folder.")
    return {k: v for infos, _e in outcomes for k, v in infos.items()}


def _write_anns(tmp: Path, plan: dict, infos: dict, generated: bool, result: ConvertResult) -> None:
    """anns/<split>.json; generated entries get each mask's bounding box and prompts."""
    for split, entries in plan.items():
        for e in entries:
            if generated:
                info = infos[e.pop("_key")]
                e["bbox"], e["prompts"] = info["bbox"], info["prompts"]
        (tmp / "anns" / f"{split}.json").write_text(json.dumps(entries, indent=1))
        result.counts[split] = len(entries)


def _prompt_maker(source, class_name: str):
    from vlsm.data.prompt_gen import generate_prompts

    if source.prompts is not None:
        return source.prompts
    return lambda case, mask, image: generate_prompts(mask, image, class_name)


def convert_dataset(dataset: str, raw_dir, out_dir, *, anns=None, seed: int = 0, overwrite: bool = False,
                    allow_missing: bool = False, class_name: Optional[str] = None,
                    workers: Optional[int] = None, patient_pattern: Optional[str] = None) -> ConvertResult:
    """Convert ``raw_dir`` (the dataset's download) into the medvlsm layout in ``out_dir``. ``patient_pattern``
    (a regular expression whose first group is the patient in each image name) keeps each patient in one
    generated split; CheXlocalize and CAMUS bring their own."""
    source = get_source(dataset)
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"raw folder {raw_dir} does not exist (expected {source.description})")
    check_output_dir(out_dir, overwrite, protect=[raw_dir] + ([Path(anns)] if anns else []),
                     markers=[SUMMARY_FILE])
    cases = {c.key: c for c in source.find(raw_dir)}
    if not cases:
        raise RawLayoutError(f"no cases found in {raw_dir} (expected {source.description})")
    pattern = patient_pattern or source.patient_pattern
    _patients(cases, patient_pattern, raw_dir)
    result = ConvertResult(out_dir=out_dir, dataset=dataset)
    cls = class_name or source.class_name
    if anns is not None:
        plan, jobs = _plan_from_anns(Path(anns), cases, raw_dir, source, allow_missing, result)
        prompts_for = None
    else:
        plan, jobs = _plan_generated(dataset, raw_dir, cases, source, seed, result)
        prompts_for = _prompt_maker(source, cls)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        infos = _convert_all(tmp, jobs, prompts_for, workers, raw_dir)
        _write_anns(tmp, plan, infos, anns is None, result)
        summary = {"dataset": dataset, "raw_dir": str(raw_dir.resolve()),
                   "anns": str(Path(anns).resolve()) if anns is not None else None,
                   "seed": None if anns is not None else seed, "class_name": None if anns is not None else cls,
                   "patient_pattern": pattern, "counts": result.counts, "dropped": result.dropped,
                   "unused_raw_cases": result.unused, "notes": result.notes}
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return result


DATASETS = tuple(SOURCES)

__all__ = ["convert_dataset", "ConvertResult", "DatasetConversionError", "DATASETS"]
