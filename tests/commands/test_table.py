"""`vlsm table` through vlsm.cli.main on hand-made run folders."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from evaluation.test_report import SCORES, make_run
from vlsm.cli import main


@pytest.fixture
def runs(tmp_path):
    return [str(make_run(tmp_path / "runs", name, label, per)) for (name, label), per in SCORES.items()]


def test_table_markdown_written_and_printed(runs, tmp_path, capsys):
    out = tmp_path / "table.md"
    assert main(["table", *runs, "-o", str(out), "--bootstrap", "500"]) == 0
    printed = capsys.readouterr().out
    text = out.read_text()
    assert text.startswith("| Model | Kvasir-SEG | ClinicDB |")
    assert text in printed and f"wrote {out}" in printed
    d = SCORES[("unet-d", "UNet-D")]["kvasir_polyp"] * 100
    assert f"| UNet-D | {d.mean():.2f} ± {d.std():.2f} [" in text
    assert "500 resamples" in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_table_refuses_to_overwrite(runs, tmp_path, capsys):
    out = tmp_path / "table.md"
    out.write_text("mine")
    assert main(["table", *runs, "-o", str(out), "--no-ci"]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "mine"
    assert main(["table", *runs, "-o", str(out), "--no-ci", "--overwrite"]) == 0
    assert out.read_text().startswith("| Model |")


def test_table_formats_by_extension_and_flag(runs, tmp_path):
    tex = tmp_path / "t.tex"
    assert main(["table", *runs, "-o", str(tex), "--no-ci", "--metric", "both"]) == 0
    assert "\\begin{tabular}{lcccc}" in tex.read_text() and "\\textbf{" in tex.read_text()
    csv_path = tmp_path / "t.csv"
    assert main(["table", *runs, "-o", str(csv_path), "--no-ci", "--metric", "iou"]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert {r["metric"] for r in rows} == {"iou"} and len(rows) == 10
    txt = tmp_path / "t.txt"
    assert main(["table", *runs, "-o", str(txt), "--format", "csv", "--no-ci"]) == 0
    assert txt.read_text().startswith("model,label,dataset")


def test_table_compare_and_options(runs, tmp_path, capsys):
    assert main(["table", *runs, "--no-ci", "--compare", "Ensemble-C", "UNet-D", "--no-gains", "--digits", "1"]) == 0
    out = capsys.readouterr().out
    assert "Paired Wilcoxon signed-rank test (two-sided), Ensemble-C vs UNet-D" in out
    assert "(+" not in out.split("\n\n")[0]
    d = SCORES[("unet-d", "UNet-D")]["kvasir_polyp"] * 100
    assert f"{d.mean():.1f} ± {d.std():.1f}" in out
    assert main(["table", *runs, "--ci-method", "bca", "--bootstrap", "300", "--confidence", "0.9"]) == 0
    assert "90% BCa bootstrap CI" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["-o", "t.html"], "--format md|tex|csv"),
    (["--format", "md"], "--format needs -o"),
    (["--bootstrap", "0"], "--bootstrap must be at least 1"),
    (["--compare", "UNet-D", "CRIS"], "no model 'CRIS'"),
])
def test_table_user_errors(runs, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["table", *runs, *extra]) == 2
    assert message in capsys.readouterr().err


def test_table_mismatch_is_reported_with_both_files(tmp_path, capsys):
    run = make_run(tmp_path, "unet-d", "UNet-D", {"busi": np.full(12, 0.5)})
    s = json.loads((run / "summary.json").read_text())
    s["results"][0]["iou_mean"] = 0.9
    (run / "summary.json").write_text(json.dumps(s))
    assert main(["table", str(run)]) == 2
    err = capsys.readouterr().err
    assert str(run / "summary.json") in err and "per_case.csv" in err and "iou_mean" in err
