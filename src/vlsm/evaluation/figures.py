"""Pictures of predictions: a single-image overlay and the paper-style qualitative figure.

Colours were chosen so that the three regions stay apart from each other and from typical
backgrounds (reddish endoscopy, grey ultrasound/X-ray, dark and skin tones) in normal vision and in
simulated protanopia, deuteranopia and tritanopia (Machado et al. 2009, CIELAB distances):

* true positive (predicted and in the ground truth): sky blue ``#56B4E9``
* false positive (predicted, not in the ground truth): orange ``#E69F00``
* false negative (in the ground truth, missed): violet ``#785EF0``
* a prediction shown without ground truth: sky blue, like a true positive

Every region is filled with its colour at ``alpha`` over the image and outlined at full colour, so
thin structures stay visible after the figure is scaled down.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from vlsm.utils import atomic_file

TP_COLOUR = (86, 180, 233)
FP_COLOUR = (230, 159, 0)
FN_COLOUR = (120, 94, 240)
PRED_COLOUR = TP_COLOUR

FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


# ---------------------------------------------------------------------------------------------
# Single-image overlay
# ---------------------------------------------------------------------------------------------
def _as_rgb_uint8(image, what: str = "image") -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise ValueError(f"{what} must be (H, W), (H, W, 3) or (H, W, 4), got shape {img.shape}")
    img = img[..., :3]
    if img.dtype == np.uint8:
        return img.copy()
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    img = img.astype(np.float64)
    if img.size and img.max() <= 1.0 and img.min() >= 0.0:
        img = img * 255.0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _as_mask(mask, shape: tuple, what: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.shape != tuple(shape):
        raise ValueError(f"{what} has shape {m.shape} but the image is {tuple(shape)}: resize the mask to the "
                         f"image's original size first")
    if m.dtype == bool:
        return m
    if not np.isin(m, (0, 1)).all():
        raise ValueError(f"{what} must be a boolean mask (or 0/1), got values in [{m.min()}, {m.max()}]; "
                         f"threshold probabilities first (e.g. prob > 0.5)")
    return m.astype(bool)


def boundary(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels of its edge (4-connectivity; outside the image
    counts as background, so a mask touching the border is outlined there)."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1),
                                   iterations=max(1, int(width)), border_value=0)
    return mask & ~inner


def default_line_width(shape: tuple) -> int:
    """Outline width in pixels that survives scaling the image to a ~300-pixel panel."""
    return max(1, int(round(max(shape[:2]) / 300)))


def overlay(image, pred, gt=None, *, alpha: float = 0.45, outline: Optional[int] = None) -> np.ndarray:
    """Blend a predicted mask (and its errors against ``gt``) onto an image.

    Args:
        image: ``(H, W, 3)`` uint8 (or float in [0, 1], or grayscale ``(H, W)``).
        pred: boolean ``(H, W)`` prediction (0/1 integers accepted).
        gt: optional boolean ``(H, W)`` ground truth; then true positives, false positives and false
            negatives get their own colours (see the module docstring).
        alpha: opacity of the filled regions.
        outline: outline width in pixels (``0`` = none, ``None`` = by image size).

    Returns a new ``(H, W, 3)`` uint8 array; the inputs are not modified.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = _as_rgb_uint8(image)
    shape = rgb.shape[:2]
    p = _as_mask(pred, shape, "prediction")
    if gt is None:
        regions = [(p, PRED_COLOUR)]
    else:
        g = _as_mask(gt, shape, "ground truth")
        regions = [(p & g, TP_COLOUR), (p & ~g, FP_COLOUR), (~p & g, FN_COLOUR)]
    width = default_line_width(shape) if outline is None else int(outline)
    out = rgb.astype(np.float32)
    for region, colour in regions:
        if region.any():
            out[region] = (1.0 - alpha) * out[region] + alpha * np.asarray(colour, np.float32)
    for region, colour in regions:
        if width > 0 and region.any():
            out[boundary(region, width)] = colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Qualitative figure
# ---------------------------------------------------------------------------------------------
@dataclass
class FigureInfo:
    path: Path
    width_px: int
    height_px: int
    dpi: int
    #: {model label: {image name: Dice in [0, 1]}} as printed in the panel titles
    dice: dict = field(default_factory=dict)


