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

from vlsm.data.prompts import RANDOM, is_prompt_key
from vlsm.models.base import SPEC_FILE
from vlsm.utils import write_text_atomic

CARD_FILE = "README.md"

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
    if is_prompt_key(prompt):
        return (f"`{prompt}`: each image's own `{prompt}` prompt from the dataset annotations "
                f"(medvlsm prompt types: p0 empty, p1 class name, p2–p6 shape, colour, size, number, location; "
                f"p7–p9 descriptive variants)")
    if prompt == RANDOM:
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
            "datasets": datasets, "metrics": ["dice", "iou"] + (
                ["hd95", "nsd"] if any(r.get("hd95_mean") is not None for r in summary.get("results", [])) else [])}


def render_model_card(summary: dict, config: dict, preprocess: Optional[dict] = None,
                      load_path: str = "path/to/model", frozen: Optional[dict] = None) -> str:
    """The card's text. ``preprocess``: the model folder's input contract (``vlsm_config.json``'s); ``frozen``:
    its frozen-source record when the folder is slim (``vlsm_config.json``'s ``frozen``)."""
    spec = config.get("model", {}) or {}
    name = summary.get("model", {}).get("name") or spec.get("name", "model")
    uses_text = bool(preprocess.get("tokenizer")) if preprocess else name != "unet-d"
    sections = [_title(summary, config, name), _model_section(summary, spec, name, preprocess),
                _data_section(summary, config.get("data", {}) or {}), _recipe_section(summary, config),
                _results_section(summary), _prompt_section(config.get("data", {}) or {}, uses_text),
                _limits_section(uses_text), _usage_section(load_path, uses_text), _weights_section(frozen, load_path),
                ["## Citation", "", "```bibtex", CITATION, "```", ""]]
    return "\n".join(line for section in sections for line in section)


def _title(summary: dict, config: dict, name: str) -> list:
    label = summary.get("model", {}).get("label") or _paper_name(name)
    datasets = ", ".join(Path(p).name for p in (config.get("data", {}) or {}).get("paths", [])) or "—"
    return ["---", yaml.safe_dump(front_matter(summary, config), sort_keys=False).rstrip(), "---", "", f"# {label}", "",
            f"A `vlsm` segmentation model: **{_paper_name(name)}** (`{name}`) trained on {datasets}. "
            f"{_description(name).rstrip('.')}.", ""]


def _model_section(summary: dict, spec: dict, name: str, preprocess: Optional[dict]) -> list:
    model = summary.get("model", {})
    params = (summary.get("train", {}) or {}).get("parameters", {}) or {}
    lines = ["## Model", "", "| | |", "|---|---|", f"| registered name | `{name}` |",
             f"| preset | `{model.get('preset') or spec.get('preset') or 'paper'}` |",
             f"| variant | `{model.get('variant') or spec.get('variant') or '—'}` |",
             f"| parameters, total | {_millions(params.get('total'))} |",
             f"| parameters, trainable | {_millions(params.get('trainable'))} |"]
    if spec.get("pretrained") or model.get("pretrained"):
        lines.append(f"| initial weights | `{spec.get('pretrained') or model.get('pretrained')}` |")
    lines += [f"| option `{key}` | `{json.dumps(value)}` |" for key, value in sorted((spec.get("overrides") or {}).items())]
    if preprocess:
        lines.append(f"| input | {preprocess.get('image_size')} × {preprocess.get('image_size')} RGB, "
                     f"mean {tuple(preprocess.get('mean', ()))}, std {tuple(preprocess.get('std', ()))} |")
        if preprocess.get("tokenizer"):
            lines.append(f"| text | {preprocess['tokenizer']} tokenizer, {preprocess.get('context_length')} tokens |")
    return lines + [""]


