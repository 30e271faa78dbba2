"""train -> evaluate -> predict through the CLI on generated data, plus resume and refusals."""
import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naming import refused
from tiny_runs import TRAIN
from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset


@pytest.fixture()
def data(synthetic_data):
    """The session's synthetic dataset (tests/conftest.py): 8 train / 4 val / 5 test images of 48 px."""
    return synthetic_data


@pytest.fixture()
def run_dir(unet_run):
    """The session's tiny UNet-D run (tiny_runs.TRAIN's settings, 2 epochs, --keep-checkpoints all: best.ckpt
    too), read-only."""
    return unet_run


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_run_folder_is_self_describing(run_dir):
    for name in ("config.yaml", "log.txt", "metrics.csv", "summary.json", "checkpoints/best.ckpt",
                 "checkpoints/last.ckpt", "model/vlsm_config.json", "model/model.safetensors"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"]["name"] == "unet-d" and summary["train"]["epochs_run"] == 2
    [result] = summary["results"]
    assert result["dataset"] == "synthetic_polyp" and result["split"] == "test" and result["n"] == 5
    rows = read_csv(run_dir / result["per_case"])
    assert len(rows) == 5
    dice = np.array([float(r["dice"]) for r in rows])
    assert result["dice_mean"] == pytest.approx(dice.mean()) and result["dice_std"] == pytest.approx(dice.std())
    # evaluated at the original size, not the 32 px training size
    assert {(int(r["height"]), int(r["width"])) for r in rows} == {(48, 48)}
    assert len(read_csv(run_dir / "metrics.csv")) == 2
    # the model folder carries a model card with the test results just computed
    card = (run_dir / "model" / "README.md").read_text()
    assert f"{100 * result['dice_mean']:.2f}" in card and "not a medical device" in card.lower()


def test_evaluate_matches_run_summary(run_dir, data, tmp_path):
    """Re-evaluating the run folder, its best checkpoint or its model folder reproduces the run's own
    test scores, image for image."""
    theirs = json.loads((run_dir / "summary.json").read_text())["results"][0]
    expected = {r["name"]: float(r["dice"]) for r in read_csv(run_dir / theirs["per_case"])}
    sources = {"run": [str(run_dir)],
               "ckpt": [str(run_dir / "checkpoints" / "best.ckpt"), "--data", str(data)],
               "model": [str(run_dir / "model"), "--data", str(data)]}
    for label, source in sources.items():
        out = tmp_path / f"eval-{label}"
        assert main(["evaluate", *source, "--split", "test", "-o", str(out)]) == 0, label
        [mine] = json.loads((out / "summary.json").read_text())["results"]
        assert (mine["dataset"], mine["split"], mine["n"]) == ("synthetic_polyp", "test", 5), label
        assert mine["dice_mean"] == pytest.approx(theirs["dice_mean"]), label
        assert mine["iou_mean"] == pytest.approx(theirs["iou_mean"]), label
        got = {r["name"]: float(r["dice"]) for r in read_csv(out / "per_case.csv")}
        assert got == pytest.approx(expected), label


def test_predict_writes_masks_and_never_overwrites(run_dir, data, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["predict", "-i", str(data / "images"), "-o", str(out), "--checkpoint", str(run_dir),
                 "--probabilities", "--overlays"]) == 0
    images = sorted((data / "images").iterdir())
    masks = sorted(p for p in out.glob("*.png") if not p.stem.endswith(("_prob", "_overlay")))
    assert (out / ".vlsm-predictions").is_file()  # the marker: --overwrite replaces predictions only here
    assert [p.stem for p in masks] == [p.stem for p in images]
    m = np.asarray(Image.open(masks[0]))
    assert m.shape == (48, 48) and set(np.unique(m)) <= {0, 255}
    assert (out / f"{images[0].stem}_prob.png").is_file() and (out / f"{images[0].stem}_overlay.png").is_file()
    before = masks[0].stat().st_mtime_ns
    assert main(["predict", "-i", str(data / "images"), "-o", str(out), "--checkpoint", str(run_dir)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert masks[0].stat().st_mtime_ns == before
    assert main(["predict", "-i", str(images[0]), "-o", str(out), "--checkpoint", str(run_dir),
                 "--overwrite"]) == 0


def test_refuses_existing_run_and_resumes(run_dir, data, tmp_path, capsys):
    run_dir = Path(shutil.copytree(run_dir, tmp_path / "unetd"))  # (resumed: a copy of the shared run)
    assert main(TRAIN + ["--data", str(data), "--out", str(run_dir), "--epochs", "3"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(TRAIN + ["--data", str(data), "--out", str(run_dir), "--epochs", "3", "--resume"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["train"]["epochs_run"] == 3
    epochs = [int(r["epoch"]) for r in read_csv(run_dir / "metrics.csv")]
    assert epochs == [0, 1, 2]


def test_unknown_model_lists_valid_names(data, tmp_path, capsys):
    assert main(["train", "--model", "unet-x", "--data", str(data), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'unet-x'" in err and "unet-d" in err and "clipseg" in err
    assert not (tmp_path / "r").exists()


def test_resume_without_checkpoint_is_refused(data, tmp_path, capsys):
    assert main(TRAIN + ["--data", str(data), "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_pooled_training_evaluates_each_dataset_and_cross_test(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a" / "pool_a", n_train=4, n_val=2, n_test=2, image_size=32, seed=4)
    b = make_synthetic_dataset(tmp_path / "b" / "pool_b", n_train=4, n_val=2, n_test=3, image_size=32, seed=5)
    c = make_synthetic_dataset(tmp_path / "c" / "held_out", n_train=1, n_val=1, n_test=4, image_size=32, seed=6)
    out = tmp_path / "pooled"
    assert main(TRAIN + ["--data", str(a), str(b), "--test-data", str(c), "--out", str(out), "--epochs", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    got = {(r["dataset"], r["split"]): r["n"] for r in summary["results"]}
    assert got == {("pool_a", "test"): 2, ("pool_b", "test"): 3, ("held_out", "test"): 4}
    assert "pool_a: 4 train / 2 val, pool_b: 4 train / 2 val" in (out / "log.txt").read_text()


def test_training_refuses_bad_data_or_skips_it(tmp_path, capsys):
    import shutil

    data = make_synthetic_dataset(tmp_path / "src" / "bad_syn", n_train=5, n_val=2, n_test=2, image_size=32,
                                  seed=8)
    bad = tmp_path / "bad_syn"
    shutil.copytree(data, bad)
    train_json = json.loads((bad / "anns" / "train.json").read_text())
    victim = bad / "images" / train_json[0]["img_name"]
    victim.write_bytes(victim.read_bytes()[:40])  # a truncated PNG
    out = tmp_path / "r"
    assert main(TRAIN + ["--data", str(bad), "--out", str(out), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert victim.name in err and "--skip-bad" in err
    assert not out.exists()
    assert main(TRAIN + ["--data", str(bad), "--out", str(out), "--epochs", "1", "--skip-bad"]) == 0
    assert "leaving out 1 of 5 train images" in (out / "log.txt").read_text()


@pytest.mark.slow  # Lightning launches a second process
def test_ddp_on_two_cpu_processes(data, tmp_path):
    """`--devices 2` runs DDP (Lightning re-launches the command); rank 0 alone owns the run folder."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "vlsm.cli", *TRAIN, "--data", str(data), "--out", str(out), "--epochs", "2",
           "--device", "cpu", "--devices", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train"]["devices"] == 2 and summary["results"][0]["n"] == 5
    assert [int(r["epoch"]) for r in read_csv(out / "metrics.csv")] == [0, 1]
    assert "Grad strides" not in proc.stderr


def test_empty_validation_split_is_refused_before_anything_is_written(tmp_path, capsys):
    import shutil

    data = make_synthetic_dataset(tmp_path / "src" / "noval", n_train=3, n_val=1, n_test=1, image_size=32, seed=2)
    noval = tmp_path / "noval"
    shutil.copytree(data, noval)
    (noval / "anns" / "val.json").write_text("[]")  # like medvlsm's colondb_polyp and etis_polyp
    out = tmp_path / "r"
    assert main(TRAIN + ["--data", str(noval), "--out", str(out), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "'val' split has no images" in err and "--test-data" in err
    assert not out.exists()


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(data, tmp_path, capsys):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("important")
    assert main(TRAIN + ["--data", str(data), "--out", str(precious), "--epochs", "1", "--overwrite"]) == 2
    assert "not a vlsm run folder" in capsys.readouterr().err
    assert (precious / "chapter1.tex").read_text() == "important"


def test_plain_folder_with_class_name_prompt(data, tmp_path):
    import shutil

    plain = tmp_path / "plain"
    (plain / "images").mkdir(parents=True)
    (plain / "masks").mkdir()
    for p in (data / "images").iterdir():
        shutil.copy(p, plain / "images" / p.name)
        shutil.copy(data / "masks" / p.name, plain / "masks" / f"{p.stem}_mask.png")
    out = tmp_path / "clip"
    assert main(["train", "--model", "clipseg", "--preset", "tiny", "--data", str(plain), "--out", str(out),
                 "--class-name", "lesion", "--prompt", "p1", "--epochs", "1", "--img-size", "64",
                 "--batch-size", "4", "--num-workers", "0", "--no-progress"]) == 0
    result = json.loads((out / "summary.json").read_text())["results"][0]
    rows = read_csv(out / result["per_case"])
    assert {r["prompt"] for r in rows} == {"lesion"} and result["n"] == len(rows) > 0


def test_wrongly_typed_experiment_file_is_one_line_error(data, tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"model: {{name: unet-d, preset: tiny}}\ndata: {{paths: [{data}]}}\ntrain: {{epochs: '5'}}\n")
    refused(capsys, ["train", "-c", exp, "--out", tmp_path / "r"], re.compile("^vlsm train: error: "),
            f"{exp}: train.epochs", "an integer", "'5'")
    assert not (tmp_path / "r").exists()


def test_malformed_set_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--set", "freeze_encoder"])
    assert info.value.code == 2
    assert "expected KEY=VALUE, got 'freeze_encoder'" in capsys.readouterr().err
