"""vlsm.models.frozen: which tensors are frozen and sourced, their digest, slim model folders (save_pretrained /
load_pretrained) and the one-line errors for a missing or changed source."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import vlsm
from vlsm.models import ModelSpec
from vlsm.models.frozen import (
    FrozenSource,
    FrozenSourceChanged,
    FrozenSourceMissing,
    frozen_keys,
    frozen_source,
    tensors_digest,
)
from weight_sources import clipseg_source, seeded_logits


@pytest.fixture()
def source(tmp_path):
    return clipseg_source(tmp_path / "clipseg-source")


def test_only_frozen_tensors_with_a_source_count(source):
    assert frozen_keys(vlsm.create_model("biomedclipseg", preset="tiny")) == []  # frozen, but random init
    assert frozen_keys(vlsm.create_model("clipseg", pretrained=str(source), preset="tiny")) == []  # all trainable
    model = vlsm.create_model("clipseg", pretrained=str(source), preset="tiny", freeze_encoder=True)
    keys = frozen_keys(model)
    assert keys and keys == sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    # a nested source: only the branch built from it; the ensemble's UNet-D and adapter train
    ens = vlsm.create_model("clipseg-b", preset="tiny", clipseg={"pretrained": str(source), "freeze_encoder": True})
    keys = frozen_keys(ens)
    assert len(keys) == len(frozen_keys(model)) and all(k.startswith("branch.vlsm.clipseg.clip.") for k in keys)


def test_digest_follows_names_dtypes_shapes_and_bytes():
    a = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3, dtype=torch.bfloat16)}
    base = tensors_digest(a)
    assert base.startswith("sha256:") and base == tensors_digest(dict(reversed(list(a.items()))))
    for changed in ({**a, "w": a["w"].reshape(3, 2)}, {**a, "w": a["w"].double()}, {"v": a["w"], "b": a["b"]},
                    {**a, "w": a["w"] + 1e-6}):
        assert tensors_digest(changed) != base


def test_record_is_json_and_checked(source):
    model = vlsm.create_model("clipseg", pretrained=str(source), preset="tiny", freeze_encoder=True)
    record = frozen_source(model)
    again = FrozenSource.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record and again.sources == (str(source),) and again.spec["pretrained"] == str(source)
    with pytest.raises(ValueError, match="another vlsm version"):
        FrozenSource.from_dict({**record.to_dict(), "format": "vlsm-frozen/0"}, where="x")
    assert frozen_source(vlsm.create_model("unet-d", preset="tiny")) is None


@pytest.mark.parametrize("name,options", [
    ("clipseg", {"freeze_encoder": True}),
    ("clipseg-b", {"clipseg": {"freeze_encoder": True}}),
])
def test_slim_model_folder_roundtrip(source, tmp_path, name, options):
    if name == "clipseg":
        model = vlsm.create_model(name, pretrained=str(source), preset="tiny", **options)
    else:
        model = vlsm.create_model(name, preset="tiny", clipseg={**options["clipseg"], "pretrained": str(source)})
    with torch.no_grad():  # trained-looking weights: every trainable tensor differs from the source's
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    model.save_pretrained(tmp_path / "slim")
    model.save_pretrained(tmp_path / "full", standalone=True)
    slim = load_file(str(tmp_path / "slim" / "model.safetensors"))
    assert set(slim) == set(model.state_dict()) - set(frozen_keys(model))
    assert json.loads((tmp_path / "slim" / "vlsm_config.json").read_text())["frozen"]["keys"] == len(frozen_keys(model))
    assert "frozen" not in json.loads((tmp_path / "full" / "vlsm_config.json").read_text())
    want = seeded_logits(model)
    assert torch.equal(seeded_logits(vlsm.load_pretrained(tmp_path / "slim")), want)
    shutil.rmtree(source)
    assert torch.equal(seeded_logits(vlsm.load_pretrained(tmp_path / "full")), want)  # standalone: no source needed
    with pytest.raises(FrozenSourceMissing) as err:
        vlsm.load_pretrained(tmp_path / "slim")
    msg = str(err.value)
    assert "\n" not in msg and str(source) in msg and "put the weight files back" in msg and "--standalone" in msg
    clipseg_source(source, seed=7)
    with pytest.raises(FrozenSourceChanged, match="weights changed since training"):
        vlsm.load_pretrained(tmp_path / "slim")


def test_hub_source_missing_says_hf_download(source, tmp_path):
    model = vlsm.create_model("clipseg", pretrained=str(source), preset="tiny", freeze_encoder=True)
    model.spec = ModelSpec(**{**model.spec.to_dict(), "pretrained": "CIDAS/clipseg-rd64-refined"})
    model.save_pretrained(tmp_path / "slim")  # as if built from the hub id
    with pytest.raises(FrozenSourceMissing, match="`hf download CIDAS/clipseg-rd64-refined`"):
        vlsm.load_pretrained(tmp_path / "slim")