def _data_section(summary: dict, data: dict) -> list:
    sizes = (summary.get("train", {}) or {}).get("data", {}) or {}
    tested = {(r.get("dataset"), r.get("split")): r.get("n") for r in summary.get("results", [])}
    lines = ["## Training data", "", "| dataset | train split | val split | test split |", "|---|---|---|---|"]
    for path in data.get("paths", []):
        ds = Path(path).name

        cells = []
        for key in ("train_split", "val_split", "test_split"):
            split = data.get(key, key.split("_")[0])
            n = sizes.get(ds, {}).get(split, tested.get((ds, split)))
            cells.append(f"`{split}`" + (f" ({n} images)" if n is not None else ""))
        lines.append(f"| {ds} | {' | '.join(cells)} |")
    test_split = data.get("test_split", "test")
    for path in data.get("test_paths", []):
        n = tested.get((Path(path).name, test_split))
        lines.append(f"| {Path(path).name} (held out) | — | — | `{test_split}`" + (f" ({n} images) |" if n is not None else " |"))
    return lines + [""]


def recipe_rows(config: dict) -> list[tuple[str, str]]:
    """``[(label, text)]``: the recipe as the experiment ``config`` (its dict form) states it, one row per schema
    option marked for the card (:class:`vlsm.config.Card`) that ``config`` holds, in schema order."""
    from vlsm.config import SECTIONS, all_options

    rows = []
    for key, option in all_options().items():
        section, _, name = key.rpartition(".")
        values = config.get(section, {}) if section in SECTIONS else config
        if option.card is None or not isinstance(values, dict) or name not in values:
            continue
        when = option.card.when or {}
        if all(values.get(k, all_options()[f"{section}.{k}"].default) == v for k, v in when.items()):
            rows.append((option.card.label, option.card.text(values[name])))
    return rows


def _recipe_section(summary: dict, config: dict) -> list:
    from vlsm.config import get_option

    train = summary.get("train", {}) or {}
    monitor = train.get("monitor") or (config.get("train", {}) or {}).get("monitor", "val_dice")
    lines = ["## Training recipe", "", "| | |", "|---|---|", f"| epochs run | {train.get('epochs_run', '—')} |"]
    if train.get("best_val_dice") is not None:
        lines.append(f"| best validation Dice | {100 * train['best_val_dice']:.2f} % (checkpoint "
                     f"`{train.get('best_checkpoint', 'best.ckpt')}`) |")
    elif train.get("best_score") is not None:
        lines.append(f"| best {get_option('train.monitor').card.text(monitor)} | {train['best_score']:.4f} (checkpoint "
                     f"`{train.get('best_checkpoint', 'best.ckpt')}`) |")
    if train.get("seconds") is not None:
        lines.append(f"| training time | {train['seconds']:.0f} s |")
    if train.get("precision"):
        lines.append(f"| precision | {train['precision']} on {train.get('accelerator', '—')} × {train.get('devices', 1)} |")
    lines.append(f"| training prompt | {_prompt_text((config.get('data', {}) or {}).get('prompt'))} |")
    return lines + [f"| {label} | {text} |" for label, text in recipe_rows(config)] + [""]


def _results_section(summary: dict) -> list:
    policy = summary.get("empty_mask_policy", "")
    results = summary.get("results", [])
    boundary = any(r.get("hd95_mean") is not None for r in results)
    lines = ["## Results", "",
             "Per-image Dice and IoU at each image's original resolution, mean ± std (%) over the images "
             "(population std). " + (policy.capitalize() + "." if policy else ""), ""]
    if boundary:
        lines += [_boundary_text(results), ""]
    extra = " HD95 | NSD (%) |" if boundary else ""
    lines += [f"| dataset | split | n | Dice (%) | IoU (%) |{extra} prompt | threshold |",
              "|---|---|---|---|---|" + ("---|---|" if boundary else "") + "---|---|"]
    for r in results:
        cells = ""
        if boundary:
            unit = " mm" if r.get("distance_unit") == "mm" else " px" if r.get("hd95_mean") is not None else ""
            hd = "—" if r.get("hd95_mean") is None else f"{r['hd95_mean']:.2f} ± {r.get('hd95_std') or 0.0:.2f}{unit}"
            cells = f" {hd} | {_pct(r.get('nsd_mean'), r.get('nsd_std'))} |"
        lines.append(f"| {r.get('dataset')} | {r.get('split')} | {r.get('n')} | "
                     f"{_pct(r.get('dice_mean'), r.get('dice_std'))} | {_pct(r.get('iou_mean'), r.get('iou_std'))} |"
                     f"{cells} `{r.get('prompt') or '—'}` | {r.get('threshold', 0.5)} |")
    if not results:
        lines.append("| — | — | — | — | — | — | — |")
    inference = _inference_text(summary)
    return lines + ["", inference, ""] if inference else lines + [""]


