"""Result tables built from hand-made run folders (summary.json + per_case.csv)."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sstats

from naming import raises_naming
from vlsm.evaluation import report, stats

NAMES = [f"case{i:02d}.jpg" for i in range(12)]
RNG = np.random.default_rng(0)
# Per-image Dice of each model on two datasets (fixed for the whole module).
SCORES = {
    ("unet-d", "UNet-D"): {"kvasir_polyp": RNG.uniform(0.5, 0.9, 12), "clinicdb_polyp": RNG.uniform(0.5, 0.9, 12)},
    ("biomedclipseg", "BiomedCLIPSeg"): {"kvasir_polyp": RNG.uniform(0.6, 0.9, 12),
                                         "clinicdb_polyp": RNG.uniform(0.6, 0.8, 12)},
    ("clipseg", "CLIPSeg"): {"kvasir_polyp": RNG.uniform(0.5, 0.8, 12), "clinicdb_polyp": RNG.uniform(0.7, 0.95, 12)},
    ("biomedclipseg-a", "BiomedCLIPSeg-A"): {"kvasir_polyp": RNG.uniform(0.8, 1.0, 12),
                                             "clinicdb_polyp": RNG.uniform(0.6, 0.9, 12)},
    ("ensemble-c", "Ensemble-C"): {"kvasir_polyp": RNG.uniform(0.7, 0.95, 12),
                                   "clinicdb_polyp": RNG.uniform(0.7, 0.95, 12)},
}


def write_result(folder: Path, dataset: str, split: str, dice, *, names=NAMES, sub=None) -> dict:
    """Write per_case.csv under folder[/sub] and return the summary result entry."""
    target = folder / sub if sub else folder
    target.mkdir(parents=True, exist_ok=True)
    dice = np.asarray(dice, dtype=np.float64)
    iou = dice / (2 - dice)
    with (target / "per_case.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "dice", "iou", "gt_area", "pred_area", "height", "width", "prompt"])
        for n, d, j in zip(names, dice, iou):
            w.writerow([n, repr(float(d)), repr(float(j)), 100, 90, 32, 32, "polyp"])
    return {"dataset": dataset, "split": split, "n": len(dice), "dice_mean": float(dice.mean()),
            "dice_std": float(dice.std()), "iou_mean": float(iou.mean()), "iou_std": float(iou.std()),
            "threshold": 0.5, "prompt": "p1",
            "per_case": f"{sub}/per_case.csv" if sub else "per_case.csv"}


def make_run(root: Path, name: str, label: str, per_dataset: dict, split: str = "test") -> Path:
    run = root / f"run-{name}"
    results = [write_result(run, ds, split, d, sub=f"eval/{ds}-{split}") for ds, d in per_dataset.items()]
    model = {"name": name, "preset": "tiny", "variant": None, "label": label}
    (run / "summary.json").write_text(json.dumps({"model": model, "results": results}, indent=2))
    return run


@pytest.fixture
def runs(tmp_path) -> dict:
    return {label: make_run(tmp_path, name, label, per) for (name, label), per in SCORES.items()}


def test_numbers_order_best_and_gains(runs):
    table = report.build_table(list(runs.values())[::-1], ci=False)
    # Rows follow the paper's order whatever the input order.
    assert [r.label for r in table.rows] == ["UNet-D", "CLIPSeg", "BiomedCLIPSeg", "BiomedCLIPSeg-A", "Ensemble-C"]
    assert [c.dataset for c in table.columns] == ["kvasir_polyp", "clinicdb_polyp"]
    for (_name, label), per in SCORES.items():
        for ds, d in per.items():
            cell = table.cell(label, ds)
            assert cell.mean == pytest.approx(d.mean() * 100)
            assert cell.std == pytest.approx(d.std(ddof=0) * 100)
            assert cell.n == 12 and cell.ci is None
    for ds in ("kvasir_polyp", "clinicdb_polyp"):
        means = {label: per[ds].mean() for (_, label), per in SCORES.items()}
        winner = max(means, key=means.get)
        assert [r.label for r in table.rows if r.cells[report.Column(ds, "test", "dice")].best] == [winner]
        # Gains in points: A over BiomedCLIPSeg, C over the better of BiomedCLIPSeg and CLIPSeg.
        a = table.cell("BiomedCLIPSeg-A", ds)
        assert a.gain == pytest.approx((means["BiomedCLIPSeg-A"] - means["BiomedCLIPSeg"]) * 100)
        assert a.gain_over == "BiomedCLIPSeg"
        c = table.cell("Ensemble-C", ds)
        better = max(("BiomedCLIPSeg", "CLIPSeg"), key=means.get)
        assert c.gain == pytest.approx((means["Ensemble-C"] - means[better]) * 100)
        assert c.gain_over == better
        assert table.cell("UNet-D", ds).gain is None
    # The two datasets have different "better" VLSMs for Ensemble-C in this fixture.
    assert table.cell("Ensemble-C", "kvasir_polyp").gain_over != table.cell("Ensemble-C", "clinicdb_polyp").gain_over


def test_markdown_cells(runs):
    table = report.build_table(runs.values(), ci=False)
    md = table.to_markdown()
    lines = md.splitlines()
    assert lines[0] == "| Model | Kvasir-SEG | ClinicDB |"
    d = SCORES[("unet-d", "UNet-D")]["kvasir_polyp"] * 100
    unet = next(line for line in lines if line.startswith("| UNet-D |"))
    assert f"{d.mean():.2f} ± {d.std():.2f}" in unet
    best = next(r for r in table.rows if r.cells[report.Column("kvasir_polyp", "test", "dice")].best)
    cell = best.cells[report.Column("kvasir_polyp", "test", "dice")]
    assert f"**{cell.mean:.2f} ± {cell.std:.2f}**" in md
    a = table.cell("BiomedCLIPSeg-A", "kvasir_polyp")
    assert f"({stats.format_gain(a.gain)})" in md
    assert "population std" in md and "better of BiomedCLIPSeg and CLIPSeg" in md
    assert "Images per dataset: Kvasir-SEG 12, ClinicDB 12." in md


def test_bootstrap_ci_in_cells(runs):
    table = report.build_table(runs.values(), ci=True, n_resamples=2000, seed=3)
    d = SCORES[("clipseg", "CLIPSeg")]["clinicdb_polyp"] * 100
    cell = table.cell("CLIPSeg", "clinicdb_polyp")
    ref = sstats.bootstrap((d,), np.mean, n_resamples=2000, method="percentile", **stats.scipy_rng_kwargs(3))
    assert cell.ci == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert cell.ci[0] < cell.mean < cell.ci[1]
    assert stats.format_ci(*cell.ci) in table.to_markdown()
    assert "95% percentile bootstrap CI of the mean (2000 resamples" in table.to_markdown()


def test_iou_and_both(runs):
    t_iou = report.build_table(runs.values(), metric="iou", ci=False)
    d = SCORES[("unet-d", "UNet-D")]["kvasir_polyp"]
    assert t_iou.cell("UNet-D", "kvasir_polyp").mean == pytest.approx((d / (2 - d)).mean() * 100)
    both = report.build_table(runs.values(), metric="both", ci=False)
    assert [(c.dataset, c.metric) for c in both.columns] == [
        ("kvasir_polyp", "dice"), ("kvasir_polyp", "iou"), ("clinicdb_polyp", "dice"), ("clinicdb_polyp", "iou")]
    assert both.cell("UNet-D", "kvasir_polyp", "iou").mean == t_iou.cell("UNet-D", "kvasir_polyp").mean
    assert both.to_markdown().splitlines()[0].startswith("| Model | Kvasir-SEG Dice | Kvasir-SEG IoU |")
    tex = both.to_latex()
    assert "\\multicolumn{2}{c}{Kvasir-SEG}" in tex and "\\cmidrule(lr){2-3}" in tex


def test_wilcoxon_comparison(runs):
    table = report.build_table(runs.values(), ci=False, compare=("BiomedCLIPSeg-A", "biomedclipseg"))
    assert len(table.comparisons) == 2
    for comp in table.comparisons:
        a = SCORES[("biomedclipseg-a", "BiomedCLIPSeg-A")][comp.dataset]
        b = SCORES[("biomedclipseg", "BiomedCLIPSeg")][comp.dataset]
        ref = sstats.wilcoxon(a, b)
        assert (comp.statistic, comp.pvalue) == pytest.approx((float(ref.statistic), float(ref.pvalue)))
        assert comp.n == 12 and comp.mean_diff == pytest.approx((a.mean() - b.mean()) * 100)
    md = table.to_markdown()
    assert "Paired Wilcoxon signed-rank test (two-sided), BiomedCLIPSeg-A vs BiomedCLIPSeg" in md
    assert stats.format_pvalue(table.comparisons[0].pvalue) in md
    rows = list(csv.DictReader(table.to_csv().splitlines()))
    a_rows = [r for r in rows if r["label"] == "BiomedCLIPSeg-A"]
    assert {r["compare_with"] for r in a_rows} == {"BiomedCLIPSeg"}
    assert float(a_rows[0]["wilcoxon_p"]) == pytest.approx(table.comparisons[0].pvalue, rel=1e-5)
    assert "Wilcoxon" in table.to_latex()


def test_wilcoxon_needs_the_same_images(tmp_path):
    r1 = make_run(tmp_path, "clipseg", "CLIPSeg", {"kvasir_polyp": np.full(12, 0.8)})
    other = NAMES[:-1] + ["stranger.jpg"]
    run = tmp_path / "run-unet"
    res = write_result(run, "kvasir_polyp", "test", np.full(12, 0.7), names=other)
    (run / "summary.json").write_text(json.dumps({"model": {"name": "unet-d", "label": "UNet-D"}, "results": [res]}))
    with raises_naming(ValueError, re.compile(r"CLIPSeg\b.*case11\.jpg.*UNet-D\b.*stranger\.jpg")):
        report.build_table([r1, run], ci=False, compare=("CLIPSeg", "UNet-D"))
    table = report.build_table([r1, run], ci=False)
    assert any("not evaluated on the same images" in n for n in table.notes)


def test_compare_unknown_model(runs):
    with raises_naming(ValueError, "'CRIS'", "UNet-D, CLIPSeg"):
        report.build_table(runs.values(), ci=False, compare=("CRIS", "UNet-D"))


def test_latex_and_csv(runs):
    table = report.build_table(runs.values(), ci=True, n_resamples=200)
    tex = table.to_latex()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\begin{tabular}{lcc}" in tex
    assert tex.count("\\textbf{") == 2  # one best per column
    d = SCORES[("unet-d", "UNet-D")]["kvasir_polyp"] * 100
    assert f"{d.mean():.2f} $\\pm$ {d.std():.2f}" in tex
    assert "Kvasir-SEG & ClinicDB" in tex
    rows = list(csv.DictReader(table.to_csv().splitlines()))
    assert len(rows) == 10
    r = next(r for r in rows if r["label"] == "UNet-D" and r["dataset"] == "kvasir_polyp")
    assert float(r["mean_pct"]) == pytest.approx(d.mean(), abs=1e-6)
    assert float(r["std_pct"]) == pytest.approx(d.std(), abs=1e-6)
    assert float(r["ci_low_pct"]) < float(r["mean_pct"]) < float(r["ci_high_pct"])
    assert r["model"] == "unet-d" and r["metric"] == "dice" and r["split"] == "test"
    ens = next(r for r in rows if r["label"] == "BiomedCLIPSeg-A" and r["dataset"] == "kvasir_polyp")
    assert float(ens["gain_points"]) == pytest.approx(table.cell("BiomedCLIPSeg-A", "kvasir_polyp").gain, abs=1e-6)
    assert table.render("md") == table.to_markdown()
    with pytest.raises(ValueError, match="unknown table format"):
        table.render("html")


def test_latex_escapes_labels(tmp_path):
    run = make_run(tmp_path, "my_model", "my_model 50%", {"my_data": np.full(12, 0.5)})
    tex = report.build_table([run], ci=False).to_latex()
    assert "my\\_model 50\\%" in tex and "my\\_data" in tex


def test_gains_can_be_switched_off_and_need_the_reference(runs):
    table = report.build_table(runs.values(), ci=False, gains=False)
    assert all(c.gain is None for r in table.rows for c in r.cells.values())
    only_ens = report.build_table([runs["BiomedCLIPSeg-A"], runs["UNet-D"]], ci=False)
    assert only_ens.cell("BiomedCLIPSeg-A", "kvasir_polyp").gain is None
    assert "(+x)" not in only_ens.to_markdown()


def test_ties_are_all_bold_and_single_model_not_bold(tmp_path):
    r1 = make_run(tmp_path, "unet-d", "UNet-D", {"busi": np.full(12, 0.75)})
    r2 = make_run(tmp_path, "cris", "CRIS", {"busi": np.full(12, 0.75)})
    table = report.build_table([r1, r2], ci=False)
    assert table.cell("UNet-D", "busi").best and table.cell("CRIS", "busi").best
    assert [r.label for r in table.rows] == ["UNet-D", "CRIS"]
    assert not report.build_table([r1], ci=False).cell("UNet-D", "busi").best


def test_unknown_models_and_datasets_come_after_paper_ones(tmp_path):
    runs = [make_run(tmp_path, n, lab, {ds: np.full(12, 0.5)}) for n, lab, ds in [
        ("zeta", "Zeta", "zzz_data"), ("alpha", "alpha", "kvasir_polyp"), ("cris", "CRIS", "aaa_data"),
        ("unet-d", "UNet-D [tiny]", "busi")]]
    table = report.build_table(runs, ci=False)
    assert [r.label for r in table.rows] == ["UNet-D [tiny]", "CRIS", "alpha", "Zeta"]
    assert [c.dataset for c in table.columns] == ["kvasir_polyp", "busi", "aaa_data", "zzz_data"]


def test_eval_folders_and_summary_files_are_accepted(tmp_path):
    run = make_run(tmp_path, "clipseg", "CLIPSeg", {"kvasir_polyp": SCORES[("clipseg", "CLIPSeg")]["kvasir_polyp"]})
    # A standalone evaluation folder (per_case.csv beside its summary.json).
    ev = tmp_path / "eval-unet"
    res = write_result(ev, "kvasir_polyp", "test", np.full(12, 0.6))
    (ev / "summary.json").write_text(json.dumps({"model": {"name": "unet-d", "label": "UNet-D"}, "results": [res]}))
    table = report.build_table([run / "summary.json", ev], ci=False)
    assert table.cell("UNet-D", "kvasir_polyp").mean == pytest.approx(60.0)
    # A run folder without a top-level summary falls back to its eval/*/summary.json files.
    sub = run / "eval" / "kvasir_polyp-test"
    res2 = json.loads((run / "summary.json").read_text())["results"][0]
    res2["per_case"] = "per_case.csv"
    (sub / "summary.json").write_text(json.dumps({"model": {"name": "clipseg", "label": "CLIPSeg"}, "results": [res2]}))
    (run / "summary.json").unlink()
    assert report.build_table([run], ci=False).cell("CLIPSeg", "kvasir_polyp").n == 12


def test_other_splits_are_named(tmp_path):
    run = make_run(tmp_path, "unet-d", "UNet-D", {"kvasir_polyp": np.full(12, 0.5)}, split="val")
    table = report.build_table([run], ci=False)
    assert "Kvasir-SEG (val)" in table.to_markdown()
    assert table.cell("UNet-D", "kvasir_polyp", split="val").mean == pytest.approx(50.0)


def test_duplicate_model_dataset_is_an_error_naming_both(tmp_path):
    r1 = make_run(tmp_path / "a", "clipseg", "CLIPSeg", {"kvasir_polyp": np.full(12, 0.5)})
    r2 = make_run(tmp_path / "b", "clipseg", "CLIPSeg", {"kvasir_polyp": np.full(12, 0.6)})
    with pytest.raises(ValueError) as err:
        report.build_table([r1, r2], ci=False)
    msg = str(err.value)
    assert str(r1 / "summary.json") in msg and str(r2 / "summary.json") in msg and "Pass only one" in msg
    with pytest.raises(ValueError, match="given twice"):
        report.build_table([r1, r1], ci=False)
    # A run folder together with one of its own evaluation folders counts its results twice.
    sub = r1 / "eval" / "kvasir_polyp-test"
    res = json.loads((r1 / "summary.json").read_text())["results"][0]
    (sub / "summary.json").write_text(json.dumps({"model": {"name": "clipseg", "label": "CLIPSeg"},
                                                  "results": [{**res, "per_case": "per_case.csv"}]}))
    with raises_naming(ValueError, "'CLIPSeg'", str(r1 / "summary.json"), str(sub / "summary.json"), "Pass only one"):
        report.build_table([r1, sub], ci=False)


def test_same_label_for_different_models_is_an_error(tmp_path):
    r1 = make_run(tmp_path / "a", "clipseg", "Mine", {"kvasir_polyp": np.full(12, 0.5)})
    r2 = make_run(tmp_path / "b", "cris", "Mine", {"busi": np.full(12, 0.6)})
    with raises_naming(ValueError, "'Mine'", "'clipseg'", "'cris'", "distinct labels"):
        report.build_table([r1, r2], ci=False)


def test_mismatched_summary_and_per_case_names_both_files(tmp_path):
    run = make_run(tmp_path, "unet-d", "UNet-D", {"kvasir_polyp": SCORES[("unet-d", "UNet-D")]["kvasir_polyp"]})
    summary = json.loads((run / "summary.json").read_text())
    summary["results"][0]["dice_mean"] += 0.01
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError) as err:
        report.build_table([run], ci=False)
    msg = str(err.value)
    assert str(run / "summary.json") in msg and str(run / "eval/kvasir_polyp-test/per_case.csv") in msg
    assert "dice_mean" in msg and "re-run the evaluation" in msg
    # A std that is the sample std (ddof=1) instead of the population std is also caught.
    d = SCORES[("unet-d", "UNet-D")]["kvasir_polyp"]
    summary["results"][0]["dice_mean"] = float(d.mean())
    summary["results"][0]["dice_std"] = float(d.std(ddof=1))
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="dice_std"):
        report.build_table([run], ci=False)
    summary["results"][0]["dice_std"] = float(d.std())
    summary["results"][0]["n"] = 13
    (run / "summary.json").write_text(json.dumps(summary))
    with raises_naming(ValueError, str(run / "summary.json"), "n is 13", "12", "re-run the evaluation"):
        report.build_table([run], ci=False)


@pytest.mark.parametrize("content, match", [
    ("name,dice\na.png,0.5\n", "lacks column"),
    ("name,dice,iou\na.png,0.5,0.3\na.png,0.5,0.3\n", "appears twice"),
    ("name,dice,iou\na.png,x,0.3\n", "not numbers"),
    ("name,dice,iou\na.png,nan,0.3\n", r"must be in \[0, 1\]"),
    ("name,dice,iou\na.png,85.0,0.3\n", r"must be in \[0, 1\]"),
    ("name,dice,iou\n", "has no images"),
])
def test_bad_per_case_files(tmp_path, content, match):
    (tmp_path / "per_case.csv").write_text(content)
    res = {"dataset": "d", "split": "test", "n": 1, "dice_mean": 0.5, "dice_std": 0.0, "iou_mean": 0.3,
           "iou_std": 0.0, "per_case": "per_case.csv"}
    (tmp_path / "summary.json").write_text(json.dumps({"model": {"name": "m"}, "results": [res]}))
    with pytest.raises(ValueError, match=match) as err:
        report.build_table([tmp_path], ci=False)
    assert str(tmp_path / "per_case.csv") in str(err.value)


def test_bad_summaries(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.build_table([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no summary.json"):
        report.build_table([tmp_path / "empty"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        report.build_table([bad])
    bad.write_text(json.dumps({"results": []}))
    with pytest.raises(ValueError, match="not a vlsm summary"):
        report.build_table([bad])
    bad.write_text(json.dumps({"model": {"name": "m"}, "results": [{"dataset": "d"}]}))
    with pytest.raises(ValueError, match=r"results\[0\] lacks split, n"):
        report.build_table([bad])
    bad.write_text(json.dumps({"model": {"name": "m"}, "results": [
        {"dataset": "d", "split": "test", "n": 1, "dice_mean": 1, "dice_std": 0, "iou_mean": 1, "iou_std": 0,
         "per_case": "missing/per_case.csv"}]}))
    with pytest.raises(FileNotFoundError, match="missing/per_case.csv does not exist"):
        report.build_table([bad])
    with pytest.raises(ValueError, match="no results given"):
        report.build_table([])
    with pytest.raises(ValueError, match="unknown metric"):
        report.build_table([tmp_path], metric="hd99")


def test_format_for_path():
    assert report.format_for_path("t.md") == "md"
    assert report.format_for_path("t.TEX") == "tex"
    assert report.format_for_path("t.csv") == "csv"
    assert report.format_for_path("t.txt", "csv") == "csv"
    with pytest.raises(ValueError, match="--format"):
        report.format_for_path("t.txt")


def test_paper_model_matching():
    assert report.paper_model("UNet-D [tiny]", "unet-d") == "UNet-D"
    assert report.paper_model("biomedclipseg_a") == "BiomedCLIPSeg-A"
    assert report.paper_model("Mine", "ensemble-c") == "Ensemble-C"
    assert report.paper_model("Mine", "mine") is None


def test_prompt_sweep_gets_one_row_per_prompt(tmp_path):
    run = tmp_path / "run"
    results = []
    for i, prompt in enumerate(("p0", "p1", "p2")):
        res = write_result(run, "kvasir_polyp", "test", np.full(12, 0.5 + i / 10),
                           sub=f"eval/kvasir_polyp-test-{prompt}")
        results.append({**res, "prompt": prompt})
    (run / "summary.json").write_text(json.dumps({"model": {"name": "clipseg", "label": "CLIPSeg"},
                                                  "results": results}))
    table = report.build_table([run], ci=False)
    assert [r.label for r in table.rows] == ["CLIPSeg (p0)", "CLIPSeg (p1)", "CLIPSeg (p2)"]
    assert table.cell("CLIPSeg (p2)", "kvasir_polyp").mean == pytest.approx(70.0)
    assert table.cell("CLIPSeg (p2)", "kvasir_polyp").best


@pytest.mark.parametrize("n", ["12", None, 12.5, float("nan")])
def test_summary_n_must_be_a_whole_number(tmp_path, n):
    run = make_run(tmp_path, "unet-d", "UNet-D", {"busi": np.full(12, 0.5)})
    s = json.loads((run / "summary.json").read_text())
    s["results"][0]["n"] = n
    (run / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ValueError, match="not a whole number"):
        report.build_table([run], ci=False)
