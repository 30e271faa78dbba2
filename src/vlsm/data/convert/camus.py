"""CAMUS (Leclerc et al., IEEE TMI 2019; CREATIS, Université de Lyon; free for research, cite the paper):
2-D echocardiography, the end-diastole (ED) and end-systole (ES) frames of the two-chamber (2CH) and
four-chamber (4CH) views of each patient, with label maps 1 = left-ventricle cavity, 2 = myocardium,
3 = left atrium. Both official releases are read::

    2019 challenge (MHD/RAW):  training/patient0001/patient0001_2CH_ED.mhd (+ .raw), ..._2CH_ED_gt.mhd,
                               Info_2CH.cfg, Info_4CH.cfg; testing/patient0001/... (numbered from 1 again)
    2023 release (NIfTI):      database_nifti/patient0001/patient0001_2CH_ED.nii.gz, ..._2CH_ED_gt.nii.gz,
                               Info_2CH.cfg; database_split/subgroup_{training,validation,testing}.txt

Each frame gives three cases named as medvlsm names them: the image ``patient0001_2CH_ED.png`` and one
mask per structure, ``mask_1/patient0001_2CH_ED_gt.png`` (cavity), ``mask_2/...`` (myocardium),
``mask_3/...`` (atrium). When a download holds the 2019 training/ and testing/ folders, whose numbers
overlap, the testing patients' files go under ``testing/`` (medvlsm keeps them in a folder of their own
too). With medvlsm's split files, an entry whose prompts give an age, sex or image quality is matched
only to the patient whose Info file agrees (medvlsm's test split numbers the 2019 testing patients
from 1, so a name alone can point at the wrong patient). Generated splits keep each patient in one
split: the 2023 subgroup files when present, else the 2019 testing patients as test and the training
patients ~90/10 by a hash of the patient, else ~80/10/10 by patient.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import numpy as np

from vlsm.data._util import preview, stable_split
from vlsm.data.convert.base import PATIENT_PATTERN, DatasetSource, RawLayoutError, SourceCase

_FRAME = re.compile(r"^(patient\d+)_(2CH|4CH)_(ED|ES)(_gt)?\.(mhd|nii\.gz|nii)$", re.IGNORECASE)
_MAX_DEPTH = 5
SUBGROUPS = {"train": "subgroup_training.txt", "val": "subgroup_validation.txt", "test": "subgroup_testing.txt"}

#: label value -> medvlsm's mask folder and the structure's name in its prompts
STRUCTURES = {1: ("mask_1", "Left ventricular cavity"), 2: ("mask_2", "Myocardium"), 3: ("mask_3", "Left atrium cavity")}
VIEWS = {"2CH": "two-chamber", "4CH": "four-chamber"}
PHASES = {"ED": "diastole", "ES": "systole"}
SEXES = {"F": "female", "M": "male"}
#: medvlsm's prompt wording: two variants per prompt (one per setting), each adding one fact to an earlier
#: one; a prompt whose facts the patient's Info file lacks repeats the prompt before it
SETTINGS = ("of the heart", "in the cardiac ultrasound")
TAILS = {"p2": ("", " in {view} view {setting}"), "p3": ("p2", " at end of the {phase} cycle"),
         "p4": ("p3", " of a {sex}"), "p5": ("p3", " of a {age}-year-old {sex}"),
         "p6": ("p5", " with {quality} image quality")}
NEEDS = {"p4": ("sex",), "p5": ("age", "sex"), "p6": ("quality",)}

_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def age_words(age: int) -> str:
    """56 -> ``fifty-six`` (as medvlsm's prompts write ages)."""
    if age < 20:
        return _UNITS[age]
    if age < 100:
        return _TENS[age // 10] + ("" if age % 10 == 0 else "-" + _UNITS[age % 10])
    return str(age)


def words_age(text: str) -> Optional[int]:
    """``fifty-six`` -> 56; None for words that are not an age."""
    parts = text.lower().split("-")
    if len(parts) == 1 and parts[0] in _UNITS:
        return _UNITS.index(parts[0])
    if parts[0] in _TENS[2:] and (len(parts) == 1 or (len(parts) == 2 and parts[1] in _UNITS[1:10])):
        return _TENS.index(parts[0]) * 10 + (_UNITS.index(parts[1]) if len(parts) == 2 else 0)
    return int(text) if text.isdigit() else None


def read_info(path: Path) -> dict:
    """``Key: value`` lines of a CAMUS Info_*.cfg file ({} when there is none)."""
    if not path.is_file():
        return {}
    info = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def _subset(folder: Path, raw: Path) -> str:
    for parent in [folder, *folder.parents]:
        if parent.name.lower() == "testing":
            return "testing"
        if parent == raw:
            break
    return ""


def _scan(raw: Path) -> tuple[dict, dict]:
    """({(subset, stem): {"image": path, "gt": path}}, {split: subgroup file})."""
    frames, subgroups, base = {}, {}, len(raw.parts)
    for folder, dirs, files in os.walk(raw):
        folder = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if len(folder.parts) - base < _MAX_DEPTH else []
        for f in sorted(files):
            split = next((s for s, name in SUBGROUPS.items() if f == name), None)
            if split is not None:
                subgroups[split] = folder / f
            m = _FRAME.match(f)
            if m:
                stem = f"{m.group(1)}_{m.group(2).upper()}_{m.group(3).upper()}"
                slot = frames.setdefault((_subset(folder, raw), stem), {})
                role = "gt" if m.group(4) else "image"
                if role in slot:
                    raise RawLayoutError(f"CAMUS frame {stem} found twice under {raw}: {slot[role]} and "
                                         f"{folder / f}; keep one release in RAW_DIR")
                slot[role] = folder / f
    return frames, subgroups


def _label_maker(gt: Path, label: int):
    def make(size: tuple) -> np.ndarray:
        from vlsm.data.medical import read_plane

        labels = read_plane(gt, raw=True)
        if labels.ndim != 2 or (labels.shape[1], labels.shape[0]) != tuple(size):
            raise ValueError(f"label map {gt} is {labels.shape[1]}x{labels.shape[0]} but its image is "
                             f"{size[0]}x{size[1]}: the pair does not belong together; download the "
                             "patient's folder again, or remove the pair from the download folder")
        return labels == label
    return make


def find_camus(raw: Path) -> list:
    """Three cases (one per structure) for every ED/ES frame of both views that has its label map."""
    frames, _subgroups = _scan(raw)
    if not frames:
        raise RawLayoutError(f"{raw} does not look like CAMUS: expected patient folders (training/patient0001/ or "
                             f"database_nifti/patient0001/) holding patient0001_2CH_ED.mhd or .nii.gz and _gt files")
    collide = {stem for (subset, stem) in frames if subset == "testing"} & \
              {stem for (subset, stem) in frames if subset != "testing"}
    cases = []
    for (subset, stem), files in sorted(frames.items()):
        if "image" not in files or "gt" not in files:
            continue  # the 2019 testing set came without label maps; a lone label map has no image
        patient, view, phase = stem.split("_")
        prefix = f"{subset}/" if subset == "testing" and stem in collide else ""
        facts = {"view": view, "phase": phase, "subset": subset,
                 **read_info(files["image"].parent / f"Info_{view}.cfg")}
        for label, (folder, structure) in STRUCTURES.items():
            key = f"{prefix}{folder}/{stem}_gt"
            cases.append(SourceCase(key, files["image"], image_key=prefix + stem, mask_name=f"{key}.png",
                                    make_mask=_label_maker(files["gt"], label), group=prefix + patient,
                                    facts={**facts, "structure": structure}))
    if not cases:
        raise RawLayoutError(f"no CAMUS frame under {raw} has both its image and its _gt label map")
    return cases


def _facts_text(case: SourceCase) -> dict:
    f = case.facts
    age = f.get("Age", "")
    return {"view": VIEWS[f["view"]], "phase": PHASES[f["phase"]], "sex": SEXES.get(f.get("Sex", "")[:1].upper(), ""),
            "age": age_words(int(age)) if age.isdigit() else "", "quality": f.get("ImageQuality", "").lower()}


def camus_prompts(case: SourceCase, mask: np.ndarray, image: np.ndarray) -> dict:
    """medvlsm's CAMUS wording (:data:`TAILS`): structure, view, phase, then sex, age and image quality from the
    patient's Info file, and p7 with the mask's shape."""
    from vlsm.data.prompt_gen import describe_mask

    values, structure = _facts_text(case), case.facts["structure"]
    prompts = {"p0": "", "p1": [f"{structure} {s}." for s in SETTINGS]}
    tails = {}
    for key, (before, part) in TAILS.items():
        known = all(values[n] for n in NEEDS.get(key, ()))
        previous = tails.get(f"p{int(key[1:]) - 1}", [""] * len(SETTINGS))
        tails[key] = [(tails[before][i] if before else "") + part.format(setting=s, **values) if known
                      else previous[i] for i, s in enumerate(SETTINGS)]
        prompts[key] = [f"{structure}{t}." for t in tails[key]]
    shape = describe_mask(mask).shape or "irregular"
    prompts["p7"] = [f"{structure} of {shape} shape{t}." for t in tails["p6"]]
    return prompts


_STATED = re.compile(r"of an? ([a-z-]+)-year-old (female|male)(?: with (\w+) image quality)?")


def _disagreement(entry: dict, case: SourceCase) -> Optional[str]:
    """Why the entry's prompts do not describe the case's patient (None when they agree or say nothing)."""
    text = " ".join(str(v[0] if isinstance(v, list) and v else v) for v in (entry.get("prompts") or {}).values())
    m = _STATED.search(text)
    if m is None or not case.facts.get("Age"):
        return None
    stated = (words_age(m.group(1)), m.group(2), (m.group(3) or "").lower())
    info = _facts_text(case)
    actual = (int(case.facts["Age"]) if case.facts["Age"].isdigit() else None, info["sex"], info["quality"])
    if stated[0] == actual[0] and stated[1] == actual[1] and (not stated[2] or stated[2] == actual[2]):
        return None
    return (f"{entry['img_name']} is described as a {m.group(1)}-year-old {m.group(2)}, but {case.image.parent} "
            f"holds a {case.facts['Age']}-year-old {info['sex'] or 'patient'}: another patient of that number")


def match_camus_entry(entry: dict, split: str, cases: dict):
    """The case of a medvlsm entry: by its mask name, in the 2019 testing folder first for the test split,
    and only if the entry's stated age, sex and image quality are the patient's."""
    key = str(Path(entry["mask_name"]).with_suffix("")).replace("\\", "/")
    candidates = [c for c in (cases.get(key), cases.get(f"testing/{key}")) if c is not None]
    candidates.sort(key=lambda c: (c.facts.get("subset") == "testing") != (split == "test"))
    reasons = []
    for case in candidates:
        why = _disagreement(entry, case)
        if why is None:
            return case, None
        reasons.append(why)
    return None, (reasons[0] if reasons else None)


def camus_split(raw: Path, cases: dict, seed: int) -> tuple[dict, list]:
    """Generated splits by patient (see the module docstring)."""
    _frames, subgroups = _scan(raw)
    patient = {k: c.group for k, c in cases.items()}
    if subgroups:
        lists = {s: {ln.strip() for ln in p.read_text().splitlines() if ln.strip()} for s, p in subgroups.items()}
        place = {pt: s for s, pts in lists.items() for pt in pts}
        left = sorted({pt for pt in patient.values() if pt not in place})
        notes = [f"splits: CAMUS's subgroup files ({', '.join(p.name for p in subgroups.values())})"]
        if left:
            notes.append(f"{len(left)} patient(s) are in no subgroup file and were not written: {preview(left, 3)}")
        return {s: sorted(k for k in cases if place.get(patient[k]) == s) for s in lists}, notes
    testing = {pt for k, pt in patient.items() if cases[k].facts.get("subset") == "testing"}
    if testing:
        by = stable_split(sorted(set(patient.values()) - testing), seed, fractions=(0.9, 0.1, 0.0))
        by["test"] = sorted(testing)
        note = "splits: the 2019 testing patients are test; the training patients ~90/10 train/val by patient"
    else:
        by = stable_split(sorted(set(patient.values())), seed)
        note = "splits: ~80/10/10 by a hash of each patient (every frame of a patient in one split)"
    place = {pt: s for s, pts in by.items() for pt in pts}
    return {s: sorted(k for k in cases if place[patient[k]] == s) for s in by}, [note]


SOURCE = DatasetSource(
    "camus", find_camus, "heart",
    "CAMUS: training/ + testing/ patient*/patient*_2CH_ED.mhd + _gt.mhd (2019) or "
    "database_nifti/patient*/*.nii.gz (2023)",
    entry_key=lambda entry: str(Path(entry["mask_name"]).with_suffix("")), prompts=camus_prompts,
    split=camus_split, match_entry=match_camus_entry, patient_pattern=PATIENT_PATTERN)

__all__ = ["SOURCE", "find_camus", "camus_prompts", "camus_split", "age_words", "words_age", "read_info",
           "STRUCTURES"]
