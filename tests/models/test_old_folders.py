"""Model folders written by an earlier vlsm version (tests/fixtures/model_folders, made by its make_fixtures.py
before issue 15's single folder format) still load, and compute the logits they computed then, bit for bit."""
from __future__ import annotations

import base64
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import vlsm

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "model_folders"
RECORDS = json.loads((FIXTURES / "logits.json").read_text())["folders"]


def _decode(entry: dict) -> torch.Tensor:
    data = np.frombuffer(base64.b64decode(entry["base64"]), dtype="<f4").copy()
    return torch.from_numpy(data).reshape(entry["shape"])


def _logits(model, rec: dict) -> torch.Tensor:
    gen = torch.Generator().manual_seed(rec["image_seed"])
    x = torch.randn(*rec["image_shape"], generator=gen, dtype=torch.float64).float()
    ids, mask = torch.tensor(rec["input_ids"]), torch.tensor(rec["attention_mask"])
    with torch.no_grad():
        return model.eval()(x, ids, mask)


@pytest.fixture(autouse=True)
def recording_threads():
    """The logits were recorded with torch's default of two threads on a 2-core machine; CPU kernels may block
    their sums by thread count, so the comparison runs with that count (the suite runs one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_old_folder_loads_with_the_same_logits(name, monkeypatch):
    rec = RECORDS[name]
    monkeypatch.chdir(FIXTURES)  # the slim folder names its weight source relative to this folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vlsm.load_pretrained(name)
    tokens = model.get_tokenizer()(rec["prompts"])
    assert tokens["input_ids"].tolist() == rec["tokens"]
    assert tokens["attention_mask"].tolist() == rec["attention_mask"]
    got, want = _logits(model, rec), _decode(rec["logits"])
    assert got.shape == want.shape
    assert (got - want).abs().max().item() == 0.0


@pytest.mark.parametrize("name", ["clipseg", "biomedclipseg", "cris", "ensemble-c", "stack"])
def test_saving_over_an_old_folder_leaves_one_config_file(name, tmp_path):
    """A finished run of an earlier version, resumed, saves its model/ folder again: the earlier folder's own
    config and tokenizer files go, vlsm_config.json stays the only config file, and the logits stay."""
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    (folder / "README.md").write_text("model card")  # not one of the earlier version's files: kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vlsm.load_pretrained(folder).save_pretrained(folder)
        again = vlsm.load_pretrained(folder)
    top = sorted(p.name for p in folder.iterdir())
    assert top == ["README.md", "model.safetensors", "tokenizer", "vlsm_config.json"], top
    assert torch.equal(_logits(again, RECORDS[name]), _decode(RECORDS[name]["logits"]))
