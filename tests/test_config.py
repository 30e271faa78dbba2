import pytest

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
    with pytest.raises(ValueError, match=r"bad.yaml \[train\]: unknown key\(s\) \['epoch'\].*epochs"):
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
