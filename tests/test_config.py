
import pytest

from naming import raises_naming
from vlsm.config import config_from_dict, load_config, save_config


def test_round_trip(tmp_path):
    cfg = config_from_dict({"model": {"name": "clipseg", "overrides": {"image_size": 64}},
                            "data": {"paths": ["a", "b"], "prompt": "random"}, "train": {"epochs": 3}})
    assert cfg.data.resolved_eval_prompt() == "p1"
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg


def test_unknown_key_names_file_and_valid_keys(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  epoch: 3\n")
    with raises_naming(ValueError, str(f), "train", "'epoch'", "'epochs'"):
        load_config(f)


def test_env_var_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("VLSM_DATA_ROOT", str(tmp_path))
    cfg = config_from_dict({"data": {"paths": "$VLSM_DATA_ROOT/kvasir"}})
    assert cfg.data.paths == [f"{tmp_path}/kvasir"]
    monkeypatch.delenv("VLSM_DATA_ROOT")
    with pytest.raises(ValueError, match="VLSM_DATA_ROOT"):
        config_from_dict({"data": {"paths": ["$VLSM_DATA_ROOT/kvasir"]}})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "none.yaml")
    f = tmp_path / "x.yaml"
    f.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(f)


def test_cli_flags_override_experiment_file(tmp_path):
    import argparse

    from vlsm.commands.train import config_from_args, register

    f = tmp_path / "exp.yaml"
    f.write_text("model: {name: clipseg, preset: tiny, overrides: {freeze_encoder: true}}\n"
                 "data: {paths: [a], prompt: p3}\ntrain: {epochs: 7, lr: 0.1}\n")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "-c", str(f), "--epochs", "2", "--img-size", "96",
                              "--set", "extract_layers=[0,1]", "--data", "b", "c"])
    cfg = config_from_args(args)
    assert cfg.train.epochs == 2 and cfg.train.lr == 0.1          # flag wins, file value kept
    assert cfg.model.overrides == {"freeze_encoder": True, "image_size": 96, "extract_layers": [0, 1]}
    assert cfg.data.paths == ["b", "c"] and cfg.data.prompt == "p3"
    # another model on the command line does not inherit the file model's options
    args = parser.parse_args(["train", "-c", str(f), "--model", "unet-d"])
    assert config_from_args(args).model.overrides == {}


@pytest.mark.parametrize("yaml_text, names", [  # the key, what it expects and the value it got
    ("train:\n  epochs: '5'\n", ("train.epochs", "an integer", "'5'")),
    ("train:\n  epochs: true\n", ("train.epochs", "an integer", "True")),
    ("train:\n  lr: fast\n", ("train.lr", "a number", "'fast'")),
    ("train:\n  seed: null\n", ("train.seed", "an integer", "None")),
    ("train:\n  max_minutes: soon\n", ("train.max_minutes", "a number or null", "'soon'")),
    ("data:\n  augment: 'no'\n", ("data.augment", "true or false", "'no'")),
    ("data:\n  paths: 3\n", ("data.paths", "a list", "got 3")),
    ("data:\n  prompt: null\n", ("data.prompt", "a string", "None")),
    ("eval:\n  splits: test\n", ("eval.splits", "a list", "'test'")),
    ("eval:\n  threshold: [0.5]\n", ("eval.threshold", "a number", "[0.5]")),
    ("model:\n  name: null\n", ("model.name", "a string", "None")),
    ("model:\n  overrides: [image_size]\n", ("model.overrides", "a mapping", "['image_size']")),
    ("model: clipseg\n", ("model", "a mapping", "'clipseg'")),
    ("name: 7\n", ("name", "a string or null", "got 7")),
    ("model:\n  nme: clipseg\n", ("model", "'nme'", "'name'", "'pretrained'")),  # the valid keys: the fix
    ("trian:\n  epochs: 3\n", ("'trian'", "'train'", "'data'")),
])
def test_wrong_types_and_keys_name_file_key_and_expected_type(tmp_path, yaml_text, names):
    f = tmp_path / "exp.yaml"
    f.write_text(yaml_text)
    with raises_naming(ValueError, str(f), *names):
        load_config(f)


