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
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from vlsm.data._util import atomic_directory, check_output_dir, preview, stable_split
from vlsm.data.convert.sources import MASK_RED_OR_GREEN, SOURCES, RawLayoutError, SourceCase, get_source
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
    src = case.image.suffix
    if wanted and (wanted.lower() == src.lower() or wanted.lower() == ".png"):
        return wanted
    return src if src.lower() in COPY_SUFFIXES else ".png"


def _convert_case(case: SourceCase, tmp: Path, image_name: str, mask_name: str, prompts_for) -> dict:
    """Write one case; returns {"bbox", "prompts"?} or raises ValueError describing the problem."""
    if not case.masks:
        raise ValueError(f"no mask found for image {case.image}")
    image = load_image(case.image)  # full decode: truncated files fail here
    mask = _load_case_mask(case, image.size)
    target = tmp / "images" / image_name
    if Path(image_name).suffix.lower() == case.image.suffix.lower() and case.image.suffix.lower() in COPY_SUFFIXES:
        shutil.copyfile(case.image, target)
    else:
        image.save(target, format="PNG")
    save_mask(tmp / "masks" / mask_name, mask)
    ys, xs = np.nonzero(mask)
    info = {"bbox": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if xs.size else None}
    if prompts_for is not None:
        info["prompts"] = prompts_for(mask, np.asarray(image))
    return info


Jobs = dict  # case key -> (SourceCase, image file name, mask file name): the files to write


def _plan_from_anns(anns: Path, cases: dict, raw_dir: Path, source, allow_missing: bool,
                    result: ConvertResult) -> tuple[dict, Jobs]:
    """medvlsm's split files decide splits and prompts: each entry matched to its raw case by the image's
    file stem, with ``img_name``/``mask_name`` set to the files written."""
    plan, jobs, missing_all = {}, {}, []
    for split, entries in _read_anns_dir(anns).items():
        kept = []
        for e in entries:
            key = Path(e["img_name"]).stem
            case = cases.get(key)
            if case is None:
                result.dropped.setdefault(split, []).append(e["img_name"])
                missing_all.append(e["img_name"])
                continue
            image_name = key + _image_suffix(case, Path(e["img_name"]).suffix)
            mask_name = str(Path(e["mask_name"]).with_suffix(".png"))
            if key in jobs and jobs[key][1:] != (image_name, mask_name):
                raise DatasetConversionError(f"{anns}: case {key} appears with different mask names")
            jobs[key] = (case, image_name, mask_name)
            entry = copy.deepcopy(e)
            entry["img_name"], entry["mask_name"] = image_name, mask_name
            kept.append(entry)
        plan[split] = kept
    if missing_all and not allow_missing:
        raise FileNotFoundError(
            f"{len(missing_all)} case(s) named in the split files in {anns} are not in {raw_dir}: "
            f"{preview(missing_all)}. Point RAW_DIR at the complete download ({source.description}), "
            f"or pass --allow-missing (allow_missing=True) to write only the cases found.")
    result.unused = sorted(set(cases) - set(jobs))
    return plan, jobs


def _plan_generated(dataset: str, raw_dir: Path, cases: dict, source, seed: int) -> tuple[dict, Jobs]:
    """Without split files: a plain folder's own split file, else the stable hash split; prompts come later."""
    split_keys = None
    if dataset == "folder":
        from vlsm.data.folder import read_split_file

        split_keys = read_split_file(raw_dir)
        unknown = sorted({k for ks in (split_keys or {}).values() for k in ks} - set(cases))
        if unknown:
            raise FileNotFoundError(f"the split file of {raw_dir} names cases not in images/: {preview(unknown)}")
    if split_keys is None:
        split_keys = stable_split(list(cases), seed)
    plan, jobs = {}, {}
    for split, keys in split_keys.items():
        plan[split] = []
        for key in keys:
            image_name = key + _image_suffix(cases[key], None)
            jobs[key] = (cases[key], image_name, source.mask_name(key))
            plan[split].append({"img_name": image_name, "mask_name": source.mask_name(key), "cat": 0,
                                "segment_id": key})
    return plan, jobs


