"""A small synthetic polyp dataset in the medvlsm layout, for demos, tests and smoke runs.

Each image shows a textured pinkish "mucosa" (low-frequency colour noise, vessel-like dark lines,
vignetting) with one or two polyp-like blobs: smooth irregular ellipses, reddish or yellowish,
with dome shading, a specular highlight and a darker rim. Blob colours overlap the background's
(a single colour threshold does not solve it) but shape, shading and edges make the blobs
learnable by a small CNN in about a minute on a CPU. Masks are PNG 0/255; ``anns/*.json`` carry
medvlsm-style prompts ``p0``..``p9`` generated from each mask (:mod:`vlsm.data.prompt_gen`) with
class name ``polyp``.

The output depends only on the arguments: the same seed gives byte-identical files (given the same
numpy/Pillow/zlib versions). It is written to a temporary folder and renamed into place, so an
interrupted run leaves nothing half-written.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vlsm.data._util import atomic_directory
from vlsm.data.masks import save_mask
from vlsm.data.prompt_gen import generate_prompts

CLASS_NAME = "polyp"
DESCRIPTIONS = (
    "a raised growth on the inner wall of the bowel",
    "a rounded lump of tissue in the colon",
    "an abnormal bump sticking out of the mucosa",
)
MARKER = "synthetic.json"


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse random grid upsampled bicubically."""
    coarse = rng.uniform(0, 255, size=(cells, cells, channels)).astype(np.uint8)
    img = Image.fromarray(coarse if channels > 1 else coarse[..., 0])
    up = np.asarray(img.resize((size, size), Image.BICUBIC), dtype=np.float32)
    if channels == 1:
        up = up[..., None]
    return up / 127.5 - 1.0


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    base = np.array([rng.uniform(175, 215), rng.uniform(85, 120), rng.uniform(80, 110)], np.float32)
    img = base + 22.0 * _smooth_noise(rng, s, 5, 1) + 8.0 * _smooth_noise(rng, s, 9, 3)
    # vessels: a few thin dark wandering lines, slightly blurred
    layer = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(3, 7))):
        x, y = rng.uniform(0, s, 2)
        angle = rng.uniform(0, 2 * np.pi)
        points = [(x, y)]
        for _ in range(int(rng.integers(6, 14))):
            angle += rng.normal(0, 0.5)
            step = s * rng.uniform(0.04, 0.09)
            x, y = x + step * np.cos(angle), y + step * np.sin(angle)
            points.append((x, y))
        draw.line(points, fill=int(rng.integers(90, 200)), width=1)
    vessels = np.asarray(layer.filter(ImageFilter.GaussianBlur(0.6)), np.float32)[..., None] / 255.0
    img = img * (1 - 0.45 * vessels) + np.array([120, 30, 40], np.float32) * 0.45 * vessels
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / (s - 1) * 2 - 1
    vignette = 1.0 - 0.32 * np.clip(xx ** 2 + yy ** 2, 0, 2) / 2
    return img * vignette[..., None]


def _blob_field(rng: np.random.Generator, s: int, cx: float, cy: float, a: float, b: float):
    """(rho, radius) over the image: a pixel is inside the blob where rho <= radius."""
    theta = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
    rho = np.sqrt(u ** 2 + v ** 2)
    phi = np.arctan2(v, u)
    radius = np.ones_like(rho)
    for k in (2, 3, 4):
        radius += rng.uniform(0.0, 0.09) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    return rho, radius, u, v