def test_typed_values_that_fit_are_kept():
    cfg = config_from_dict({"train": {"lr": 1, "max_minutes": None, "devices": "auto", "limit_train_batches": 0.5},
                            "model": {"variant": None}, "data": {"class_name": None}, "name": None})
    assert cfg.train.lr == 1 and cfg.train.devices == "auto" and cfg.train.limit_train_batches == 0.5
    assert config_from_dict({"train": {"devices": 2}}).train.devices == 2


def test_model_section_is_a_model_spec_with_the_default_name():
    from vlsm.config import DEFAULT_MODEL
    from vlsm.models import ModelSpec

    assert config_from_dict({}).model == ModelSpec(name=DEFAULT_MODEL) == ModelSpec(name="unet-d")
    assert config_from_dict({"model": None}).model.name == "unet-d"
    spec = config_from_dict({"model": {"preset": "tiny", "overrides": {"image_size": 64}}}).model
    assert spec == ModelSpec(name="unet-d", preset="tiny", overrides={"image_size": 64})


def test_every_experiment_file_loads(monkeypatch):
    from conftest import REPO

    monkeypatch.setenv("VLSM_DATA_ROOT", "/data")
    monkeypatch.setenv("VLSM_WEIGHTS", "/weights")
    files = sorted((REPO / "experiments").glob("*/*.yaml"))  # the paper/ and fixed/ grids
    assert len(files) >= 70
    for f in files:
        cfg = load_config(f)
        assert cfg.name == f.stem and cfg.data.paths[0].startswith("/data/")


@pytest.mark.parametrize("text, pair", [
    ("train.epochs=5", ("train.epochs", 5)),
    ("lr=1e-3", ("lr", 0.001)),
    ("freeze_encoder=true", ("freeze_encoder", True)),
    (" data.paths =[a, b]", ("data.paths", ["a", "b"])),
    ("clipseg={pretrained: CIDAS/x}", ("clipseg", {"pretrained": "CIDAS/x"})),
    ("model.variant=", ("model.variant", None)),
    ("name=a=b", ("name", "a=b")),
])
def test_parse_override_reads_the_value_as_yaml(text, pair):
    from vlsm.config import parse_override

    assert parse_override(text) == pair


@pytest.mark.parametrize("text", ["epochs", "=5", "x=[unclosed"])
def test_parse_override_refuses_malformed_text(text):
    from vlsm.config import parse_override

    with pytest.raises(ValueError, match="KEY=VALUE|not valid YAML"):
        parse_override(text)


def test_apply_overrides_sets_dotted_keys_on_a_copy(monkeypatch):
    from vlsm.config import ExperimentConfig, apply_overrides

    monkeypatch.setenv("VLSM_DATA_ROOT", "/data")
    base = ExperimentConfig()
    cfg = apply_overrides(base, [("train.epochs", 5), ("train.lr", 2e-4), ("data.paths", "$VLSM_DATA_ROOT/busi"),
                                 ("model.name", "clipseg"), ("model.overrides.freeze_encoder", True),
                                 ("model.overrides.clipseg", {"pretrained": "CIDAS/x"}), ("eval.splits", ["val"]),
                                 ("out", "runs/x")])
    assert (cfg.train.epochs, cfg.train.lr, cfg.data.paths, cfg.eval.splits, cfg.out) == \
        (5, 2e-4, ["/data/busi"], ["val"], "runs/x")
    assert cfg.model.name == "clipseg"
    assert cfg.model.overrides == {"freeze_encoder": True, "clipseg": {"pretrained": "CIDAS/x"}}
    assert base == ExperimentConfig()  # the input is left alone
    empty = {}
    assert apply_overrides(cfg, [("model.overrides", empty), ("model.overrides.image_size", 64)]).model.overrides \
        == {"image_size": 64}
    assert empty == {}  # values passed in are not changed either


