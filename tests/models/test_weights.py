"""The weight resolver: local folders, hub ids in an offline cache, clear errors; nothing downloads."""
from __future__ import annotations

import time

import pytest

from vlsm.models.weights import FileSpec, WeightsNotFoundError, parse_source, resolve_weights

SPECS = (FileSpec.of("config.json", what="config"),
         FileSpec.of("model.safetensors", "pytorch_model.bin", what="weights"),
         FileSpec.of("vocab.txt", required=False))


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _fake_cache(cache, repo, files, revision="0123456789abcdef0123456789abcdef01234567"):
    """The on-disk layout huggingface_hub uses for a cached snapshot."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / revision
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)
    for name in files:
        (snap / name).write_text("x")
    return snap


def test_parse_source(tmp_path):
    assert parse_source("hf-hub:CIDAS/clipseg-rd64-refined") == ("hub", "CIDAS/clipseg-rd64-refined")
    assert parse_source("CIDAS/clipseg-rd64-refined") == ("hub", "CIDAS/clipseg-rd64-refined")
    assert parse_source(str(tmp_path)) == ("local", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        parse_source(str(tmp_path / "nope" / "deeper"))
    with pytest.raises(ValueError):
        parse_source("hf-hub:justaname")
    with pytest.raises(ValueError):
        parse_source("  ")


def test_local_folder_alternatives(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_text("x")
    got = resolve_weights(str(tmp_path), SPECS, model="m")
    assert got.folder == tmp_path
    assert got.path("model.safetensors", "pytorch_model.bin") == tmp_path / "pytorch_model.bin"
    assert got.get("vocab.txt") is None


def test_local_folder_missing_names_files_and_fix(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights(str(tmp_path), SPECS, model="clipseg", hint="Download it.")
    msg = str(err.value)
    assert "model.safetensors or pytorch_model.bin" in msg and str(tmp_path) in msg
    assert "clipseg" in msg and "Download it." in msg and "config.json" in msg  # lists what the folder holds


def test_hub_id_from_offline_cache(tmp_path):
    snap = _fake_cache(tmp_path / "hf-cache", "org/name", ["config.json", "model.safetensors"])
    for source in ("org/name", "hf-hub:org/name"):
        got = resolve_weights(source, SPECS)
        assert got.folder == snap
        assert got.path("config.json") == snap / "config.json"


def test_hub_id_missing_offline_fails_fast_with_instructions(tmp_path):
    _fake_cache(tmp_path / "hf-cache", "org/name", ["config.json"])
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights("org/name", SPECS, model="clipseg")
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "model.safetensors or pytorch_model.bin" in msg
    assert "HF_HUB_OFFLINE" in msg and "hf download org/name" in msg
    assert "vocab.txt" not in msg.split("Missing:")[1].split("\n")[0]  # optional files are not "missing"


def test_unknown_hub_id_offline(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="config.json"):
        resolve_weights("nobody/nothing", SPECS)
