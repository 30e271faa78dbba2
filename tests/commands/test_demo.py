import json

from vlsm.cli import main


def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "2", "--img-size", "32"]) == 0
    printed = capsys.readouterr().out
    for label in ("UNet-D [tiny]", "CLIPSeg [tiny]", "CLIPSeg-B [tiny]"):
        assert label in printed
        assert label in (out / "results.md").read_text()
    assert (out / "comparison.png").stat().st_size > 10_000
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["clipseg-b-tiny", "clipseg-tiny", "unet-d-tiny"]
    for run in runs:
        summary = json.loads((out / "runs" / run / "summary.json").read_text())
        assert summary["results"][0]["n"] == 12 and summary["train"]["epochs_run"] == 2
    # the demo ends with the command that shows its runs in the web app
    assert f"vlsm serve {out / 'runs' / 'unet-d-tiny'}" in printed and "vlsm-ensemble[serve]" in printed
    # the generated data set is in the medvlsm layout and reused by a second run
    assert (out / "data" / "synthetic_polyp" / "anns" / "test.json").is_file()


def test_demo_on_a_given_dataset(tmp_path):
    from vlsm.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "mine", n_train=4, n_val=2, n_test=3, image_size=32, seed=9)
    out = tmp_path / "demo"
    assert main(["demo", "--data", str(data), "--out", str(out), "--epochs", "1", "--img-size", "32",
                 "--models", "unet-d:tiny"]) == 0
    summary = json.loads((out / "runs" / "unet-d-tiny" / "summary.json").read_text())
    assert summary["results"][0]["dataset"] == "mine" and summary["results"][0]["n"] == 3
    assert not (out / "data").exists()