@pytest.mark.parametrize("pair, names", [  # where the value came from, the key, what it expects, the value
    (("train.epochs", "5"), ("--set", "train.epochs", "an integer", "'5'")),
    (("train.epochs", 2.5), ("--set", "train.epochs", "an integer", "2.5")),
    (("data.augment", 1), ("--set", "data.augment", "true or false", "got 1")),
    (("model.overrides", [1]), ("--set", "model.overrides", "a mapping", "[1]")),
    (("model.name", None), ("--set", "model.name", "a string", "None")),
    (("train.epoch", 5), ("--set", "train", "'epoch'", "'epochs'")),
    (("training.epochs", 5), ("--set", "'training.epochs'", "SECTION.KEY", "model")),
    (("train", {"epochs": 5}), ("--set", "'train'", "SECTION.KEY")),
    (("train.epochs.max", 5), ("--set", "train.epochs.max", "sub-keys")),
])
def test_apply_overrides_refuses_wrong_keys_and_types(pair, names):
    from vlsm.config import ExperimentConfig, apply_overrides

    with raises_naming(ValueError, *names):
        apply_overrides(ExperimentConfig(), [pair], where="--set")


def test_exponent_floats_are_numbers(tmp_path):
    from vlsm.config import parse_override

    f = tmp_path / "exp.yaml"
    f.write_text("train: {lr: 1e-3, weight_decay: 5E-5}\n")
    cfg = load_config(f)
    assert (cfg.train.lr, cfg.train.weight_decay) == (1e-3, 5e-5)
    assert parse_override("train.lr=2e-4") == ("train.lr", 2e-4)


def test_the_configuration_reference_page_is_current():
    """docs/reference/configuration.md is generated from the schema: regenerate it with
    `python -m vlsm.config.reference docs/reference/configuration.md`."""
    from conftest import REPO
    from vlsm.config import all_options
    from vlsm.config.reference import PAGE, render_reference

    text = render_reference()
    assert (REPO / PAGE).read_text() == text
    assert all(f"| `{key}` |" in text for key in all_options())


def test_resumable_keys_come_from_the_schema():
    from vlsm.config import RESUMABLE_KEYS, resumable_keys

    # how long a run trains, how it reads its data, shows progress and keeps its checkpoints
    assert set(resumable_keys()) == set(RESUMABLE_KEYS) == {
        "name", "out", "train.epochs", "train.max_minutes", "train.progress_bar", "train.num_workers", "eval.batch_size",
        "data.cache", "data.cache_dir", "data.max_pixels", "train.keep_checkpoints", "train.feature_cache",
        "train.compile", "train.channels_last", "train.profiler", "train.loggers", "train.tracking_uri",
        "train.tracking_project"}


def test_option_flags_for_another_command():
    """What `vlsm evaluate`/`predict` take from the schema: flags with the schema's defaults, checked when read."""
    import argparse

    from vlsm.config.flags import add_option_flags, option_values

    keys = ["eval.threshold", "eval.batch_size", "data.max_pixels", "train.device"]
    parser = argparse.ArgumentParser()
    add_option_flags(parser, keys)
    assert option_values(parser.parse_args([]), keys) == {"eval.threshold": 0.5, "eval.batch_size": 4,
                                                          "train.device": "auto"}  # (max_pixels None: not given)
    values = option_values(parser.parse_args(["--threshold", "0.3", "--max-pixels", "9", "--device", "cuda:1"]), keys)
    assert values == {"eval.threshold": 0.3, "eval.batch_size": 4, "data.max_pixels": 9, "train.device": "cuda:1"}
    for argv, names in ((["--threshold", "1.5"], ("--threshold (eval.threshold)", "between 0 and 1", "1.5")),
                        (["--batch-size", "0"], ("--batch-size (eval.batch_size)", "at least 1", "got 0")),
                        (["--device", "tpu"], ("--device (train.device)", "auto, cpu, cuda, cuda:N or mps", "'tpu'"))):
        with raises_naming(ValueError, *names):
            option_values(parser.parse_args(argv), keys)
    assert "probability threshold" in parser.format_help() and "default 0.5" in parser.format_help()


