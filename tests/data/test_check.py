"""`check_dataset` / `vlsm data check` on a planted set of bad files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlsm.cli import main
from vlsm.data.check import check_dataset
from vlsm.data.masks import save_mask
from vlsm.data.synthetic import make_synthetic_dataset

H, W = 24, 32


def _good(root: Path, name: str, mask=None):
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(root / "images" / f"{name}.png")
    if mask is None:
        mask = np.zeros((H, W), bool)
        mask[5:15, 8:20] = True
    save_mask(root / "masks" / f"{name}.png", mask)


@pytest.fixture()
def planted(tmp_path) -> Path:
    root = tmp_path / "bad_ds"
    for sub in ("images", "masks", "anns"):
        (root / sub).mkdir(parents=True)
    for n in ("a", "b", "c", "d", "missing_mask", "trunc", "sizemm", "grey", "dark", "jpegnoise"):
        _good(root, n)
    _good(root, "empty", np.zeros((H, W), bool))
    (root / "masks" / "missing_mask.png").unlink()
    data = (root / "images" / "trunc.png").read_bytes()
    (root / "images" / "trunc.png").write_bytes(data[: len(data) // 2])
    save_mask(root / "masks" / "sizemm.png", np.ones((H + 2, W), bool))
    ramp = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))  # a soft mask
    Image.fromarray(ramp, "L").save(root / "masks" / "grey.png")
    Image.fromarray((np.eye(H, W) * 2).astype(np.uint8), "L").save(root / "masks" / "dark.png")  # labels 0/2
    big = np.zeros((H, W), np.uint8)
    big[4:20, 6:26] = 255
    Image.fromarray(big, "L").save(root / "masks" / "jpegnoise.jpg", quality=60)
    (root / "masks" / "jpegnoise.png").unlink()

    def entry(n, mask_ext=".png"):
        return {"img_name": f"{n}.png", "mask_name": f"{n}{mask_ext}", "prompts": {"p0": "", "p1": "x"}}

    train = [entry(n) for n in ("a", "b", "missing_mask", "trunc", "sizemm", "grey", "dark", "empty")]
    train.append(entry("jpegnoise", ".jpg"))
    train.append({"img_name": "ghost.png", "mask_name": "ghost.png"})
    (root / "anns" / "train.json").write_text(json.dumps(train))
    (root / "anns" / "val.json").write_text(json.dumps([entry("a"), entry("c")]))
    (root / "anns" / "test.json").write_text(json.dumps([entry("d"), entry("d")]))
    return root


def _by_kind(issues):
    out = {}
    for i in issues:
        out.setdefault(i.kind, []).append(i)
    return out


def test_planted_problems_are_all_reported(planted):
    report = check_dataset(planted)
    assert not report.ok
    errors = _by_kind(report.errors)
    warns = _by_kind(report.warnings)
    assert set(errors) == {"missing-image", "missing-mask", "unreadable-image", "size-mismatch", "grey-mask",
                           "dark-mask"}
    assert {Path(i.file).name for i in errors["missing-mask"]} == {"missing_mask.png", "ghost.png"}
    assert errors["missing-mask"][0].problem == "file not found"
    assert {Path(i.file).name for i in errors["missing-image"]} == {"ghost.png"}
    assert errors["unreadable-image"][0].file.endswith("images/trunc.png")
    problem = errors["unreadable-image"][0].problem
    assert problem.startswith("cannot be decoded: ") and "truncated" in problem.lower()
    assert errors["size-mismatch"][0].problem == f"mask is {W}x{H + 2}, its image is {W}x{H}"
    assert "grey" in errors["grey-mask"][0].problem and errors["grey-mask"][0].file.endswith("grey.png")
    assert "none above 127" in errors["dark-mask"][0].problem
    assert all(i.fix for i in report.errors)
    assert {Path(i.file).name for i in warns["near-binary"]} == {"jpegnoise.jpg"}
    assert [(i.problem, Path(i.file).name) for i in warns["overlap"]] == [("in both train and val", "a.png")]
    assert [i.problem for i in warns["duplicate"]] == ["d.png is listed more than once"]
    assert report.counts["train"] == {"cases": 10, "empty_masks": 1, "errors": 6}
    assert report.counts["val"] == {"cases": 2, "empty_masks": 0, "errors": 0}
    assert report.counts["test"]["cases"] == 2
    assert report.empty_masks["train"] == ["empty"]
    bad = {p.name for p in report.bad_files()}
    assert bad == {"ghost.png", "missing_mask.png", "trunc.png", "sizemm.png", "grey.png", "dark.png"}
    text = report.format()
    for piece in ("ERRORS (7)", "missing masks: 2", "unreadable or truncated images: 1", "masks that are not binary",
                  "image/mask size mismatch", "leakage: images listed in two splits (1)", "  train & val (1): a",
                  "cases listed twice", "fix:",
                  "empty masks", "FAILED"):
        assert piece in text, piece


def test_leakage_is_reported_by_name_and_strict_makes_it_an_error(planted, tmp_path, capsys):
    for n in ("a", "b", "c", "d"):
        (planted / "masks" / f"{n}.png").write_bytes((planted / "masks" / "a.png").read_bytes())
    clean = tmp_path / "leaky"
    clean.mkdir()
    for sub in ("images", "masks"):
        (clean / sub).mkdir()
        for n in ("a", "b", "c", "d"):
            (clean / sub / f"{n}.png").write_bytes((planted / sub / f"{n}.png").read_bytes())
    (clean / "anns").mkdir()
    entry = lambda n: {"img_name": f"{n}.png", "mask_name": f"{n}.png", "prompts": {"p1": "x"}}  # noqa: E731
    (clean / "anns" / "train.json").write_text(json.dumps([entry("a"), entry("b"), entry("c")]))
    (clean / "anns" / "test.json").write_text(json.dumps([entry("c"), entry("a"), entry("d")]))
    report = check_dataset(clean)
    assert report.ok and report.leakage.names() == ["a", "c"]
    assert report.leakage.to_dict() == {"train/test": ["a", "c"]}
    assert main(["data", "check", str(clean)]) == 0
    out = capsys.readouterr().out
    assert "  train & test (2): a, c" in out and "OK: no errors, but 2 image(s) are in two splits" in out
    assert main(["data", "check", str(clean), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "LEAKAGE" in out and "  train & test (2): a, c" in out and "FAILED: 2 error(s)" in out
    assert {Path(i.file).name for i in check_dataset(clean, strict=True).errors} == {"a.png", "c.png"}


def test_only_some_splits(planted):
    report = check_dataset(planted, splits=["val"])
    assert report.ok and list(report.counts) == ["val"]
    assert any(i.kind == "overlap" for i in report.warnings)  # overlaps concern all splits
    with pytest.raises(FileNotFoundError, match="split.*nope.*available: train, val, test"):
        check_dataset(planted, splits=["nope"])


def test_clean_dataset_is_ok(tmp_path):
    root = make_synthetic_dataset(tmp_path / "syn", n_train=4, n_val=2, n_test=2, image_size=32)
    report = check_dataset(root)
    assert report.ok and not report.errors and not report.warnings
    assert report.counts["train"] == {"cases": 4, "empty_masks": 0, "errors": 0}
    assert report.format().endswith("OK: no errors")


def test_plain_folder_check(tmp_path):
    root = tmp_path / "plain"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for n in ("p1", "p2", "p3"):
        _good(root, n)
    (root / "masks" / "p2.png").unlink()
    report = check_dataset(root)
    assert report.layout == "folder" and not report.ok
    [err] = report.errors
    assert err.kind == "missing-mask" and err.file.endswith("images/p2.png")
    assert sum(c["cases"] for c in report.counts.values()) == 2


def test_cli_exit_codes(planted, tmp_path, capsys):
    assert main(["data", "check", str(planted)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "trunc.png" in out
    assert main(["data", "check", str(planted), "--split", "val"]) == 0
    clean = make_synthetic_dataset(tmp_path / "syn", n_train=2, n_val=1, n_test=1, image_size=32)
    assert main(["data", "check", str(clean)]) == 0
    assert "OK: no errors" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_real_kvasir_check_is_fast_and_clean(kvasir_root):
    report = check_dataset(kvasir_root)
    assert report.ok
    assert report.counts == {s: {"cases": n, "empty_masks": 0, "errors": 0}
                             for s, n in (("train", 800), ("val", 100), ("test", 100))}
    assert {i.kind for i in report.warnings} == {"near-binary"}  # JPEG noise only
    assert report.seconds < 60