def figure_format(path: Union[str, Path]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise ValueError(f"cannot tell the figure format from {path}: use a name ending in "
                         f"{', '.join(FIGURE_FORMATS)}")
    return FIGURE_FORMATS[suffix]


def _shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale an RGB array so its longer side is at most ``max_side`` (keeps figures small)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    from PIL import Image

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def draw_qualitative(images: Sequence[tuple], predictions: Mapping[str, Mapping[str, np.ndarray]],
                     out_path: Union[str, Path], *, dpi: int = 150, panel_inches: float = 1.8,
                     alpha: float = 0.45, show_names: bool = True, overwrite: bool = True) -> FigureInfo:
    """Draw rows = images, columns = image, ground truth, then one overlay per model.

    Args:
        images: ``[(name, rgb array (H, W, 3), gt bool array (H, W)), ...]``, one row each.
        predictions: ``{model label: {image name: bool array (H, W)}}``; columns follow its order.
        out_path: ``.png``, ``.pdf`` or ``.svg``; written atomically (temporary file, then rename).
        dpi: resolution of raster output (PNG); the pixel size is ``figure inches × dpi``.
        panel_inches: width of one panel; a row's height follows its image's aspect ratio.
        alpha: opacity of the TP/FP/FN fills.
        show_names: write each image's name beside its row.
        overwrite: replace an existing file (the CLI passes ``False`` unless ``--overwrite``).

    Each model panel is titled with the image's Dice (in %, computed with
    :func:`vlsm.evaluation.metrics.dice_score`, so empty ground truth + empty prediction = 100).
    """
    out_path = Path(out_path)
    fmt = figure_format(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} already exists; choose another name or pass --overwrite")
    if not out_path.parent.is_dir():
        raise FileNotFoundError(f"the folder of {out_path} does not exist; create it first")
    if not images:
        raise ValueError("no images to draw: pass at least one (name, image, ground truth)")
    if not predictions:
        raise ValueError("no predictions to draw: pass at least one model's masks")
    rows, dice = _figure_rows(images, predictions, alpha)
    fig, width_px, height_px = _render(rows, dice, list(predictions), dpi=dpi, panel_inches=panel_inches,
                                       show_names=show_names)
    _save_atomic(fig, out_path, fmt, dpi)
    return FigureInfo(path=out_path, width_px=width_px, height_px=height_px, dpi=dpi, dice=dice)


def _figure_rows(images: Sequence[tuple], predictions: Mapping[str, Mapping[str, np.ndarray]], alpha: float):
    """``([(name, rgb, gt, [overlay per model])], {label: {name: Dice}})``, every input checked."""
    from vlsm.evaluation.metrics import dice_score

    labels = list(predictions)
    rows, dice = [], {label: {} for label in labels}
    seen = set()
    for item in images:
        if len(item) != 3:
            raise ValueError("each image must be a (name, rgb array, ground-truth mask) triple")
        name, image, gt = item
        if name in seen:
            raise ValueError(f"image {name!r} is listed twice")
        seen.add(name)
        rgb = _as_rgb_uint8(image, f"image {name!r}")
        g = _as_mask(gt, rgb.shape[:2], f"ground truth of {name!r}")
        panels = []
        for label in labels:
            if name not in predictions[label]:
                have = ", ".join(sorted(predictions[label])[:5]) or "none"
                raise ValueError(f"model {label!r} has no prediction for image {name!r} (it has: {have})")
            p = _as_mask(predictions[label][name], rgb.shape[:2], f"prediction of {label!r} for {name!r}")
            dice[label][name] = float(dice_score(p, g))
            panels.append(overlay(rgb, p, g, alpha=alpha))
        rows.append((name, rgb, g, panels))
    return rows, dice


def _render(rows: list, dice: dict, labels: list, *, dpi: int, panel_inches: float, show_names: bool):
    """The matplotlib figure of the rows, with its exact size in pixels: ``(figure, width_px, height_px)``."""
    from matplotlib.figure import Figure

    # Layout in inches; axes are placed explicitly so the output size is exactly known.
    ncols = 2 + len(labels)
    left = 0.28 if show_names else 0.05
    gap, header, title_h, legend_h, right = 0.05, 0.32, 0.2, 0.42, 0.05
    heights = [panel_inches * float(np.clip(r[1].shape[0] / r[1].shape[1], 0.3, 3.0)) for r in rows]
    width_in = left + ncols * panel_inches + (ncols - 1) * gap + right
    height_in = header + sum(h + title_h for h in heights) + gap * (len(rows) - 1) + legend_h
    # Whole pixels, so the PNG is exactly width_px x height_px.
    width_px, height_px = int(round(width_in * dpi)), int(round(height_in * dpi))
    width_in, height_in = width_px / dpi, height_px / dpi
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    max_side = int(round(panel_inches * max(dpi, 100) * 2))

    def add_axes(x_in, y_top_in, w_in, h_in):
        ax = fig.add_axes((x_in / width_in, 1 - (y_top_in + h_in) / height_in, w_in / width_in, h_in / height_in))
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        return ax

    for j, title in enumerate(["Image", "Ground truth"] + labels):
        x = left + j * (panel_inches + gap) + panel_inches / 2
        fig.text(x / width_in, 1 - (header * 0.45) / height_in, title, ha="center", va="center",
                 fontsize=8, fontweight="bold")
    y = header
    for (name, rgb, g, panels), h in zip(rows, heights):
        y_img = y + title_h
        pictures = [rgb, np.where(g[..., None], 255, 0).astype(np.uint8).repeat(3, axis=-1)] + panels
        for j, pic in enumerate(pictures):
            ax = add_axes(left + j * (panel_inches + gap), y_img, panel_inches, h)
            ax.imshow(_shrink(pic, max_side), interpolation="antialiased", aspect="auto")
            if j >= 2:
                ax.set_title(f"Dice {100 * dice[labels[j - 2]][name]:.1f}", fontsize=7, pad=2)
        if show_names:
            fig.text((left * 0.5) / width_in, 1 - (y_img + h / 2) / height_in, _short(name), rotation=90,
                     ha="center", va="center", fontsize=6)
        y = y_img + h + gap
    _legend(fig)
    return fig, width_px, height_px


def _legend(fig) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=np.asarray(c) / 255, edgecolor="none", label=lab) for c, lab in
               ((TP_COLOUR, "true positive"), (FP_COLOUR, "false positive"), (FN_COLOUR, "false negative"))]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, 0.0), bbox_transform=fig.transFigure)


