"""End to end on real data: two tiny models trained on Kvasir-SEG (the real-data checks' shared runs), then
`vlsm table` and `vlsm figure`: the table and the figure report exactly what each run's summary.json and
per_case.csv say.
"""
from __future__ import annotations

import csv
import json
import re

import pytest
from PIL import Image

from vlsm.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


@pytest.fixture(scope="module")
def runs(kvasir_runs):
    """Two trained Kvasir runs shared with the real-data learning checks (tests/kvasir_runs.py)."""
    return [kvasir_runs.unet_d(), kvasir_runs.clipseg_prompts()]


def _summary(run):
    s = json.loads((run / "summary.json").read_text())
    [r] = s["results"]
    return s["model"]["label"], r


def test_table_numbers_equal_run_summaries(runs, tmp_path, capsys):
    csv_out, md_out = tmp_path / "table.csv", tmp_path / "table.md"
    assert main(["table", *map(str, runs), "-o", str(csv_out), "--metric", "both", "--bootstrap", "1000",
                 "--compare", "UNet-D", "CLIPSeg"]) == 0
    assert main(["table", *map(str, runs), "-o", str(md_out)]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(csv_out.open()))
    assert len(rows) == 4
    md = md_out.read_text()
    assert md in printed
    for run in runs:
        label, r = _summary(run)
        for metric in ("dice", "iou"):
            [row] = [x for x in rows if x["label"] == label and x["metric"] == metric]
            assert row["dataset"] == "kvasir_polyp" and row["split"] == "test" and int(row["n"]) == r["n"] == 100
            assert float(row["mean_pct"]) == pytest.approx(100 * r[f"{metric}_mean"], abs=1e-5)
            assert float(row["std_pct"]) == pytest.approx(100 * r[f"{metric}_std"], abs=1e-5)
            assert float(row["ci_low_pct"]) <= float(row["mean_pct"]) <= float(row["ci_high_pct"])
            assert row["wilcoxon_p"]
        cell = f"{100 * r['dice_mean']:.2f} ± {100 * r['dice_std']:.2f}"
        assert re.search(rf"\| {re.escape(label)} \| (\*\*)?{re.escape(cell)}", md)


def test_figure_dice_equals_per_case(runs, kvasir_root, tmp_path, capsys):
    label0, r0 = _summary(runs[0])
    with open(runs[0] / r0["per_case"], newline="") as fh:
        names = [row["name"] for row in csv.DictReader(fh)][:2]
    out = tmp_path / "fig.png"
    assert main(["figure", *map(str, runs), "--images", *names, "-o", str(out), "--dpi", "60"]) == 0
    printed = capsys.readouterr().out
    w, h = map(int, re.search(r"\((\d+)x(\d+) px", printed).groups())
    with Image.open(out) as im:
        assert im.size == (w, h)
    for run in runs:
        label, r = _summary(run)
        with open(run / r["per_case"], newline="") as fh:
            per_case = {row["name"]: float(row["dice"]) for row in csv.DictReader(fh)}
        line = next(x for x in printed.splitlines() if x.startswith(f"{label}: Dice (%) "))
        shown = dict(p.rsplit(" ", 1) for p in line.split("Dice (%) ", 1)[1].split(", "))
        for name in names:
            assert float(shown[name]) == pytest.approx(100 * per_case[name], abs=0.006)
