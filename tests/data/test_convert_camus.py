"""CAMUS from both official releases' layouts (samples written here: MHD/RAW by SimpleITK, NIfTI by nibabel)."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medical_samples import write_metaimage, write_nifti
from naming import raises_naming
from vlsm.data import load_mask, load_split
from vlsm.data.check import check_dataset
from vlsm.data.convert import convert_dataset
from vlsm.data.convert.camus import age_words, words_age

#: Info files of the sample's patients, as medvlsm's val (training 1, 2) and test (testing 1, 2) prompts state them
FACTS = {"training": {"patient0001": ("F", 56, "Good"), "patient0002": ("M", 55, "Medium"),
                      "patient0003": ("M", 60, "Poor")},
         "testing": {"patient0001": ("M", 73, "Good"), "patient0002": ("F", 88, "Good")}}
FRAMES = [(view, phase) for view in ("2CH", "4CH") for phase in ("ED", "ES")]


def frame(subset: str, patient: str, view: str, phase: str) -> tuple[np.ndarray, np.ndarray]:
    """(image, label map), (rows, columns) = (14, 11), different for every frame."""
    rng = np.random.default_rng(zlib.crc32(f"{subset}/{patient}/{view}/{phase}".encode()))
    image = rng.integers(0, 256, (14, 11), dtype=np.uint8)
    labels = np.zeros((14, 11), np.uint8)
    top = int(rng.integers(1, 4))
    labels[top:top + 5, 2:8] = 2
    labels[top + 1:top + 4, 3:7] = 1
    labels[top + 7:top + 10, 3:7] = 3
    return image, labels


def _info(folder: Path, view: str, facts: tuple) -> None:
    sex, age, quality = facts
    (folder / f"Info_{view}.cfg").write_text(f"ED: 1\nES: 12\nNbFrame: 18\nSex: {sex}\nAge: {age}\n"
                                             f"ImageQuality: {quality}\nEF: 55\nFrameRate: 50\n")


def write_2019(raw: Path, subsets=("training",)) -> Path:
    for subset in subsets:
        for patient, facts in FACTS[subset].items():
            folder = raw / subset / patient
            folder.mkdir(parents=True)
            for view, phase in FRAMES:
                image, labels = frame(subset, patient, view, phase)
                write_metaimage(folder / f"{patient}_{view}_{phase}.mhd", image)
                write_metaimage(folder / f"{patient}_{view}_{phase}_gt.mhd", labels)
            for view in ("2CH", "4CH"):
                _info(folder, view, facts)
    return raw


def write_2023(raw: Path, subgroups: bool = False) -> Path:
    """The 2023 NIfTI release of the training patients (numbered as in 2019)."""
    base = raw / "CAMUS_public"
    for patient, facts in FACTS["training"].items():
        folder = base / "database_nifti" / patient
        folder.mkdir(parents=True)
        for view, phase in FRAMES:
            image, labels = frame("training", patient, view, phase)
            write_nifti(folder / f"{patient}_{view}_{phase}.nii.gz", image.T)  # voxel order (i, j)
            write_nifti(folder / f"{patient}_{view}_{phase}_gt.nii.gz", labels.T)
        for view in ("2CH", "4CH"):
            _info(folder, view, facts)
    if subgroups:
        (base / "database_split").mkdir()
        for name, patients in (("training", ["patient0001"]), ("validation", ["patient0002"]),
                               ("testing", ["patient0003"])):
            (base / "database_split" / f"subgroup_{name}.txt").write_text("\n".join(patients) + "\n")
    return raw


def medvlsm_entries(anns: Path, split: str, patients) -> list:
    return [e for e in json.loads((anns / f"{split}.json").read_text()) if e["img_name"][:11] in patients]


@pytest.fixture(scope="module")
def camus_anns(medvlsm_anns_root) -> Path:
    return medvlsm_anns_root / "camus"


def test_both_releases_give_medvlsm_names_and_the_same_pixels(tmp_path, camus_anns):
    outs = {}
    for release, write in (("2019", write_2019), ("2023", write_2023)):
        out = tmp_path / f"out{release}"
        result = convert_dataset("camus", write(tmp_path / release), out, anns=camus_anns, allow_missing=True)
        expected = medvlsm_entries(camus_anns, "val", ("patient0001", "patient0002"))
        written = json.loads((out / "anns" / "val.json").read_text())
        assert [(e["img_name"], e["mask_name"]) for e in written] == \
               [(e["img_name"], e["mask_name"]) for e in expected] and len(written) == 24
        assert [e["prompts"] for e in written] == [e["prompts"] for e in expected]
        # medvlsm's test split names other patients (the 2019 testing set, numbered from 1): not these
        assert result.counts["test"] == 0 and "another patient of that number" in result.format()
        assert check_dataset(out).ok
        outs[release] = out
    for e in json.loads((outs["2019"] / "anns" / "val.json").read_text()):
        patient, view, phase = Path(e["img_name"]).stem.split("_")
        image, labels = frame("training", patient, view, phase)
        label = int(e["mask_name"][5])
        for out in outs.values():
            assert (np.asarray(Image.open(out / "images" / e["img_name"])) == image).all()
            assert (load_mask(out / "masks" / e["mask_name"]) == (labels == label)).all()


def test_the_2019_testing_folder_serves_medvlsm_test_split(tmp_path, camus_anns):
    raw = write_2019(tmp_path / "raw", subsets=("training", "testing"))
    out = tmp_path / "out"
    result = convert_dataset("camus", raw, out, anns=camus_anns, allow_missing=True)
    assert result.counts == {"val": 24, "test": 24}
    test = json.loads((out / "anns" / "test.json").read_text())
    expected = medvlsm_entries(camus_anns, "test", ("patient0001", "patient0002"))
    # the testing patients share the training patients' numbers: their files are kept under testing/
    assert [(e["img_name"], e["mask_name"]) for e in test] == \
           [(f"testing/{e['img_name']}", f"testing/{e['mask_name']}") for e in expected]
    image, labels = frame("testing", "patient0001", "2CH", "ED")
    assert (np.asarray(Image.open(out / "images" / "testing" / "patient0001_2CH_ED.png")) == image).all()
    report = check_dataset(out)
    assert report.ok and not report.leakage
    assert len(load_split(out, "test")) == 24


def test_generated_splits_use_the_subgroup_files_and_prompts_follow_medvlsm(tmp_path):
    out = tmp_path / "out"
    result = convert_dataset("camus", write_2023(tmp_path / "raw", subgroups=True), out)
    assert result.counts == {"train": 12, "val": 12, "test": 12}
    assert any("subgroup" in n for n in result.notes)
    val = json.loads((out / "anns" / "val.json").read_text())
    assert {e["img_name"][:11] for e in val} == {"patient0002"}
    first = val[0]
    assert (first["img_name"], first["mask_name"]) == ("patient0002_2CH_ED.png", "mask_1/patient0002_2CH_ED_gt.png")
    p = first["prompts"]
    assert p["p1"] == ["Left ventricular cavity of the heart.", "Left ventricular cavity in the cardiac ultrasound."]
    assert p["p6"][0] == ("Left ventricular cavity in two-chamber view of the heart at end of the diastole cycle of "
                          "a fifty-five-year-old male with medium image quality.")
    assert p["p4"][1].endswith("in the cardiac ultrasound at end of the diastole cycle of a male.")
    assert p["p7"][0].startswith("Left ventricular cavity of ") and " shape in two-chamber view" in p["p7"][0]
    assert json.loads((out / "vlsm_convert.json").read_text())["patient_pattern"] == r"^(patient\d+)_"


def test_a_label_map_of_another_size_names_the_file(tmp_path):
    raw = write_2019(tmp_path / "raw")
    gt = raw / "training" / "patient0002" / "patient0002_4CH_ES_gt.mhd"
    write_metaimage(gt, np.zeros((9, 9), np.uint8))
    with raises_naming(ValueError, str(gt), "9x9", "11x14", one_line=False):  # (a line per case not converted)
        convert_dataset("camus", raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_age_words_round_trip():
    for age in (18, 20, 41, 56, 70, 88, 99):
        assert words_age(age_words(age)) == age
    assert age_words(56) == "fifty-six" and words_age("seventy-three") == 73 and words_age("old") is None
