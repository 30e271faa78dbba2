"""Bad inputs through the command line: each gives its exit code, one message naming the file or flag,
no traceback, and writes or deletes nothing it should not."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlsm.cli import main
from vlsm.data.masks import save_mask
from vlsm.data.synthetic import make_synthetic_dataset


def _tree(root: Path) -> dict:
    """Every file under ``root`` with its size and modification time (to prove nothing changed)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))} if root.exists() else {}


def run(argv, capsys, *, watch: Path):
    before = _tree(watch)
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert _tree(watch) == before, "a bad input changed files it should not have touched"
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vlsm data: error: "), err
    return lines[0]


@pytest.fixture()
def ds(tmp_path) -> Path:
    return make_synthetic_dataset(tmp_path / "ds", n_train=3, n_val=1, n_test=1, image_size=32, seed=4)


def _names(ds: Path, split="train") -> list:
    return [e["img_name"] for e in json.loads((ds / "anns" / f"{split}.json").read_text())]


def _check(ds, capsys, *extra):
    return run(["data", "check", ds, "--no-prompts", *extra], capsys, watch=ds.parent)


@pytest.mark.parametrize("damage, what", [
    (lambda b: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "corrupt"),
    (lambda b: b[: len(b) // 2], "truncated"),
    (lambda b: b"", "zero-byte"),
])
@pytest.mark.parametrize("sub", ["images", "masks"])
def test_damaged_image_or_mask_is_named(ds, capsys, damage, what, sub):
    name = _names(ds)[1]
    path = ds / sub / name
    path.write_bytes(damage(path.read_bytes()))
    code, out, _err = _check(ds, capsys)
    assert code == 1 and "FAILED: 1 error(s) in 1 file(s)" in out
    kind = "unreadable or truncated " + ("images" if sub == "images" else "masks")
    assert f"{kind}: 1" in out and f"{sub}/{name}: cannot be decoded" in out


def test_mask_of_another_size_is_named(ds, capsys):
    name = _names(ds)[0]
    save_mask(ds / "masks" / name, np.ones((20, 32), bool))
    code, out, _err = _check(ds, capsys)
    assert code == 1 and f"masks/{name}: mask is 32x20, its image is 32x32" in out


def test_odd_modes_and_16_bit_files_are_read(ds, capsys):
    """Palette, grey+alpha, 1-bit, 16-bit and CMYK files are valid data: no error."""
    names = _names(ds)
    rgb = np.asarray(Image.open(ds / "images" / names[0]).convert("RGB"))
    Image.fromarray(rgb).convert("P").save(ds / "images" / names[0])
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(ds / "images" / names[1])  # 16-bit grey
    Image.fromarray(rgb).convert("CMYK").save(ds / "images" / names[2].replace(".png", ".jpg"), quality=95)
    (ds / "images" / names[2]).unlink()
    anns = json.loads((ds / "anns" / "train.json").read_text())
    anns[2]["img_name"] = names[2].replace(".png", ".jpg")
    (ds / "anns" / "train.json").write_text(json.dumps(anns))
    mask = np.asarray(Image.open(ds / "masks" / names[0])) > 127
    Image.fromarray(mask.astype(np.uint16) * 65535).save(ds / "masks" / names[0])   # 16-bit mask
    Image.fromarray(mask).convert("1").save(ds / "masks" / names[1])                 # 1-bit mask
    Image.fromarray(mask.astype(np.uint8) * 255).convert("LA").save(ds / "masks" / names[2])
    code, out, _err = _check(ds, capsys)
    assert code == 0 and "OK: no errors" in out


def test_missing_entry_of_a_split_file_is_named(ds, capsys):
    anns = json.loads((ds / "anns" / "val.json").read_text())
    anns.append({"img_name": "ghost.png", "mask_name": "ghost.png", "prompts": {"p1": "polyp"}})
    (ds / "anns" / "val.json").write_text(json.dumps(anns))
    code, out, _err = _check(ds, capsys)
    assert code == 1 and "missing images: 1" in out and "images/ghost.png: file not found" in out


def test_duplicated_entry_is_a_named_warning(ds, capsys):
    anns = json.loads((ds / "anns" / "train.json").read_text())
    (ds / "anns" / "train.json").write_text(json.dumps(anns + anns[:1]))
    code, out, _err = _check(ds, capsys)
    assert code == 0 and f"{anns[0]['img_name']} is listed more than once" in out


@pytest.mark.parametrize("text, problem", [
    ('[{"img_name": "a.png", "mask_name": ', "is not valid JSON"),
    ('{"img_name": "a.png"}', "must hold a JSON list"),
    ('[{"img_name": "a.png"}]', "must be an object with 'img_name' and 'mask_name'"),
])
def test_malformed_split_file_is_named(ds, capsys, text, problem):
    (ds / "anns" / "test.json").write_text(text)
    code, out, _err = _check(ds, capsys)
    assert code == 1 and "anns/test.json" in out and problem in out and "layout problems: 1" in out


def test_malformed_splits_json_of_a_plain_folder(tmp_path, capsys):
    root = tmp_path / "plain"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "images" / "a.png")
    save_mask(root / "masks" / "a.png", np.ones((8, 8), bool))
    (root / "splits.json").write_text('{"train": ["a"')
    code, _out, err = run(["data", "check", root, "--no-prompts"], capsys, watch=tmp_path)
    assert code == 2 and "splits.json is not valid JSON" in _one_error_line(err)


def test_leakage_is_an_error_only_with_strict(ds, capsys):
    val = json.loads((ds / "anns" / "val.json").read_text())
    train = json.loads((ds / "anns" / "train.json").read_text())
    (ds / "anns" / "test.json").write_text(json.dumps(val + train[:1]))  # a training image in test
    leaked = Path(train[0]["img_name"]).stem
    code, out, _err = _check(ds, capsys)
    assert code == 0 and f"train & test (1): {leaked}" in out and "--strict makes this an error" in out
    code, out, _err = _check(ds, capsys, "--strict")
    assert code == 1 and f"train & test (1): {leaked}" in out and "FAILED" in out


def test_unknown_split_flag_lists_the_splits(ds, capsys):
    code, _out, err = _check(ds, capsys, "--split", "tset")
    assert code == 2 and "tset" in _one_error_line(err) and "available: train, val, test" in err


def _raw_kvasir(tmp_path) -> Path:
    raw = tmp_path / "raw"
    for sub in ("images", "masks"):
        (raw / "Kvasir-SEG" / sub).mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (10, 8), (150, 40 + i, 30)).save(raw / "Kvasir-SEG" / "images" / f"c{i}.jpg")
        m = np.zeros((8, 10), bool)
        m[2:5, 2:7] = True
        save_mask(raw / "Kvasir-SEG" / "masks" / f"c{i}.png", m)
    return raw


