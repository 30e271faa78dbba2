import pytest

from vlsm.training.config import config_from_dict, load_config, save_config


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
