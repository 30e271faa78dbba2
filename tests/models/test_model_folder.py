"""The one model-folder format (vlsm.models.folder): every model kind saves ``vlsm_config.json`` (format, spec,
architecture, preprocess), ``model.safetensors`` and its tokenizer files under ``tokenizer/``, and loads back
through the same path with the same outputs; presets are data; the ensemble variants are records."""
from __future__ import annotations

import inspect
import json
import warnings

import pytest
import torch

import vlsm
from naming import raises_naming
from vlsm.models.base import SPEC_FILE, WEIGHTS_FILE
from vlsm.models.folder import FOLDER_FORMAT, TOKENIZER_DIR, read_model_folder

SMALL = {"image_size": 32}
KINDS = [
    ("unet-d", None, {}), ("clipseg", None, {}), ("biomedclipseg", None, {}), ("biomedclipseg-d", None, {}),
    ("cris", None, {}), ("unet", None, {}), ("unetpp", None, {}), ("deeplabv3plus", None, {}),
    ("biomedclipseg-a", "fixed", {}), ("biomedclipseg-a", "reference", {}),
    ("clipseg-b", "fixed", {}), ("clipseg-b", "reference", {}),
    ("ensemble-c", "fixed", {}), ("ensemble-c", "reference", {}),
    ("stack", None, {"vlsm": {"name": "biomedclipseg", "image_size": 32}}),
]
PROMPTS = ["a polyp", "small round polyp"]


def _tiny(name, variant, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        size = {} if name == "stack" else SMALL
        return vlsm.create_model(name, preset="tiny", variant=variant, **size, **options).eval()


def _outputs(model):
    s = model.preprocess.image_size
    x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(0))
    tok = model.get_tokenizer()(PROMPTS)
    with torch.no_grad():
        return model(x, tok["input_ids"], tok["attention_mask"])


@pytest.mark.parametrize("name,variant,options", KINDS, ids=[f"{n}-{v}" if v else n for n, v, _ in KINDS])
def test_every_kind_saves_one_config_file_and_loads_back(tmp_path, name, variant, options):
    model = _tiny(name, variant, **options)
    want = _outputs(model)
    folder = model.save_pretrained(tmp_path / "m")
    top = sorted(p.name for p in folder.iterdir())
    assert top == sorted([SPEC_FILE, WEIGHTS_FILE] + ([TOKENIZER_DIR] if model.uses_text else [])), top
    configs = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.json"))
    assert [c for c in configs if not c.startswith(TOKENIZER_DIR + "/")] == [SPEC_FILE]
    payload = json.loads((folder / SPEC_FILE).read_text())
    assert payload["format"] == FOLDER_FORMAT and payload["spec"]["name"] == name
    assert payload["preprocess"] == json.loads(json.dumps(model.preprocess.to_dict()))
    parts = model.vlsms()
    if parts:  # one tokenizer folder per VLSM, its architecture nested in the composite's
        assert set(payload["architecture"]["parts"]) >= set(parts)
        assert sorted(p.name for p in (folder / TOKENIZER_DIR).iterdir()) == sorted(parts)
    again = vlsm.load_pretrained(folder).eval()
    assert type(again) is type(model) and again.preprocess == model.preprocess
    assert json.loads(json.dumps(again.architecture())) == payload["architecture"]
    assert torch.equal(_outputs(again), want)


def test_the_architecture_comes_from_the_folder(tmp_path):
    """A builder takes the saved architecture in the preset's place: edit it, and the rebuilt model follows."""
    folder = _tiny("unet-d", None).save_pretrained(tmp_path / "m")
    payload = json.loads((folder / SPEC_FILE).read_text())
    payload["architecture"]["dropout"] = 0.25
    (folder / SPEC_FILE).write_text(json.dumps(payload))
    again = vlsm.load_pretrained(folder)
    assert again.config.dropout == 0.25 and again.encoder[0].drop.p == 0.25
    # create_model(model_dir=) reads the same folder the same way (a run's checkpoint is rebuilt like this)
    assert vlsm.create_model("unet-d", preset="tiny", model_dir=str(folder), image_size=32).config.dropout == 0.25
    # ... but only for the model the folder is of
    assert vlsm.create_model("unet-d", preset="tiny", model_dir=str(tmp_path)).config.dropout == 0.1