def _boundary_text(results: list) -> str:
    tolerance = next((r.get("nsd_tolerance") for r in results if r.get("nsd_tolerance") is not None), 2.0)
    return (f"HD95 and NSD are MONAI's (`compute_hausdorff_distance` at the 95th percentile, `compute_surface_dice` "
            f"at a tolerance of {tolerance:g}), in pixels (px) or, where the image files give a pixel spacing, mm; "
            f"HD95 is better when lower. Both masks empty: HD95 0 and NSD 1; one empty: HD95 the image's diagonal "
            f"and NSD 0.")


def _inference_text(summary: dict) -> str:
    """How the masks were made: the threshold and post-processing chosen on validation, test-time augmentation."""
    record = (summary.get("train", {}) or {}).get("postprocessing") or {}
    parts = []
    if record:
        dice = record.get("validation_dice", {}) or {}
        rule = "min_size:{:g}".format(record["min_size"]) if record.get("rule") == "min_size" else record.get("rule")
        chosen = {"none": "no post-processing", "largest_component": "keep only the largest connected component"}.get(
            rule, f"drop connected components under {100 * (record.get('min_size') or 0):g} % of the image")
        tuned = "tuned" if record.get("threshold_tuned") else "fixed"
        parts.append(f"On the `{record.get('split', 'val')}` split ({record.get('n')} images) after training: "
                     f"threshold {record.get('threshold')} ({tuned}), {chosen}"
                     + (f" (validation Dice {100 * dice['none']:.2f} % without, {100 * dice[rule]:.2f} % with)"
                        if rule != "none" and rule in dice and "none" in dice else "")
                     + "; `vlsm.Predictor`, `vlsm predict`, `vlsm evaluate` and `vlsm serve` apply it "
                       "(`--no-postprocess` turns the post-processing off).")
    if any(r.get("tta") for r in summary.get("results", [])):
        parts.append("Test-time augmentation: the probabilities are the mean over the image and its horizontal, "
                     "vertical and double flips.")
    return " ".join(parts)


def _prompt_section(data: dict, uses_text: bool) -> list:
    if not uses_text:
        return ["## Prompt", "", "Image only: this model takes no text prompt.", ""]
    eval_prompt = data.get("eval_prompt") or ("p1" if data.get("prompt") == RANDOM else data.get("prompt"))
    return ["## Prompt", "", f"Evaluated with {_prompt_text(eval_prompt)}. For new images give the prompt text itself "
            f"(for example the class name), as the annotations' prompt types exist only for dataset images.", ""]


def _limits_section(uses_text: bool) -> list:
    return ["## Intended use and limitations", "",
            "* **Research use only. Not a medical device**: not validated for diagnosis, treatment or any "
            "clinical decision; a clinician must not rely on its masks.",
            "* Trained and tested on the data above only; expect lower accuracy on other devices, sites, "
            "modalities or populations, and check it on your own data first.",
            "* Vision-language models are sensitive to the wording of the prompt; use prompts like the "
            "training prompts." if uses_text else "* The dataset's class is the only thing it segments.",
            "* Scores are per-image means over a small test split; see the standard deviation.", ""]


def _usage_section(load_path: str, uses_text: bool) -> list:
    prompt_arg = ", prompts=\"polyp\"" if uses_text else ""
    return ["## How to use", "", "```python", "import vlsm", "",
            f"predictor = vlsm.Predictor(\"{load_path}\")",
            f"[prediction] = predictor.predict(\"image.png\"{prompt_arg})",
            "prediction.mask           # (H, W) bool at the image's original size",
            "prediction.probabilities  # (H, W) float32", "",
            f"model = vlsm.load_pretrained(\"{load_path}\")   # the torch module itself", "```", "",
            "From the command line: `vlsm predict -i images/ -o masks/ --checkpoint MODEL_DIR"
            + (" --prompt \"polyp\"" if uses_text else "") + "`, `vlsm serve RUN` (a web app) or "
            "`vlsm export RUN --format onnx OUT` (ONNX Runtime, no PyTorch).", ""]


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


__all__ = ["write_model_card", "render_model_card", "recipe_rows", "CARD_FILE"]