def _convert_all(tmp: Path, jobs: Jobs, prompts_for, workers: Optional[int], raw_dir: Path) -> dict:
    """Write every case into ``tmp`` (threads); {key: info}, or one error listing every case that failed."""
    for sub in ("images", "masks", "anns"):
        (tmp / sub).mkdir()
    for _c, _i, mask_name in jobs.values():
        (tmp / "masks" / mask_name).parent.mkdir(parents=True, exist_ok=True)

    def work(item):
        key, (case, image_name, mask_name) = item
        try:
            return key, _convert_case(case, tmp, image_name, mask_name, prompts_for), None
        except (ImageReadError, OSError, ValueError) as err:
            return key, None, str(err)

    with ThreadPoolExecutor(max_workers=workers or min(8, 2 * (os.cpu_count() or 1))) as pool:
        outcomes = list(pool.map(work, sorted(jobs.items())))
    problems = [err for _k, _info, err in outcomes if err]
    if problems:
        raise DatasetConversionError(f"{len(problems)} case(s) of {raw_dir} cannot be converted; nothing was "
                                     f"written:\n  " + "\n  ".join(problems[:10])
                                     + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
                                     + "\nRe-download the damaged files or remove those cases from the raw folder.")
    return {k: info for k, info, _e in outcomes}


def _write_anns(tmp: Path, plan: dict, infos: dict, generated: bool, result: ConvertResult) -> None:
    """anns/<split>.json; generated entries get each mask's bounding box and prompts."""
    for split, entries in plan.items():
        for e in entries:
            if generated:
                info = infos[Path(e["img_name"]).stem]
                e["bbox"], e["prompts"] = info["bbox"], info["prompts"]
        (tmp / "anns" / f"{split}.json").write_text(json.dumps(entries, indent=1))
        result.counts[split] = len(entries)


def convert_dataset(dataset: str, raw_dir, out_dir, *, anns=None, seed: int = 0, overwrite: bool = False,
                    allow_missing: bool = False, class_name: Optional[str] = None,
                    workers: Optional[int] = None) -> ConvertResult:
    """Convert ``raw_dir`` (the dataset's download) into the medvlsm layout in ``out_dir``."""
    from vlsm.data.prompt_gen import generate_prompts

    source = get_source(dataset)
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"raw folder {raw_dir} does not exist (expected {source.description})")
    check_output_dir(out_dir, overwrite, protect=[raw_dir] + ([Path(anns)] if anns else []),
                     markers=[SUMMARY_FILE])
    cases = {c.key: c for c in source.find(raw_dir)}
    if not cases:
        raise RawLayoutError(f"no cases found in {raw_dir} (expected {source.description})")
    result = ConvertResult(out_dir=out_dir, dataset=dataset)
    cls = class_name or source.class_name
    if anns is not None:
        plan, jobs = _plan_from_anns(Path(anns), cases, raw_dir, source, allow_missing, result)
        prompts_for = None
    else:
        plan, jobs = _plan_generated(dataset, raw_dir, cases, source, seed)

        def prompts_for(mask, image):
            return generate_prompts(mask, image, cls)

    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        infos = _convert_all(tmp, jobs, prompts_for, workers, raw_dir)
        _write_anns(tmp, plan, infos, anns is None, result)
        summary = {"dataset": dataset, "raw_dir": str(raw_dir.resolve()),
                   "anns": str(Path(anns).resolve()) if anns is not None else None,
                   "seed": None if anns is not None else seed, "class_name": None if anns is not None else cls,
                   "counts": result.counts, "dropped": result.dropped, "unused_raw_cases": result.unused}
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return result


DATASETS = tuple(SOURCES)

__all__ = ["convert_dataset", "ConvertResult", "DatasetConversionError", "DATASETS"]
