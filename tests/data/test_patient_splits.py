"""Generated splits keep a patient's images together, and `vlsm data check` reports patients in two splits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from naming import raises_naming
from vlsm.cli import main
from vlsm.data.check import check_dataset
from vlsm.data.convert import convert_dataset
from vlsm.data.leakage import patient_of

PATTERN = r"^(pt\d+)_"


def plain_folder(root: Path, patients: int, per_patient: int = 3) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    for p in range(patients):
        for v in range(per_patient):
            Image.new("RGB", (8, 8), (10 * v, 20, 30)).save(root / "images" / f"pt{p:03d}_view{v}.png")
            Image.fromarray(mask).save(root / "masks" / f"pt{p:03d}_view{v}.png")
    return root


def split_patients(out: Path) -> dict:
    return {s: {patient_of(PATTERN, Path(e["img_name"]).stem) for e in json.loads(p.read_text())}
            for s in ("train", "val", "test") for p in [out / "anns" / f"{s}.json"]}


def test_no_patient_is_in_two_generated_splits_and_adding_patients_moves_none(tmp_path):
    raw = plain_folder(tmp_path / "raw", patients=40)
    convert_dataset("folder", raw, tmp_path / "out", patient_pattern=PATTERN)
    before = split_patients(tmp_path / "out")
    assert all(before.values()) and sum(len(v) for v in before.values()) == 40
    assert not (before["train"] & before["val"] or before["train"] & before["test"] or before["val"] & before["test"])
    counts = {s: len(json.loads((tmp_path / "out" / "anns" / f"{s}.json").read_text())) for s in before}
    assert all(n % 3 == 0 for n in counts.values())  # whole patients
    raw2 = plain_folder(tmp_path / "raw2", patients=50)
    convert_dataset("folder", raw2, tmp_path / "out2", patient_pattern=PATTERN)
    after = split_patients(tmp_path / "out2")
    assert all(before[s] <= after[s] for s in before)  # stable: no patient moved
    assert json.loads((tmp_path / "out" / "vlsm_convert.json").read_text())["patient_pattern"] == PATTERN


def test_a_pattern_that_misses_names_or_does_not_compile_is_refused(tmp_path):
    raw = plain_folder(tmp_path / "raw", patients=2)
    Image.new("RGB", (8, 8)).save(raw / "images" / "other.png")
    Image.new("L", (8, 8)).save(raw / "masks" / "other.png")
    with raises_naming(ValueError, f"--patient-pattern {PATTERN!r}", "other", str(raw)):
        convert_dataset("folder", raw, tmp_path / "out", patient_pattern=PATTERN)
    with raises_naming(ValueError, "--patient-pattern '(pt'", "regular expression"):
        convert_dataset("folder", raw, tmp_path / "out", patient_pattern="(pt")
    assert not (tmp_path / "out").exists()


def test_the_check_reports_patients_in_two_given_splits(tmp_path, capsys):
    raw = plain_folder(tmp_path / "raw", patients=12)
    out = tmp_path / "out"
    convert_dataset("folder", raw, out, patient_pattern=PATTERN)
    assert not check_dataset(out).patients  # generated: clean
    anns = {s: json.loads((out / "anns" / f"{s}.json").read_text()) for s in ("train", "val", "test")}
    moved = anns["train"].pop(0)  # one image of a training patient goes to test
    anns["test"].append(moved)
    for s, entries in anns.items():
        (out / "anns" / f"{s}.json").write_text(json.dumps(entries))
    patient = moved["img_name"][:5]
    report = check_dataset(out)  # the pattern saved by the conversion
    assert report.ok and not report.leakage and report.patients.pairs == {("train", "test"): [patient]}
    assert main(["data", "check", str(out), "--no-prompts"]) == 0
    text = capsys.readouterr().out
    assert f"patient leakage: patients with images in two splits (1; patient = {PATTERN})" in text
    assert f"train & test (1): {patient}" in text and "1 patient(s) are in two splits" in text
    assert main(["data", "check", str(out), "--no-prompts", "--strict"]) == 1
    (out / "vlsm_convert.json").unlink()
    assert check_dataset(out).patients is None  # no pattern known: nothing to say
    assert check_dataset(out, patient_pattern=PATTERN).patients.pairs == {("train", "test"): [patient]}


def test_patient_of_keeps_folders_apart():
    assert patient_of(r"^(patient\d+)_", "patient0001_2CH_ED") == "patient0001"
    assert patient_of(r"^(patient\d+)_", "testing/patient0001_2CH_ED") == "testing/patient0001"
    assert patient_of(r"^(patient\d+)_", "case7") is None