def test_a_saved_clipseg_needs_not_its_weight_source(tmp_path):
    """A CLIPSeg built from a weight source whose config differs from the preset reloads from its folder alone."""
    from weight_sources import clipseg_source

    source = clipseg_source(tmp_path / "source")
    config = json.loads((source / "config.json").read_text())
    config["vision_config"]["intermediate_size"] = 48
    (source / "config.json").write_text(json.dumps(config))
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    CLIPSegForImageSegmentation(CLIPSegConfig(**config)).save_pretrained(source)
    model = vlsm.create_model("clipseg", str(source), preset="tiny", image_size=32).eval()
    folder = model.save_pretrained(tmp_path / "m", standalone=True)
    want = _outputs(model)
    (source / "config.json").unlink()
    again = vlsm.load_pretrained(folder)
    assert again.config.clipseg_config["vision_config"]["intermediate_size"] == 48
    assert torch.equal(_outputs(again), want)


def test_reading_folders(tmp_path):
    folder = _tiny("ensemble-c", "fixed").save_pretrained(tmp_path / "c")
    saved = read_model_folder(folder)
    assert saved.format == FOLDER_FORMAT and saved.model == "ensemble-c" and "parts" not in saved.architecture
    assert saved.part("clipseg").model == "clipseg"
    assert saved.part("clipseg").tokenizer_dir == folder / TOKENIZER_DIR / "clipseg"
    assert saved.part("clipseg").architecture["image_size"] == 32
    plain = read_model_folder(tmp_path)  # no vlsm_config.json: tokenizer files only
    assert plain.model is None and plain.tokenizer_dir == tmp_path and plain.part("clipseg") is None
    payload = json.loads((folder / SPEC_FILE).read_text())
    payload["format"] = "vlsm-model/99"
    (folder / SPEC_FILE).write_text(json.dumps(payload))
    with raises_naming(ValueError, str(folder / SPEC_FILE), "'vlsm-model/99'", "the vlsm version that wrote it"):
        vlsm.load_pretrained(folder)


# -- presets are data -------------------------------------------------------------------------------------
def test_every_preset_is_a_shipped_json_file():
    from vlsm.models.ensembles.base import ADAPTER_PRESETS
    from vlsm.models.presets import load_config_json, preset_names

    for name in vlsm.list_models():
        presets = vlsm.models.get_entry(name).presets
        assert presets == ("paper", "tiny"), name
    assert preset_names("unet_d.json") == preset_names("cris.json") == preset_names("baselines.json") == \
        preset_names("vlsm_models.json", "clipseg") == preset_names("adapters.json") == ("paper", "tiny")
    assert load_config_json("unet_d.json")["paper"]["decoder_channels"] == [546, 182, 91, 45]
    assert ADAPTER_PRESETS["paper"].adapter_ffn_dim == 2048  # PyTorch's TransformerEncoderLayer default
    with torch.device("meta"):  # the count only
        assert vlsm.create_model("unet-d").parameter_counts()[0] == 11_833_593


# -- the ensemble variants are records ----------------------------------------------------------------------
def test_variants_are_records_the_branches_read():
    from vlsm.models.ensembles import FIXED, REFERENCE, VARIANTS, Variant, branches, get_variant, paper

    assert VARIANTS == ("fixed", "reference") and get_variant("reference") is REFERENCE
    assert isinstance(FIXED, Variant) and FIXED.clip_adapter == "layer-stack" and REFERENCE.clip_adapter == "batch-zip"
    assert set(REFERENCE.notes) == set(FIXED.notes) == {"biomedclipseg-a", "clipseg-b", "ensemble-c"}
    for module in (branches, paper):  # behaviour comes from the record, never from the variant's name
        source = inspect.getsource(module)
        assert '"reference"' not in source.replace('variant="reference"', ""), module.__name__
    with raises_naming(ValueError, "odd", "clip_adapter", "'zip'", "layer-stack"):
        Variant("odd", False, "zip", False, False, False, False, False, False)
    model = _tiny("clipseg-b", "reference")
    assert model.variant is REFERENCE and model.branch.with_last_hidden_state