def _short(name: str, limit: int = 32) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _save_atomic(fig, out_path: Path, fmt: str, dpi: int) -> None:
    with atomic_file(out_path) as fh:
        fig.savefig(fh, format=fmt, dpi=dpi)


# ---------------------------------------------------------------------------------------------
# From run folders
# ---------------------------------------------------------------------------------------------
SEARCH_SPLITS = ("test", "val", "train")


def _splits_of(path: Path) -> list:
    """The dataset's splits, test first, then val, train and any others."""
    from vlsm.data import detect_layout
    from vlsm.data.folder import folder_splits
    from vlsm.data.medvlsm import available_splits

    found = available_splits(path / "anns") if detect_layout(path) == "medvlsm" else list(folder_splits(path))
    return [s for s in SEARCH_SPLITS if s in found] + [s for s in found if s not in SEARCH_SPLITS]


def find_records(names: Sequence[str], data_paths: Sequence[Union[str, Path]]) -> list:
    """The dataset record of each image name: the test split first, then val, train and other splits.

    A name matches a record's name, its image file name or its image file stem. A name found nowhere
    is an error listing the closest names.
    """
    import difflib

    from vlsm.data import load_split

    if not data_paths:
        raise ValueError("no dataset to look the images up in: pass --data PATH")
    wanted = list(dict.fromkeys(names))
    found: dict = {}
    all_names: list = []
    for path in data_paths:
        for split in _splits_of(Path(path)):
            for rec in load_split(path, split):
                all_names.append(rec.name)
                for key in {rec.name, rec.image_path.name, rec.image_path.stem}:
                    if key in wanted and key not in found:
                        found[key] = rec
            if len(found) == len(wanted):
                break
        if len(found) == len(wanted):
            break
    missing = [n for n in wanted if n not in found]
    if missing:
        hints = []
        for n in missing:
            close = difflib.get_close_matches(n, sorted(set(all_names)), n=3, cutoff=0.5)
            hints.append(f"{n!r} (closest: {', '.join(close)})" if close else f"{n!r} (no similar name)")
        raise ValueError(f"image(s) not found in {', '.join(str(p) for p in data_paths)}: " + "; ".join(hints))
    records = [found[n] for n in wanted]
    no_mask = [r.name for r in records if r.mask_path is None]
    if no_mask:
        raise ValueError(f"image(s) without a ground-truth mask cannot be drawn against one: {', '.join(no_mask)}")
    return records