@pytest.mark.parametrize("key, value, where, names", [
    ("eval.threshold", 0.0, "serve", ("serve", "eval.threshold", "between 0 and 1", "0.0")),
    ("train.epochs", "5", "--set", ("--set", "train.epochs", "an integer", "'5'")),
    ("data.max_pixels", 0, "command line", ("--max-pixels (data.max_pixels)", "at least 1", "got 0")),
])
def test_check_option_checks_one_value(key, value, where, names):
    from vlsm.config import check_option

    assert check_option("eval.threshold", 0.25) == 0.25 and check_option("data.max_pixels", None) is None
    with raises_naming(ValueError, *names):
        check_option(key, value, where)


@pytest.mark.parametrize("values, names", [  # the file, the key, the bound, choices or rule, the value
    ({"train": {"epochs": 2, "min_epochs": 3}}, ("train.min_epochs", "at most train.epochs (2)", "got 3")),
    ({"train": {"bce_weight": 0.0, "dice_weight": 0}}, ("train.dice_weight", "positive", "train.bce_weight")),
    ({"eval": {"threshold": 1}}, ("eval.threshold", "between 0 and 1", "got 1")),
    ({"train": {"monitor": "dice"}}, ("train.monitor", "val_dice, val_loss, val_bce", "'dice'")),
    ({"train": {"scheduler_factor": 1.5}}, ("train.scheduler_factor", "between 0 and 1", "1.5")),
    ({"data": {"paths": ["a", 3]}}, ("data.paths", "item 1", "a string", "got 3")),
])
def test_bounds_choices_and_rules_between_options(values, names):
    with raises_naming(ValueError, "exp.yaml", *names):
        config_from_dict(values, "exp.yaml")


#: the lines of the options added to the schema since vlsm f4f8edf, at their defaults: a config.yaml written
#: now has them too (a list is two lines)
ADDED_SINCE_F4F8EDF = [
    "  folds: null", "  fold: null", "  train_fraction: 1.0", "  split_seed: null", "  patient_pattern: null",
    "  accumulate_grad_batches: 1", "  fast_dev_run: false", "  overfit_batches: null", "  profiler: null",
    "  loggers:", "  - csv", "  - tensorboard", "  tracking_uri: null", "  tracking_project: vlsm",
    "  tune_threshold: false", "  tta: false", "  postprocess: true", "  boundary_metrics: false",
    "  nsd_tolerance: 2.0"]


def added_lines(old: str, new: str) -> list[str]:
    """The lines ``new`` adds to ``old``; an ``AssertionError`` if it changes or drops any."""
    import difflib

    diff = [line for line in difflib.ndiff(old.splitlines(), new.splitlines()) if line[:2] in ("- ", "+ ", "? ")]
    assert all(line.startswith("+ ") for line in diff), diff
    return [line[2:] for line in diff]


def test_a_config_yaml_an_older_version_wrote_loads_and_is_written_back_the_same(tmp_path):
    """tests/training/fixtures/config-f4f8edf.yaml: a run's config.yaml as vlsm f4f8edf (before the schema) wrote it;
    written back, it is the same bytes plus one line per option added since (at its default)."""
    from conftest import REPO

    text = (REPO / "tests" / "training" / "fixtures" / "config-f4f8edf.yaml").read_text()
    cfg = load_config(_write(tmp_path / "config.yaml", text))
    save_config(cfg, tmp_path / "again.yaml")
    added = added_lines(text, (tmp_path / "again.yaml").read_text())
    assert added == ADDED_SINCE_F4F8EDF


def _write(path, text):
    path.write_text(text)
    return path
