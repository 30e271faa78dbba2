"""Model folders written by an earlier vlsm version (tests/fixtures/model_folders, made by its make_fixtures.py
before issue 15's single folder format) still load, and compute the logits they computed then, bit for bit."""
from __future__ import annotations

import base64
import json
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
