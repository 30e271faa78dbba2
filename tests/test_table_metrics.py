"""`vlsm table --metric dice|iou|hd95|nsd|both|all` (issue 18): HD95 and NSD with bootstrap CIs and the Wilcoxon
test; HD95's best is its lowest, and an ensemble's HD95 gain is measured against its lower VLSM."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from vlsm.cli import main
from vlsm.evaluation import report
from vlsm.evaluation.metrics import MetricAccumulator
from vlsm.runs import CaseResult, write_evaluation

MODELS = {"unet-d": "UNet-D", "clipseg": "CLIPSeg", "biomedclipseg": "BiomedCLIPSeg", "clipseg-b": "CLIPSeg-B",
          "ensemble-c": "Ensemble-C"}
HD95 = {"UNet-D": 9.0, "CLIPSeg": 12.0, "BiomedCLIPSeg": 20.0, "CLIPSeg-B": 7.0, "Ensemble-C": 8.0}


def _evaluation(folder, name: str, label: str, seed: int, boundary: bool = True):
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(15):
        dice = float(rng.uniform(0.5, 0.95))
        cases.append(CaseResult(f"img{i:02d}", dice, dice / (2 - dice), 100, 90, 50, 60, "p1",
                                hd95=float(HD95[label] + rng.normal(0, 1)) if boundary else None,
                                nsd=float(rng.uniform(0.4, 0.9)) if boundary else None))
    acc = MetricAccumulator(cases, {"nsd_tolerance": 2.0, "distance_unit": "pixels"})
    result = acc.result(dataset="kvasir_polyp", split="test", threshold=0.5, prompt="p1")
    write_evaluation(folder, cases, result, model={"name": name, "label": label})
    return folder


@pytest.fixture()
def folders(tmp_path):
    return [_evaluation(tmp_path / name, name, label, seed) for seed, (name, label) in enumerate(MODELS.items())]


def test_metric_all_shows_the_four_metrics_with_cis_and_the_lowest_hd95_is_best(folders, capsys):
    assert main(["table", *map(str, folders), "--metric", "all", "--bootstrap", "300"]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    for title in ("Kvasir-SEG Dice", "Kvasir-SEG IoU", "Kvasir-SEG HD95", "Kvasir-SEG NSD"):
        assert title in head
    assert "HD95 (pixels)" in out and "HD95: the lowest" in out and "negative is better" in out
    table = report.build_table(folders, metric="all", n_resamples=300)
    cells = {label: table.cell(label, "kvasir_polyp", "hd95") for label in MODELS.values()}
    lowest = min(cells, key=lambda k: cells[k].mean)
    assert lowest == "CLIPSeg-B" and [k for k, c in cells.items() if c.best] == [lowest]
    assert all(c.ci is not None and c.ci[0] <= c.mean <= c.ci[1] and c.unit == "pixels" for c in cells.values())
    assert f"**{cells[lowest].mean:.2f} ± {cells[lowest].std:.2f}**" in out
    # gains in HD95: the ensemble's distance minus its VLSM's; Ensemble-C against the lower of the two VLSMs
    assert cells["CLIPSeg-B"].gain == pytest.approx(cells["CLIPSeg-B"].mean - cells["CLIPSeg"].mean)
    assert cells["Ensemble-C"].gain_over == "CLIPSeg"  # (HD95 12 < BiomedCLIPSeg's 20)
    nsd = {label: table.cell(label, "kvasir_polyp", "nsd") for label in MODELS.values()}
    assert [k for k, c in nsd.items() if c.best] == [max(nsd, key=lambda k: nsd[k].mean)]
    dice = table.cell("Ensemble-C", "kvasir_polyp", "dice")
    assert dice.gain_over == max(("CLIPSeg", "BiomedCLIPSeg"),
                                 key=lambda k: table.cell(k, "kvasir_polyp", "dice").mean)


def test_wilcoxon_and_csv_of_every_metric(folders, tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["table", *map(str, folders), "--metric", "all", "--no-ci", "--compare", "CLIPSeg", "CLIPSeg-B",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "HD95 (lower is better) on the same images" in printed and "NSD (%) on the same images" in printed
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    hd = [r for r in rows if r["metric"] == "hd95"]
    assert len(hd) == 5 and {r["unit"] for r in hd} == {"pixels"} and {r["unit"] for r in rows if r["metric"] != "hd95"} == {"%"}
    assert any(r["wilcoxon_p"] for r in hd)
    assert main(["table", *map(str, folders), "--metric", "hd95", "--no-ci", "-o", str(tmp_path / "t.tex")]) == 0
    assert "HD95" in (tmp_path / "t.tex").read_text()


def test_runs_without_the_boundary_metrics(folders, tmp_path, capsys):
    plain = _evaluation(tmp_path / "plain", "cris", "CRIS", 9, boundary=False)
    assert main(["table", str(plain), "--metric", "hd95"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--metric hd95" in err and "--boundary" in err and "\n" not in err
    assert main(["table", *map(str, folders), str(plain), "--metric", "all", "--no-ci"]) == 0
    out = capsys.readouterr().out
    assert "| CRIS |" in out and "No HD95/NSD for CRIS" in out
    assert main(["table", str(plain), "--metric", "both", "--no-ci"]) == 0  # old per_case.csv files still read


def test_the_summary_and_per_case_must_agree_on_hd95(folders):
    import json

    summary = folders[0] / "summary.json"
    data = json.loads(summary.read_text())
    data["results"][0]["hd95_mean"] += 1
    summary.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="hd95_mean is"):
        report.build_table([folders[0]], metric="dice", ci=False)
