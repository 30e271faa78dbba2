"""Model cards: a ``README.md`` in the Hugging Face model-card style for a trained ``model/`` folder.

The card is rendered from plain dicts — the run's ``summary.json`` content and its experiment config
(``ExperimentConfig.to_dict()`` or ``config.yaml`` loaded) — plus the model folder's own
``vlsm_config.json`` (the input contract). YAML front matter first (library, tags, datasets,
metrics), then what the model is, what it was trained on and how, its test results, its limits
and how to load it::

    write_model_card(run / "model", summary, cfg.to_dict())
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import yaml

from vlsm.models.base import SPEC_FILE
from vlsm.utils import write_text_atomic

CARD_FILE = "README.md"
PROMPT_KEYS = {f"p{i}" for i in range(10)}

CITATION = """\
@inproceedings{dietlmeier2025vlsmensemble,
  title     = {VLSM-Ensemble: Ensembling CLIP-based Vision-Language Models for Enhanced Medical Image Segmentation},
  author    = {Dietlmeier, Julia and Adegboro, Oluwabukola G. and Ganepola, Vayangi and Mazo, Claudia and
               O'Connor, Noel E.},
  booktitle = {Medical Imaging with Deep Learning (MIDL)},
  year      = {2025},
  note      = {arXiv:2509.05154}
}

@inproceedings{poudel2024exploring,
  title     = {Exploring Transfer Learning in Medical Image Segmentation using Vision-Language Models},
  author    = {Poudel, Kanchan and Dhakal, Manish and Bhandari, Prasiddha and Adhikari, Rabin and
               Thapaliya, Safal and Khanal, Bishesh},
  booktitle = {Medical Imaging with Deep Learning (MIDL)},
  year      = {2024}
}"""


def _paper_name(name: str) -> str:
    from vlsm.models import get_entry

    try:
        return get_entry(name).paper_name
    except ValueError:
        return name


def _description(name: str) -> str:
    from vlsm.models import get_entry

    try:
        return get_entry(name).description
    except ValueError:
        return ""


def _pct(mean: Optional[float], std: Optional[float]) -> str:
    if mean is None:
        return "—"
    return f"{100 * mean:.2f} ± {100 * (std or 0.0):.2f}"


def _millions(n: Optional[int]) -> str:
    return "—" if n is None else f"{n:,} ({n / 1e6:.2f} M)"


def _prompt_text(prompt: Optional[str]) -> str:
    if not prompt:
        return "none"
    if prompt in PROMPT_KEYS:
        return (f"`{prompt}`: each image's own `{prompt}` prompt from the dataset annotations "
                f"(medvlsm prompt types: p0 empty, p1 class name, p2–p6 shape, colour, size, number, location; "
                f"p7–p9 descriptive variants)")
    if prompt == "random":
        return "`random`: a prompt type p0–p9 drawn per image and epoch from the dataset annotations"
    return f"the fixed text {prompt!r} for every image"


def front_matter(summary: dict, config: dict) -> dict:
    model = summary.get("model", {})
    datasets = sorted({r["dataset"] for r in summary.get("results", []) if r.get("dataset")}
                      | {Path(p).name for p in config.get("data", {}).get("paths", [])})
    tags = ["vlsm", "image-segmentation", "medical-imaging", model.get("name", "model")]
    if summary.get("model", {}).get("name", "") != "unet-d":
        tags.append("vision-language")
    return {"library_name": "vlsm", "pipeline_tag": "image-segmentation", "tags": tags,
            "datasets": datasets, "metrics": ["dice", "iou"]}


def render_model_card(summary: dict, config: dict, preprocess: Optional[dict] = None,
                      load_path: str = "path/to/model", frozen: Optional[dict] = None) -> str:
    """The card's text. ``preprocess``: the model folder's input contract (``vlsm_config.json``'s); ``frozen``:
    its frozen-source record when the folder is slim (``vlsm_config.json``'s ``frozen``)."""
    model = summary.get("model", {})
    train = summary.get("train", {}) or {}
    data = config.get("data", {}) or {}
    recipe = config.get("train", {}) or {}
    spec = config.get("model", {}) or {}
    name = model.get("name") or spec.get("name", "model")
    label = model.get("label") or _paper_name(name)
    params = train.get("parameters", {}) or {}
    lines = ["---", yaml.safe_dump(front_matter(summary, config), sort_keys=False).rstrip(), "---", "",
             f"# {label}", ""]
    datasets = ", ".join(Path(p).name for p in data.get("paths", [])) or "—"
    lines += [f"A `vlsm` segmentation model: **{_paper_name(name)}** (`{name}`) trained on {datasets}. "
              f"{_description(name).rstrip('.')}.", ""]

    lines += ["## Model", "", "| | |", "|---|---|",
              f"| registered name | `{name}` |",
              f"| preset | `{model.get('preset') or spec.get('preset') or 'paper'}` |",
              f"| variant | `{model.get('variant') or spec.get('variant') or '—'}` |",
              f"| parameters, total | {_millions(params.get('total'))} |",
              f"| parameters, trainable | {_millions(params.get('trainable'))} |"]
    if spec.get("pretrained") or model.get("pretrained"):
        lines.append(f"| initial weights | `{spec.get('pretrained') or model.get('pretrained')}` |")
    for key, value in sorted((spec.get("overrides") or {}).items()):
        lines.append(f"| option `{key}` | `{json.dumps(value)}` |")
    if preprocess:
        lines.append(f"| input | {preprocess.get('image_size')} × {preprocess.get('image_size')} RGB, "
                     f"mean {tuple(preprocess.get('mean', ()))}, std {tuple(preprocess.get('std', ()))} |")
        if preprocess.get("tokenizer"):
            lines.append(f"| text | {preprocess['tokenizer']} tokenizer, {preprocess.get('context_length')} tokens |")
    lines.append("")

    lines += ["## Training data", ""]
    sizes = train.get("data", {}) or {}
    lines += ["| dataset | train split | val split | test split |", "|---|---|---|---|"]
    tested = {(r.get("dataset"), r.get("split")): r.get("n") for r in summary.get("results", [])}
    for path in data.get("paths", []):
        ds = Path(path).name
        counts = sizes.get(ds, {})

        def cell(split_key, ds=ds, counts=counts):
            split = data.get(split_key, split_key.split("_")[0])
            n = counts.get(split, tested.get((ds, split)))
            return f"`{split}`" + (f" ({n} images)" if n is not None else "")

        lines.append(f"| {ds} | {cell('train_split')} | {cell('val_split')} | {cell('test_split')} |")
    for path in data.get("test_paths", []):
        ds = Path(path).name
        n = tested.get((ds, data.get("test_split", "test")))
        lines.append(f"| {ds} (held out) | — | — | `{data.get('test_split', 'test')}`"
                     + (f" ({n} images) |" if n is not None else " |"))
    lines.append("")

    monitor = {"val_dice": "validation Dice", "val_loss": "validation loss",
               "val_bce": "validation BCE"}.get(train.get("monitor") or recipe.get("monitor", "val_dice"), "—")
    lines += ["## Training recipe", "", "| | |", "|---|---|",
              f"| epochs run | {train.get('epochs_run', '—')} (at most {recipe.get('epochs', '—')}; early stopping "
              f"on {monitor}, patience {recipe.get('early_stopping_patience', '—')}"
              f"{', min_delta ' + str(recipe['min_delta']) if recipe.get('min_delta') else ''}"
              f"{', at least ' + str(recipe['min_epochs']) + ' epochs' if recipe.get('min_epochs') else ''}) |",
              f"| optimiser | AdamW, lr {recipe.get('lr', '—')}, weight decay {recipe.get('weight_decay', '—')}, "
              + (f"ReduceLROnPlateau (factor {recipe.get('scheduler_factor', '—')}, patience "
                 f"{recipe.get('scheduler_patience', '—')})" if recipe.get("scheduler", "plateau") == "plateau"
                 else "constant rate")
              + (", continuing each epoch from the best weights so far" if recipe.get("reload_best_each_epoch")
                 else "") + " |",
              f"| batch size | {recipe.get('batch_size', '—')} |",
              f"| loss | {recipe.get('bce_weight', '—')} × BCE-with-logits + {recipe.get('dice_weight', '—')} × soft Dice"
              f"{' (over the whole batch)' if recipe.get('dice_reduction') == 'batch' else ''} |",
              f"| precision | {train.get('precision') or recipe.get('precision', '—')} on "
              f"{train.get('accelerator', '—')} × {train.get('devices', 1)} |",
              f"| augmentation | {'flips and colour jitter' if data.get('augment', True) else 'none'} |",
              f"| training prompt | {_prompt_text(data.get('prompt'))} |",
              f"| seed | {recipe.get('seed', '—')} |"]
    if train.get("best_val_dice") is not None:
        lines.append(f"| best validation Dice | {100 * train['best_val_dice']:.2f} % (checkpoint "
                     f"`{train.get('best_checkpoint', 'best.ckpt')}`) |")
    elif train.get("best_score") is not None:
        lines.append(f"| best {monitor} | {train['best_score']:.4f} (checkpoint "
                     f"`{train.get('best_checkpoint', 'best.ckpt')}`) |")
    if train.get("seconds") is not None:
        lines.append(f"| training time | {train['seconds']:.0f} s |")
    lines.append("")

    lines += ["## Results", "",
              "Per-image Dice and IoU at each image's original resolution, mean ± std (%) over the images "
              "(population std). " + (summary.get("empty_mask_policy", "").capitalize() + "." if
                                      summary.get("empty_mask_policy") else ""), "",
              "| dataset | split | n | Dice (%) | IoU (%) | prompt | threshold |", "|---|---|---|---|---|---|---|"]
    for r in summary.get("results", []):
        lines.append(f"| {r.get('dataset')} | {r.get('split')} | {r.get('n')} | "
                     f"{_pct(r.get('dice_mean'), r.get('dice_std'))} | {_pct(r.get('iou_mean'), r.get('iou_std'))} | "
                     f"`{r.get('prompt') or '—'}` | {r.get('threshold', 0.5)} |")
    if not summary.get("results"):
        lines.append("| — | — | — | — | — | — | — |")
    lines.append("")

    eval_prompt = data.get("eval_prompt") or ("p1" if data.get("prompt") == "random" else data.get("prompt"))
    uses_text = bool(preprocess.get("tokenizer")) if preprocess else name != "unet-d"
    lines += ["## Prompt", ""]
    if uses_text:
        lines += [f"Evaluated with {_prompt_text(eval_prompt)}. For new images give the prompt text itself "
                  f"(for example the class name), as the annotations' prompt types exist only for dataset images.", ""]
    else:
        lines += ["Image only: this model takes no text prompt.", ""]

    lines += ["## Intended use and limitations", "",
              "* **Research use only. Not a medical device**: not validated for diagnosis, treatment or any "
              "clinical decision; a clinician must not rely on its masks.",
              "* Trained and tested on the data above only; expect lower accuracy on other devices, sites, "
              "modalities or populations, and check it on your own data first.",
              "* Vision-language models are sensitive to the wording of the prompt; use prompts like the "
              "training prompts." if uses_text else
              "* The dataset's class is the only thing it segments.",
              "* Scores are per-image means over a small test split; see the standard deviation.", ""]

    prompt_arg = (", prompts=\"polyp\"" if uses_text else "")
    lines += ["## How to use", "", "```python", "import vlsm", "",
              f"predictor = vlsm.Predictor(\"{load_path}\")",
              f"[prediction] = predictor.predict(\"image.png\"{prompt_arg})",
              "prediction.mask           # (H, W) bool at the image's original size",
              "prediction.probabilities  # (H, W) float32", "",
              f"model = vlsm.load_pretrained(\"{load_path}\")   # the torch module itself", "```", "",
              "From the command line: `vlsm predict -i images/ -o masks/ --checkpoint MODEL_DIR"
              + (" --prompt \"polyp\"" if uses_text else "") + "`, `vlsm serve RUN` (a web app) or "
              "`vlsm export RUN --format onnx OUT` (ONNX Runtime, no PyTorch).", ""]

    lines += _weights_section(frozen, load_path)
    lines += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def _weights_section(frozen: Optional[dict], load_path: str) -> list:
    """Whether the folder holds every weight, or which source its frozen weights come from (slim)."""
    lines = ["## Weights", ""]
    if not frozen:
        return lines + ["This folder is **standalone**: `model.safetensors` holds every weight, so it loads without "
                        "any other file.", ""]
    sources = ", ".join(f"`{s}`" for s in frozen.get("sources", ())) or "its weight sources"
    run = load_path.split("/")[0] if "/" in load_path else "RUN"
    return lines + [f"This folder is **slim**: `model.safetensors` holds the trained tensors and buffers, not the "
                    f"{frozen.get('keys', '?')} frozen tensors that come unchanged from {sources}. "
                    f"`vlsm.load_pretrained` rebuilds those from that source (the Hugging Face cache or the folder) "
                    f"and checks them against their content digest `{frozen.get('digest', '?')}`; a missing or "
                    f"changed source is refused with a message saying so.", "",
                    f"For a copy that loads without the source (to share the model): "
                    f"`vlsm export {run} --standalone OUT`.", ""]


def write_model_card(model_dir, summary: dict, config: dict) -> Path:
    """Write ``model_dir/README.md`` for a trained model folder; returns its path."""
    model_dir = Path(model_dir)
    spec_path = model_dir / SPEC_FILE
    preprocess = frozen = None
    if spec_path.is_file():
        payload = json.loads(spec_path.read_text())
        preprocess, frozen = payload.get("preprocess"), payload.get("frozen")
    run_name = model_dir.parent.name or "RUN"
    text = render_model_card(summary, config, preprocess, load_path=f"{run_name}/{model_dir.name}", frozen=frozen)
    path = model_dir / CARD_FILE
    write_text_atomic(path, text)
    return path


__all__ = ["write_model_card", "render_model_card", "CARD_FILE"]