def qualitative_from_runs(run_dirs: Sequence[Union[str, Path]], image_names: Sequence[str],
                          out_path: Union[str, Path], *, data: Optional[Sequence] = None,
                          threshold: Optional[float] = None, device: str = "auto", batch_size: int = 4,
                          overwrite: bool = False, **draw_kwargs) -> FigureInfo:
    """Predict the named images with each run's model and draw the qualitative figure.

    Each run contributes one column, labelled as in its ``summary.json``, predicted with the run's
    evaluation prompt and threshold (``threshold`` overrides the latter) at the mask's original size,
    exactly as ``vlsm evaluate`` scores it. Images are looked up in ``data`` or else in the runs'
    datasets (see :func:`find_records`).
    """
    from vlsm.data import load_image, load_mask
    from vlsm.evaluation.evaluate import EVAL_PRECISION
    from vlsm.predictor import Predictor

    out_path = Path(out_path)
    figure_format(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} already exists; choose another name or pass --overwrite")
    if not run_dirs:
        raise ValueError("no runs given: pass at least one run folder")
    if not image_names:
        raise ValueError("no images given: pass --images NAME ...")
    models = []
    for run in map(Path, run_dirs):
        # the label its tables use (its summary.json's), scored exactly as `vlsm evaluate` scores
        predictor = Predictor(run, device=device, precision=EVAL_PRECISION, batch_size=batch_size)
        label, cfg = predictor.label, predictor.config
        if any(label == m[0] for m in models):
            other = next(m[3] for m in models if m[0] == label)
            raise ValueError(f"{other} and {run} are both labelled {label!r}; pass only one of them")
        prompt = cfg.data.resolved_eval_prompt() if cfg else "p1"
        thr = threshold if threshold is not None else predictor.threshold  # (the run's: tuned, else eval.threshold)
        paths = (list(cfg.data.paths) + list(cfg.data.test_paths)) if cfg else []
        models.append((label, predictor, (prompt, thr, paths), run))
    if data:
        data_paths = list(data)
    else:
        data_paths, seen = [], set()
        for _, _, (_, _, paths), _ in models:
            for p in paths:
                if Path(p).resolve() not in seen:
                    seen.add(Path(p).resolve())
                    data_paths.append(p)
    records = find_records(image_names, data_paths)
    images = []
    for rec in records:
        gt = load_mask(rec.mask_path)
        rgb = np.asarray(load_image(rec.image_path).convert("RGB"))
        if rgb.shape[:2] != gt.shape:
            raise ValueError(f"{rec.image_path} is {rgb.shape[1]}x{rgb.shape[0]} but its mask {rec.mask_path} is "
                             f"{gt.shape[1]}x{gt.shape[0]}: fix the dataset")
        images.append((rec.name, rgb, gt))
    predictions = {}
    for label, predictor, (prompt, thr, _), _ in models:
        predictions[label] = {p.name: p.mask for p in predictor.predict_records(records, prompt=prompt, threshold=thr)}
    return draw_qualitative(images, predictions, out_path, overwrite=overwrite, **draw_kwargs)


__all__ = ["FN_COLOUR", "FP_COLOUR", "FigureInfo", "PRED_COLOUR", "TP_COLOUR", "boundary", "default_line_width",
           "draw_qualitative", "figure_format", "find_records", "overlay", "qualitative_from_runs"]
