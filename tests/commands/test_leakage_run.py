"""An image listed in two splits (leakage): named in the run's log.txt and summary.json, marked by
`vlsm table`, and left out of training by `--drop-overlap`."""
import json
import shutil

from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset

TRAIN = ["train", "--model", "unet-d", "--preset", "tiny", "--img-size", "32", "--batch-size", "4", "--epochs", "1",
         "--num-workers", "0", "--no-progress", "--seed", "1"]


def test_leakage_is_reported_marked_and_can_be_dropped(tmp_path, capsys):
    src = make_synthetic_dataset(tmp_path / "src" / "leaky", n_train=6, n_val=2, n_test=3, image_size=32, seed=9)
    data = tmp_path / "leaky"
    shutil.copytree(src, data)
    train = json.loads((data / "anns" / "train.json").read_text())
    test = json.loads((data / "anns" / "test.json").read_text())
    (data / "anns" / "test.json").write_text(json.dumps(test + [train[0]]))  # one training image also tested
    leaked = train[0]["img_name"].rsplit(".", 1)[0]

    out = tmp_path / "run"
    assert main(TRAIN + ["--data", str(data), "--out", str(out)]) == 0
    log = (out / "log.txt").read_text()
    assert "leakage" in log and leaked in log
    summary = json.loads((out / "summary.json").read_text())
    assert [leaked] in [names for pairs in summary["leakage"].values() for names in pairs.values()]
    assert summary["train"]["dropped_overlap"] is False

    capsys.readouterr()
    assert main(["table", str(out), "--no-ci"]) == 0
    printed = capsys.readouterr().out
    assert "Leakage: UNet-D [tiny] on leaky" in printed and leaked in printed

    dropped = tmp_path / "dropped"
    assert main(TRAIN + ["--data", str(data), "--out", str(dropped), "--drop-overlap"]) == 0
    log = (dropped / "log.txt").read_text()
    assert "--drop-overlap: leaving out 1 train image(s)" in log and "leaky: 5 train / 2 val" in log
    assert json.loads((dropped / "summary.json").read_text())["train"]["dropped_overlap"] is True
