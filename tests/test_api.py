"""vlsm.api does what each command does: the same files and numbers from a function call as from the command
line (the commands only parse, call vlsm.api and print); and what a failed predict or evaluate leaves behind."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import yaml

import vlsm
from naming import raises_naming
from tiny_runs import TRAIN
from vlsm import api
from vlsm.cli import main
from vlsm.data.synthetic import make_synthetic_dataset

# the settings of tiny_runs.TRAIN, as an API call's overrides
SETTINGS = ["model.name=unet-d", "model.preset=tiny", "model.overrides.image_size=32", "train.batch_size=4",
            "train.num_workers=0", "train.progress_bar=false", "train.seed=1", "train.epochs=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "synthetic_polyp", n_train=6, n_val=2, n_test=4,
                                  image_size=40, seed=5)


@pytest.fixture(scope="module")
def data2(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn2") / "other_polyp", n_train=1, n_val=1, n_test=3,
                                  image_size=36, seed=6)


@pytest.fixture(scope="module")
def cli_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "unetd"
    assert main(TRAIN + ["--data", str(data), "--out", str(out), "--epochs", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def api_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "unetd"
    return api.train(overrides=[*SETTINGS, f"data.paths=[{data}]", f"out={out}"])


def _bytes(folder, name="per_case.csv"):
    return (folder / name).read_bytes()


def _results(folder):
    return [{k: v for k, v in r.items() if k != "per_case"} for r in json.loads(_bytes(folder, "summary.json"))["results"]]


def test_train(cli_run, api_run):
    assert api_run.path.name == "unetd" and api_run.summary["train"]["epochs_run"] == 1
    assert _results(api_run.path) == _results(cli_run)
    assert _bytes(api_run.path / "eval" / "synthetic_polyp-test") == _bytes(cli_run / "eval" / "synthetic_polyp-test")
    assert api_run.results[0]["label"] == "UNet-D [tiny]" and "synthetic_polyp" in api_run.table()
    assert vlsm.train is api.train  # the main names are re-exported from vlsm


def test_evaluate(cli_run, data, data2, tmp_path, capsys):
    assert main(["evaluate", str(cli_run), "--data", str(data), str(data2), "-o", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    done = api.evaluate(cli_run, data=[data, data2], out=tmp_path / "api")
    assert [f.name for f in done.folders] == ["synthetic_polyp-test", "other_polyp-test"]
    for folder in done.folders:
        assert _bytes(folder) == _bytes(tmp_path / "cli" / folder.name)
        assert _results(folder) == _results(tmp_path / "cli" / folder.name)
    assert done.table() in printed
    assert done.labels == ["UNet-D [tiny]"] * 2 and [r.n for r in done.results] == [4, 3]


def test_predict(cli_run, data, tmp_path, capsys):
    assert main(["predict", "-i", str(data / "images"), "-o", str(tmp_path / "cli"), "--checkpoint", str(cli_run),
                 "--probabilities"]) == 0
    done = api.predict(data / "images", tmp_path / "api", cli_run, probabilities=True)
    assert capsys.readouterr().out.strip() == f"wrote {len(done.masks)} mask(s) to {tmp_path / 'cli'}"
    assert len(done.masks) == 12 and len(done.files) == 24
    assert sorted(p.name for p in (tmp_path / "api").iterdir()) == sorted(p.name for p in (tmp_path / "cli").iterdir())
    for path in done.files:
        assert path.read_bytes() == (tmp_path / "cli" / path.name).read_bytes(), path.name


def test_sweep(data, cli_run, tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"name": "unetd", "model": {"name": "unet-d", "preset": "tiny",
                                                              "overrides": {"image_size": 32}},
                                   "data": {"paths": [str(data)]},
                                   "train": {"epochs": 1, "batch_size": 4, "num_workers": 0, "progress_bar": False,
                                             "seed": 1}}))
    lines = []
    done = api.sweep([exp], out_root=tmp_path / "runs", dry_run=True, echo=lines.append)
    assert main(["sweep", str(exp), "--out-root", str(tmp_path / "runs"), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == lines and [i.status for i in done.items] == ["new"]
    done = api.sweep([exp], out_root=tmp_path / "runs", echo=lines.append)
    assert done.ok and done.trained == [tmp_path / "runs" / "unetd"]
    # the same results as `vlsm train` with these settings, and the command line now finds the run done
    assert _bytes(tmp_path / "runs" / "unetd" / "eval" / "synthetic_polyp-test") == \
        _bytes(cli_run / "eval" / "synthetic_polyp-test")
    assert main(["sweep", str(exp), "--out-root", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out.startswith("done")
    assert api.sweep([exp], out_root=tmp_path / "runs", echo=lines.append).finished == [tmp_path / "runs" / "unetd"]


def test_data_commands(data, tmp_path, capsys):
    assert api.data_synthetic(tmp_path / "api", n_train=2, n_val=1, n_test=1, image_size=24) == tmp_path / "api"
    assert main(["data", "synthetic", str(tmp_path / "cli"), "--n-train", "2", "--n-val", "1", "--n-test", "1",
                 "--image-size", "24"]) == 0
    files = sorted(p.relative_to(tmp_path / "api") for p in (tmp_path / "api").rglob("*") if p.is_file())
    assert files and all((tmp_path / "api" / f).read_bytes() == (tmp_path / "cli" / f).read_bytes() for f in files)
    capsys.readouterr()

    assert main(["data", "check", str(data), "--no-prompts"]) == 0
    printed = capsys.readouterr().out
    report = api.data_check(data, prompts=False)
    assert report.ok and _without_seconds(printed) == _without_seconds(report.format())

    assert main(["data", "prompts", str(data), "--split", "test", "--limit", "2", "--prompt", "p1"]) == 0
    printed = capsys.readouterr().out.splitlines()
    listing = api.data_prompts(data, split="test", limit=2, prompt="p1")
    assert printed[0] == f"{listing.total} case(s) in test" and listing.total == 4
    assert [name for name, _ in listing.cases] == [printed[1], printed[3]]
    assert printed[2] == f"  p1: {listing.cases[0][1]['p1']!r}"

    plain = tmp_path / "plain"
    for sub in ("images", "masks"):
        (plain / sub).mkdir(parents=True)
        for p in sorted((data / sub).iterdir())[:4]:
            (plain / sub / p.name).write_bytes(p.read_bytes())
    converted = api.data_convert("folder", plain, tmp_path / "conv-api", class_name="polyp")
    assert main(["data", "convert", "folder", str(plain), str(tmp_path / "conv-cli"), "--class-name", "polyp"]) == 0
    assert sum(converted.counts.values()) == 4
    for split in ("train", "val", "test"):
        assert (tmp_path / "conv-api" / "anns" / f"{split}.json").read_text() == \
            (tmp_path / "conv-cli" / "anns" / f"{split}.json").read_text()


def _without_seconds(text: str) -> list[str]:
    import re

    return [re.sub(r"[0-9.]+ ?s\b", "", line) for line in text.strip().splitlines()]


def test_table_and_figure(cli_run, api_run, data, tmp_path, capsys):
    assert main(["table", str(cli_run), "--bootstrap", "200", "-o", str(tmp_path / "cli.md")]) == 0
    printed = capsys.readouterr().out
    done = api.table([cli_run], bootstrap=200, output=tmp_path / "api.md")
    assert done.path.read_text() == (tmp_path / "cli.md").read_text() and done.to_markdown() in printed

    names = ["synth_0008", "synth_0009"]
    assert main(["figure", str(cli_run), "--images", *names, "-o", str(tmp_path / "cli.png"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    info = api.figure([cli_run], names, tmp_path / "api.png", device="cpu")
    assert f"({info.width_px}x{info.height_px} px at 150 dpi)" in printed
    scores = ", ".join(f"{n} {100 * d:.2f}" for n, d in info.dice["UNet-D [tiny]"].items())
    assert f"UNet-D [tiny]: Dice (%) {scores}" in printed


def test_export(cli_run, tmp_path, capsys):
    assert main(["export", str(cli_run), str(tmp_path / "cli")]) == 0
    done = api.export(cli_run, tmp_path / "api")
    assert done.format == "onnx" and done.files == sorted(p.name for p in (tmp_path / "cli").iterdir())
    ours, theirs = (json.loads((tmp_path / d / "preprocess.json").read_text()) for d in ("api", "cli"))
    assert ours == theirs and done.max_abs_logit_diff == ours["max_abs_logit_diff_vs_torch"]
    assert f"exported {done.label} to {tmp_path / 'cli'}/" in capsys.readouterr().out
    assert main(["export", str(cli_run), str(tmp_path / "cli-s"), "--standalone"]) == 0
    done = api.export(cli_run, tmp_path / "api-s", standalone=True)
    assert done.format == "standalone" and done.files == sorted(p.name for p in (tmp_path / "cli-s").iterdir())
    assert _bytes(tmp_path / "api-s", "model.safetensors") == _bytes(tmp_path / "cli-s", "model.safetensors")


def test_models_bench_and_convert_checkpoint(tmp_path, capsys):
    from vlsm.models.unet_d import REFERENCE_RENAMES

    assert main(["models", "unet-d", "clipseg-b", "--preset", "tiny"]) == 0
    printed = capsys.readouterr().out
    rows = api.models(["unet-d", "clipseg-b"], preset="tiny")
    assert [r.variant for r in rows] == [None, "fixed", "reference"]
    for r in rows:
        assert f"{r.total / 1e6:10.2f} {r.trainable / 1e6:14.2f}  {r.description}" in printed

    argv = ["bench", "unet-d", "--preset", "tiny", "--img-size", "32", "--steps", "1", "--warmup", "0", "--device",
            "cpu", "--json"]
    assert main(argv) == 0
    [theirs] = json.loads(capsys.readouterr().out)
    [ours] = api.bench(["unet-d"], preset="tiny", image_size=32, steps=1, warmup=0, device="cpu")
    for key in ("model", "image_size", "batch_size", "params_total", "params_trainable", "checkpoint_mb"):
        assert ours.to_dict()[key] == theirs[key], key

    model = vlsm.create_model("unet-d", preset="tiny")
    inverse = {v: k for k, v in REFERENCE_RENAMES.items()}
    ref = {}
    for key, value in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        ref[f"{inverse[module]}.{leaf}"] = value
    src = tmp_path / "ref.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in ref.items()}}, src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["convert-checkpoint", "--model", "unet-d", "--preset", "tiny", str(src),
                     str(tmp_path / "cli.safetensors")]) == 0
        converted = api.convert_checkpoint("unet-d", src, tmp_path / "api.safetensors", preset="tiny")
    assert _bytes(tmp_path, "api.safetensors") == _bytes(tmp_path, "cli.safetensors")
    assert all(torch.equal(v, converted.state_dict()[k]) for k, v in model.state_dict().items())


def test_demo(data, tmp_path, capsys):
    argv = ["--data", str(data), "--epochs", "1", "--img-size", "32", "--models", "unet-d:tiny"]
    assert main(["demo", "--out", str(tmp_path / "cli"), *argv]) == 0
    printed = capsys.readouterr().out
    done = api.demo(data=data, out=tmp_path / "api", epochs=1, img_size=32, models=["unet-d:tiny"], progress=False)
    run = "runs/unet-d-tiny/eval/synthetic_polyp-test"
    assert _bytes(tmp_path / "api" / run) == _bytes(tmp_path / "cli" / run)
    assert done.table.read_text() == (tmp_path / "cli" / "results.md").read_text()
    assert done.figure.is_file() and f"vlsm serve {tmp_path / 'cli' / 'runs' / 'unet-d-tiny'}" in printed


def test_demo_config_is_the_documented_experiment(data, tmp_path):
    """The demo's experiment is `vlsm train`'s with its flags: no early stopping within the epochs."""
    from vlsm.api.demos import demo_config

    cfg = demo_config("clipseg", "tiny", data, tmp_path / "r", epochs=7, minutes=0.5, batch_size=3, seed=2,
                      progress=False)
    assert (cfg.model.name, cfg.model.preset, cfg.model.overrides) == ("clipseg", "tiny", {"image_size": 64})
    assert cfg.data.paths == [str(data)] and cfg.data.prompt == "p1" and cfg.data.cache
    t = cfg.train
    assert (t.epochs, t.max_minutes, t.batch_size, t.lr, t.num_workers, t.seed, t.progress_bar) == \
        (7, 0.5, 3, 3e-3, 0, 2, False)
    assert t.early_stopping_patience == 7 and cfg.eval.batch_size == 4


def test_serve_passes_its_keywords_on(monkeypatch):
    import vlsm.serve

    seen = {}
    monkeypatch.setattr(vlsm.serve, "serve", lambda runs, **kw: seen.update(runs=runs, **kw) or "app")
    assert api.serve(["r1"], host="127.0.0.1", port=1234, trust_checkpoint=True) == "app"
    assert seen == {"runs": ["r1"], "host": "127.0.0.1", "port": 1234, "trust_checkpoint": True}


# ------------------------------------------------------------------------------ failures leave nothing behind
def test_failed_predict_leaves_nothing_and_keeps_earlier_predictions(cli_run, data, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    sources = sorted((data / "images").iterdir())[:5]
    for p in sources:
        (images / p.name).write_bytes(p.read_bytes())
    victim = images / sources[2].name  # a corrupt image in the middle of good ones
    good = victim.read_bytes()
    victim.write_bytes(good[:60])
    out = tmp_path / "nested" / "pred"
    assert main(["predict", "-i", str(images), "-o", str(out), "--checkpoint", str(cli_run)]) == 2
    assert victim.name in capsys.readouterr().err
    assert not (tmp_path / "nested").exists()  # no folder, no marker, no staging folder
    with pytest.raises(Exception, match=victim.name):
        api.predict(images, out, cli_run)
    assert not (tmp_path / "nested").exists()

    victim.write_bytes(good)
    earlier = api.predict(images, out, cli_run)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(earlier.masks) == 5 and ".vlsm-predictions" in before
    victim.write_bytes(good[:60])
    assert main(["predict", "-i", str(images), "-o", str(out), "--checkpoint", str(cli_run), "--overwrite",
                 "--threshold", "0.9"]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["pred"]


def test_failed_evaluate_leaves_nothing(cli_run, data, data2, tmp_path, monkeypatch, capsys):
    """Scoring fails in the second of two evaluations (an unreadable mask found mid-way): neither is written."""
    import vlsm.evaluation.evaluate as evaluation

    calls = []
    real = evaluation.load_mask

    def flaky(path):
        calls.append(path)
        if len(calls) == 6:  # the 2nd image of the second dataset
            raise ValueError(f"cannot read {path}: damaged")
        return real(path)

    monkeypatch.setattr(evaluation, "load_mask", flaky)
    out = tmp_path / "eval"
    assert main(["evaluate", str(cli_run), "--data", str(data), str(data2), "-o", str(out)]) == 2
    assert "damaged" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    calls.clear()
    run_eval = cli_run / "eval" / "synthetic_polyp-test"
    before = {p.name: p.read_bytes() for p in run_eval.iterdir()}
    with pytest.raises(ValueError, match="damaged"):
        api.evaluate(cli_run, data=[data, data2], overwrite=True)  # RUN/eval/<each>-test: neither written
    assert sorted(p.name for p in (cli_run / "eval").iterdir()) == ["synthetic_polyp-test"]
    assert {p.name: p.read_bytes() for p in run_eval.iterdir()} == before


# ------------------------------------------------------------------------------ bad values: one line naming the flag
@pytest.mark.parametrize("argv,needles", [
    (["predict", "-i", "IMAGES", "-o", "OUT", "--checkpoint", "RUN", "--threshold", "1.5"], ["--threshold", "1.5"]),
    (["predict", "-i", "IMAGES", "-o", "OUT", "--checkpoint", "RUN", "--batch-size", "0"], ["--batch-size", "at least 1"]),
    (["predict", "-i", "IMAGES", "-o", "OUT", "--checkpoint", "RUN", "--max-pixels", "0"], ["--max-pixels", "at least 1"]),
    (["evaluate", "RUN", "-o", "OUT", "--threshold", "0"], ["--threshold", "between 0 and 1"]),
    (["figure", "RUN", "--images", "x", "-o", "OUT.png", "--threshold", "1"], ["--threshold", "between 0 and 1"]),
    (["figure", "RUN", "--images", "x", "-o", "OUT.png", "--batch-size", "0"], ["--batch-size", "at least 1"]),
    (["data", "synthetic", "OUT", "--n-train", "-1"], ["--n-train", "at least 0", "-1"]),
    (["data", "synthetic", "OUT", "--n-val", "-3"], ["--n-val", "at least 0"]),
    (["data", "synthetic", "OUT", "--image-size", "8"], ["--image-size", "at least 16"]),
    (["data", "synthetic", "OUT", "--n-train", "0", "--n-val", "0", "--n-test", "0"], ["--n-train", "all 0"]),
])
def test_bad_values_are_one_line_naming_the_flag(cli_run, data, tmp_path, capsys, argv, needles):
    subst = {"IMAGES": str(data / "images"), "RUN": str(cli_run), "OUT": str(tmp_path / "out"),
             "OUT.png": str(tmp_path / "out.png")}
    assert main([subst.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(n in err for n in needles), err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.png").exists()


def test_bad_values_in_python_are_the_same_one_line(cli_run, data, tmp_path):
    with raises_naming(ValueError, "--threshold", "between 0 and 1", "1.5"):
        api.predict(data / "images", tmp_path / "p", cli_run, threshold=1.5)
    with raises_naming(ValueError, "--batch-size", "at least 1", "got 0"):
        api.evaluate(cli_run, out=tmp_path / "e", batch_size=0)
    with raises_naming(ValueError, "--n-train", "at least 0", "-1"):
        api.data_synthetic(tmp_path / "s", n_train=-1)
    assert list(tmp_path.iterdir()) == []
    assert np.isclose(api.evaluate(cli_run, out=tmp_path / "e").results[0].dice_mean,
                      json.loads((cli_run / "summary.json").read_text())["results"][0]["dice_mean"])