def _render(rng: np.random.Generator, s: int) -> tuple[np.ndarray, np.ndarray]:
    img = _background(rng, s)
    mask = np.zeros((s, s), dtype=bool)
    n_blobs = 1 if rng.random() < 0.7 else 2
    placed: list[tuple[float, float, float]] = []
    for i in range(n_blobs):
        for _attempt in range(50):
            scale = rng.uniform(0.11, 0.22) * (0.7 if i else 1.0)
            a = s * scale * rng.uniform(0.9, 1.2)
            b = a * rng.uniform(0.6, 1.0)
            cx, cy = rng.uniform(0.2 * s, 0.8 * s, 2)
            if all(np.hypot(cx - px, cy - py) > 1.15 * (a + pr) for px, py, pr in placed):
                break
        placed.append((cx, cy, a))
        rho, radius, u, v = _blob_field(rng, s, cx, cy, a, b)
        inside = rho <= radius
        # soft edge of about one pixel for the picture; the mask is the hard shape
        alpha = np.clip((radius - rho) * min(a, b) + 0.5, 0.0, 1.0)[..., None]
        if rng.random() < 0.5:   # reddish
            colour = np.array([rng.uniform(200, 235), rng.uniform(95, 130), rng.uniform(80, 105)], np.float32)
        else:                    # yellowish
            colour = np.array([rng.uniform(210, 240), rng.uniform(150, 185), rng.uniform(95, 125)], np.float32)
        depth = np.sqrt(np.clip(1.0 - (rho / radius) ** 2, 0.0, 1.0))
        shade = 0.72 + 0.38 * depth                                  # dome lighting
        hx, hy = rng.uniform(-0.45, -0.15, 2)
        spec = np.exp(-((u - hx) ** 2 + (v - hy) ** 2) / 0.03)      # specular highlight
        rim = 1.0 - 0.18 * np.clip((rho / radius - 0.8) / 0.2, 0.0, 1.0)
        texture = 1.0 + 0.06 * _smooth_noise(rng, s, 12, 1)[..., 0]
        blob = colour * (shade * rim * texture)[..., None] + 70.0 * spec[..., None]
        img = img * (1 - alpha) + blob * alpha
        mask |= inside
    img = img + rng.normal(0.0, 3.0, size=img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), mask


MIN_IMAGE_SIZE = 16


def _check_arguments(**values) -> None:
    """Refuse a bad argument in one line that names it as the parameter (``n_train``), which is the
    command's flag with dashes (``--n-train``)."""
    for name, value in values.items():
        minimum = MIN_IMAGE_SIZE if name == "image_size" else 0
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if values["n_train"] + values["n_val"] + values["n_test"] == 0:
        raise ValueError("n_train, n_val and n_test are all 0: give at least one split an image")


def make_synthetic_dataset(out_dir, n_train: int = 48, n_val: int = 12, n_test: int = 12,
                           image_size: int = 96, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the dataset to ``out_dir`` (medvlsm layout) and return ``out_dir``.

    ``n_train``, ``n_val``, ``n_test`` >= 0 (not all 0; an evaluation-only dataset may have no training
    images), ``image_size`` >= 16 and ``seed`` >= 0; a bad value raises ``ValueError`` naming the parameter.

    If ``out_dir`` already holds a synthetic dataset made with the same arguments it is reused;
    any other non-empty ``out_dir`` is refused unless ``overwrite`` (which replaces only a synthetic dataset).
    """
    _check_arguments(n_train=n_train, n_val=n_val, n_test=n_test, image_size=image_size, seed=seed)
    out_dir = Path(out_dir)
    params = {"n_train": int(n_train), "n_val": int(n_val), "n_test": int(n_test),
              "image_size": int(image_size), "seed": int(seed)}
    if out_dir.is_dir() and any(out_dir.iterdir()):
        marker = out_dir / MARKER
        if marker.is_file() and not overwrite:
            try:
                if json.loads(marker.read_text()) == params:
                    return out_dir
            except json.JSONDecodeError:
                pass
        if not overwrite:
            raise FileExistsError(f"{out_dir} is not empty (and not a synthetic dataset made with these "
                                  f"arguments): choose another folder or pass overwrite=True")
        if not marker.is_file():
            raise FileExistsError(f"refusing to overwrite {out_dir}: it is not a synthetic dataset written by vlsm "
                                  f"(no {MARKER} in it). Choose a new folder, or remove {out_dir} yourself")
    rng = np.random.default_rng(seed)
    with atomic_directory(out_dir, overwrite=True) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        (tmp / "anns").mkdir()
        index = 0
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            entries = []
            for _ in range(n):
                name = f"synth_{index:04d}"
                index += 1
                image, mask = _render(rng, image_size)
                Image.fromarray(image, "RGB").save(tmp / "images" / f"{name}.png", format="PNG")
                save_mask(tmp / "masks" / f"{name}.png", mask)
                ys, xs = np.nonzero(mask)
                entries.append({
                    "img_name": f"{name}.png", "mask_name": f"{name}.png",
                    "bbox": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())],
                    "cat": 0, "segment_id": name,
                    "prompts": generate_prompts(mask, image, CLASS_NAME, DESCRIPTIONS),
                })
            (tmp / "anns" / f"{split}.json").write_text(json.dumps(entries, indent=1))
        (tmp / MARKER).write_text(json.dumps(params))
    return out_dir


__all__ = ["make_synthetic_dataset"]
