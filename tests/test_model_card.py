"""Model cards for trained model folders: front matter, facts from the run, and a snippet that runs."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from vlsm.model_card import render_model_card, write_model_card


@pytest.fixture()
def run(unet_run, tmp_path):
    """A copy of the session's tiny UNet-D run (tests/conftest.py): the tests write its model card again."""
    return Path(shutil.copytree(unet_run, tmp_path / "runs" / "tiny-unetd"))


def _load(run):
    return json.loads((run / "summary.json").read_text()), yaml.safe_load((run / "config.yaml").read_text())


def test_card_of_a_trained_run(run):
    summary, config = _load(run)
    path = write_model_card(run / "model", summary, config)
    text = path.read_text()
    assert path == run / "model" / "README.md"
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "vlsm"
    assert front["datasets"] == ["synthetic_polyp"] and front["metrics"] == ["dice", "iou"]
    assert "unet-d" in front["tags"] and "vision-language" not in front["tags"]
    total, trainable = summary["train"]["parameters"]["total"], summary["train"]["parameters"]["trainable"]
    assert f"| parameters, total | {total:,} " in text and f"| parameters, trainable | {trainable:,} " in text
    t = config["train"]
    assert (t["epochs"], t["batch_size"], t["lr"]) == (2, 4, 0.001)  # the recipe as trained, in the card:
    assert f"| epochs run | {summary['train']['epochs_run']} |" in text and "| epochs, at most | 2 |" in text
    assert "| batch size | 4 |" in text and "| learning rate (AdamW) | 0.001 |" in text
    assert "| loss weight of BCE-with-logits | 1.0 |" in text and "| loss weight of the soft Dice | 1.0 |" in text
    [result] = summary["results"]
    row = (f"| synthetic_polyp | test | 5 | {100 * result['dice_mean']:.2f} ± {100 * result['dice_std']:.2f} | "
           f"{100 * result['iou_mean']:.2f} ± {100 * result['iou_std']:.2f} |")
    assert row in text
    assert "| synthetic_polyp | `train` | `val` | `test` (5 images) |" in text
    assert "Not a medical device" in text and "Research use only" in text
    assert "arXiv:2509.05154" in text and "Exploring Transfer Learning in Medical Image Segmentation" in text
    assert "Image only: this model takes no text prompt." in text


def test_card_snippet_loads_the_model(run, monkeypatch):
    summary, config = _load(run)
    text = write_model_card(run / "model", summary, config).read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    image = np.random.default_rng(0).integers(0, 255, (40, 52, 3), dtype=np.uint8)
    from PIL import Image

    monkeypatch.chdir(run.parent)
    Image.fromarray(image).save("image.png")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the card's own example
    assert scope["prediction"].mask.shape == (40, 52)
    assert scope["model"].spec.name == "unet-d"


def test_text_model_card_names_prompt_and_split_sizes():
    summary = {"model": {"name": "clipseg", "preset": "paper", "variant": None, "label": "CLIPSeg"},
               "results": [{"dataset": "kvasir_polyp", "split": "test", "n": 100, "dice_mean": 0.81234,
                            "dice_std": 0.2, "iou_mean": 0.7, "iou_std": 0.25, "threshold": 0.5, "prompt": "p3"}],
               "train": {"epochs_run": 20, "parameters": {"total": 150_000_000, "trainable": 1_130_000},
                         "data": {"kvasir_polyp": {"train": 800, "val": 100}}}}
    config = {"model": {"name": "clipseg", "pretrained": "CIDAS/clipseg-rd64-refined",
                        "overrides": {"freeze_encoder": True}},
              "data": {"paths": ["/data/kvasir_polyp"], "prompt": "random", "eval_prompt": "p3"},
              "train": {"epochs": 100, "lr": 1e-3, "batch_size": 32}}
    text = render_model_card(summary, config, {"image_size": 352, "mean": [0.5] * 3, "std": [0.5] * 3,
                                               "tokenizer": "clip-bpe", "context_length": 77})
    assert "| kvasir_polyp | `train` (800 images) | `val` (100 images) | `test` (100 images) |" in text
    assert "| kvasir_polyp | test | 100 | 81.23 ± 20.00 | 70.00 ± 25.00 | `p3` | 0.5 |" in text
    assert "drawn per image" in text and "Evaluated with `p3`" in text
    assert "| initial weights | `CIDAS/clipseg-rd64-refined` |" in text and "`freeze_encoder` | `true`" in text
    assert "clip-bpe tokenizer, 77 tokens" in text and 'prompts="polyp"' in text
    assert "vision-language" in yaml.safe_load(text.split("---\n")[1])["tags"]


def test_model_card_states_the_recipe_as_trained():
    """The card names the monitored quantity, the schedule and the Dice reduction the run really used."""
    summary = {"model": {"name": "unet-d", "preset": "paper", "variant": None, "label": "UNet-D"},
               "results": [], "train": {"epochs_run": 30, "monitor": "val_bce", "best_score": 0.12345,
                                        "best_checkpoint": "best.ckpt"}}
    config = {"model": {"name": "unet-d"}, "data": {"paths": ["/data/kvasir_polyp"], "augment": False},
              "train": {"epochs": 1000, "lr": 1e-5, "scheduler": "none", "monitor": "val_bce", "min_delta": 0.0,
                        "early_stopping_patience": 20, "reload_best_each_epoch": True, "dice_reduction": "batch",
                        "scheduler_patience": 3}}
    text = render_model_card(summary, config, {"image_size": 352, "mean": [0] * 3, "std": [1] * 3})
    assert "| monitored (best checkpoint, early stopping) | validation BCE |" in text
    assert "| early-stopping patience (epochs) | 20 |" in text and "| smallest improvement | 0.0 |" in text
    assert "| learning-rate schedule | constant rate |" in text and "ReduceLROnPlateau" not in text
    assert "| after an epoch without improvement | continue from the best weights so far |" in text
    assert "| soft Dice | over the whole batch |" in text and "| augmentation | none |" in text
    assert "| best validation BCE | 0.1235 (checkpoint `best.ckpt`) |" in text
    plateau = render_model_card(summary, {**config, "train": {"min_epochs": 10, "min_delta": 1e-4}}, {"image_size": 8})
    assert "| epochs, at least | 10 |" in plateau and "| smallest improvement | 0.0001 |" in plateau
    assert "without improvement" not in plateau  # (shown only when the run reloads)


def test_the_recipe_rows_come_from_the_schema():
    """Every option marked for the card is a row of a trained run's recipe, under the schema's label, and
    model_card.py spells none of them."""
    from pathlib import Path

    import vlsm.model_card
    from vlsm.config import ExperimentConfig, all_options
    from vlsm.model_card import recipe_rows

    config = ExperimentConfig().to_dict()
    config["train"]["reload_best_each_epoch"] = True
    config["data"]["drop_overlap"] = True
    labels = [label for label, _ in recipe_rows(config)]
    marked = [o for o in all_options().values() if o.card is not None]
    plateau = {o.card.label for o in marked if o.card.when == {"scheduler": "plateau"}}
    assert labels == [o.card.label for o in marked] and plateau  # (the default schedule is plateau)
    source = Path(vlsm.model_card.__file__).read_text()
    assert not [o.name for o in marked if o.name in source and "_" in o.name]