def test_convert_overwrite_refuses_a_foreign_folder(tmp_path, capsys):
    raw = _raw_kvasir(tmp_path)
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    code, _out, err = run(["data", "convert", "kvasir", raw, mine, "--overwrite"], capsys, watch=tmp_path)
    line = _one_error_line(err)
    assert code == 2 and str(mine) in line and "not written by vlsm" in line and "vlsm_convert.json" in line


@pytest.mark.parametrize("where", ["inside", "equal"])
def test_convert_output_inside_the_input_is_refused(tmp_path, capsys, where):
    raw = _raw_kvasir(tmp_path)
    out = raw / "converted" if where == "inside" else raw
    code, _out, err = run(["data", "convert", "kvasir", raw, out, "--overwrite"], capsys, watch=tmp_path)
    line = _one_error_line(err)
    assert code == 2 and "is (inside) the input" in line and str(raw) in line


def test_convert_with_a_corrupt_mask_writes_nothing(tmp_path, capsys):
    raw = _raw_kvasir(tmp_path)
    (raw / "Kvasir-SEG" / "masks" / "c2.png").write_bytes(b"")
    code, _out, err = run(["data", "convert", "kvasir", raw, tmp_path / "out"], capsys, watch=tmp_path)
    assert code == 2 and "c2.png" in err and "nothing was written" in err
    assert not (tmp_path / "out").exists()


def test_synthetic_overwrite_refuses_a_foreign_folder(tmp_path, capsys):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    code, _out, err = run(["data", "synthetic", mine, "--overwrite"], capsys, watch=tmp_path)
    assert code == 2 and "not a synthetic dataset written by vlsm" in _one_error_line(err)


def test_check_writes_nothing_into_the_dataset_or_the_cache(ds, capsys, private_cache_dir):
    code, out, _err = run(["data", "check", ds], capsys, watch=ds.parent)
    assert code == 0 and "prompts, CLIP BPE" in out and not private_cache_dir.exists()
