"""Statistics for result tables: bootstrap confidence intervals, paired tests, mean ± std.

Conventions (the same everywhere in `vlsm`):

* **Standard deviation** is the *population* standard deviation over the test images
  (``ddof=0``, NumPy's default), the same number ``summary.json`` stores as ``dice_std`` /
  ``iou_std``. It describes the spread of per-image scores, not the uncertainty of the mean;
  the bootstrap confidence interval does the latter. See :data:`STD_DDOF`.
* **Bootstrap** resamples test images with replacement: :func:`scipy.stats.bootstrap` seeded with
  ``numpy.random.default_rng(seed)`` (percentile or BCa intervals).
* **Paired test** is the two-sided Wilcoxon signed-rank test on per-image differences, with cases
  matched by image name; zero differences are dropped (SciPy's default ``zero_method="wilcox"``).
* **Several seeds** of one model (one run per training seed, scored on the same images): their mean ± std is over
  the runs' means (population std), their CI a hierarchical bootstrap that resamples the seeds, then the images
  (:func:`hierarchical_bootstrap_ci`), and the paired test pairs the same images of the same seeds.
"""
from __future__ import annotations

import inspect
import math
import warnings
from typing import Callable, Mapping, NamedTuple, Optional

import numpy as np

from vlsm.evaluation.metrics import STD_DDOF, mean_std
from vlsm.utils import preview

#: Resample matrices larger than this many indices are drawn in batches to bound memory.
_MAX_INDICES_PER_BATCH = 5_000_000


def _as_1d_finite(values, what: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{what}: no values given (an empty evaluation?)")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{what}: {int(bad.sum())} of {arr.size} values are NaN or infinite; "
                         f"fix the per-case scores before computing statistics")
    return arr


def _apply_stat(stat: Callable, samples: np.ndarray) -> np.ndarray:
    """``stat`` over the last axis of an N-d array; works for axis-aware and plain functions."""
    try:
        out = np.asarray(stat(samples, axis=-1), dtype=np.float64)
        if out.shape == samples.shape[:-1]:
            return out
    except TypeError:
        pass
    flat = samples.reshape(-1, samples.shape[-1])
    out = np.array([float(stat(row)) for row in flat], dtype=np.float64)
    return out.reshape(samples.shape[:-1])


def default_batch(n: int, n_resamples: int) -> Optional[int]:
    """The ``batch`` :func:`bootstrap_ci` uses when none is given (``None`` = all at once)."""
    if n * n_resamples <= _MAX_INDICES_PER_BATCH:
        return None
    return max(1, _MAX_INDICES_PER_BATCH // n)


def bootstrap_distribution(values, stat: Callable = np.mean, n_resamples: int = 10000, seed: int = 0,
                           batch: Optional[int] = None) -> np.ndarray:
    """The statistic on ``n_resamples`` resamples (with replacement) of ``values``, drawn by
    :func:`scipy.stats.bootstrap` from ``numpy.random.default_rng(seed)``. ``batch=None`` draws
    everything at once unless that would exceed a few million indices."""
    x = _as_1d_finite(values)
    with warnings.catch_warnings():  # a constant sample is fine here: its distribution is constant
        warnings.simplefilter("ignore")
        return np.asarray(_scipy_bootstrap(x, stat, n_resamples, 0.95, seed, "percentile", batch)
                          .bootstrap_distribution, dtype=np.float64)


def bootstrap_ci(values, stat: Callable = np.mean, n_resamples: int = 10000, confidence: float = 0.95,
                 seed: int = 0, method: str = "percentile",
                 batch: Optional[int] = None) -> tuple[float, float]:
    """Two-sided bootstrap confidence interval ``(low, high)`` of ``stat(values)``, by
    :func:`scipy.stats.bootstrap`.

    Args:
        values: per-case scores (1-D; NaN is an error).
        stat: the statistic; called as ``stat(array, axis=-1)`` when it accepts ``axis``.
        n_resamples: number of bootstrap resamples.
        confidence: confidence level, e.g. ``0.95``.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same interval.
        method: ``"percentile"`` or ``"bca"`` (bias-corrected and accelerated).
        batch: resamples per batch of index draws (SciPy's ``batch``, which shapes the random
            stream); ``None`` = all at once for typical test-set sizes.

    A constant sample (including a single value) gives ``(value, value)``.
    """
    x = _as_1d_finite(values)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    methods = {"percentile": "percentile", "bca": "BCa"}
    if method.lower() not in methods:
        raise ValueError(f"unknown bootstrap method {method!r}; use 'percentile' or 'bca'")
    if np.all(x == x[0]):
        v = float(_apply_stat(stat, x[None, :])[0])
        return v, v
    res = _scipy_bootstrap(x, stat, n_resamples, confidence, seed, methods[method.lower()], batch)
    low, high = res.confidence_interval
    return float(low), float(high)


def _scipy_bootstrap(x: np.ndarray, stat: Callable, n_resamples: int, confidence: float, seed: int,
                     method: str, batch: Optional[int]):
    from scipy import stats as sstats

    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if batch is None:
        batch = default_batch(x.size, n_resamples)
    elif batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")

    def statistic(sample, axis=-1):
        return _apply_stat(stat, np.moveaxis(np.asarray(sample), axis, -1))

    return sstats.bootstrap((x,), statistic, vectorized=True, n_resamples=n_resamples,
                            confidence_level=confidence, method=method, batch=batch, **scipy_rng_kwargs(seed))


def scipy_rng_kwargs(seed: int) -> dict:
    """Keyword that seeds :func:`scipy.stats.bootstrap` (``rng`` in SciPy >= 1.15, else ``random_state``)."""
    from scipy import stats as sstats

    params = inspect.signature(sstats.bootstrap).parameters
    key = "rng" if "rng" in params else "random_state"
    return {key: np.random.default_rng(seed)}


def hierarchical_bootstrap_distribution(matrix, n_resamples: int = 10000, seed: int = 0,
                                        batch: Optional[int] = None) -> np.ndarray:
    """The mean of ``n_resamples`` two-stage resamples of a (seeds x images) score ``matrix`` (every seed scored on
    the same images): each draws the seeds with replacement, then the images with replacement, and averages the
    drawn seeds' scores on the drawn images. The seeds' disagreement and the images' spread both move it; with one
    seed it is an image bootstrap. Drawn from ``numpy.random.default_rng(seed)``, ``batch`` resamples at a time."""
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or not x.size:
        raise ValueError(f"a (seeds x images) matrix of scores is needed, got shape {x.shape}")
    _as_1d_finite(x.ravel(), "scores")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    seeds, images = x.shape
    batch = batch or max(1, _MAX_INDICES_PER_BATCH // (seeds + images))
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, batch):
        b = min(batch, n_resamples - start)
        weights = []
        for size in (seeds, images):  # how often each seed, then each image, is drawn in each resample
            drawn = rng.integers(0, size, size=(b, size)) + size * np.arange(b)[:, None]
            weights.append(np.bincount(drawn.ravel(), minlength=b * size).reshape(b, size))
        out[start:start + b] = ((weights[0] @ x) * weights[1]).sum(axis=1) / (seeds * images)
    return out


def hierarchical_bootstrap_ci(matrix, n_resamples: int = 10000, confidence: float = 0.95,
                              seed: int = 0) -> tuple[float, float]:
    """Percentile confidence interval of the mean of a (seeds x images) score ``matrix`` by
    :func:`hierarchical_bootstrap_distribution` (seeds, then images, resampled): it covers both the training seed's
    variation and the test images'. A constant matrix gives ``(value, value)``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    x = np.asarray(matrix, dtype=np.float64)
    if x.size and np.all(x == x.flat[0]):
        return float(x.flat[0]), float(x.flat[0])
    dist = hierarchical_bootstrap_distribution(x, n_resamples, seed)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(dist, [tail, 100.0 - tail])
    return float(low), float(high)


class WilcoxonResult(NamedTuple):
    statistic: float
    pvalue: float


def match_cases(a: Mapping[str, float], b: Mapping[str, float], name_a: str = "a",
                name_b: str = "b") -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pair two ``{case name: score}`` mappings; error listing names that occur in only one."""
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"only in {name_a} ({len(only_a)}): {preview(only_a, 10)}")
        if only_b:
            parts.append(f"only in {name_b} ({len(only_b)}): {preview(only_b, 10)}")
        raise ValueError("a paired test needs the same cases in both results, but "
                         + "; ".join(parts) + ". Evaluate both models on the same split.")
    names = sorted(a)
    if not names:
        raise ValueError(f"{name_a} and {name_b} have no cases to compare")
    x = _as_1d_finite([a[k] for k in names], name_a)
    y = _as_1d_finite([b[k] for k in names], name_b)
    return names, x, y


def paired_wilcoxon(a: Mapping[str, float], b: Mapping[str, float], name_a: str = "a",
                    name_b: str = "b") -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of ``a`` vs ``b`` on the same cases, matched by name.

    ``a`` and ``b`` map case (image) names to scores. Names present in only one of them are an
    error that lists them. Zero differences are dropped (SciPy's ``zero_method="wilcox"``); if every
    difference is zero the models are indistinguishable on these cases and the result is
    ``(0.0, 1.0)``.
    """
    from scipy import stats as sstats

    _, x, y = match_cases(a, b, name_a, name_b)
    if np.all(x - y == 0):
        return WilcoxonResult(0.0, 1.0)
    res = sstats.wilcoxon(x, y)
    return WilcoxonResult(float(res.statistic), float(res.pvalue))


def format_mean_std(mean: float, std: float, digits: int = 2, pm: str = " ± ") -> str:
    """``"85.31 ± 12.04"``; use ``pm=" $\\pm$ "`` for LaTeX."""
    return f"{format_number(mean, digits)}{pm}{format_number(std, digits)}"


def format_ci(low: float, high: float, digits: int = 2) -> str:
    """``"[83.10, 87.42]"``."""
    return f"[{format_number(low, digits)}, {format_number(high, digits)}]"


def format_gain(gain: float, digits: int = 2) -> str:
    """Signed difference in points: ``"+6.30"``, ``"-0.45"``, ``"+0.00"``."""
    text = f"{gain:+.{digits}f}"
    if float(text) == 0.0:
        text = "+" + text[1:] if text.startswith("-") else text
    return text


def format_pvalue(p: float) -> str:
    """p-values with four decimals (``"0.0123"``), in scientific notation below 1e-4 (``"1.2e-05"``)."""
    if math.isnan(p):
        return "nan"
    if p < 1e-4:
        return f"{p:.1e}"
    return f"{p:.4f}"


def format_number(v: float, digits: int = 2) -> str:
    """Fixed decimals without a negative zero: ``format_number(-0.001) == "0.00"``."""
    text = f"{v:.{digits}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    return text


__all__ = ["STD_DDOF", "WilcoxonResult", "bootstrap_ci", "bootstrap_distribution", "default_batch",
           "hierarchical_bootstrap_ci", "hierarchical_bootstrap_distribution",
           "format_ci", "format_gain", "format_mean_std", "format_number", "format_pvalue", "match_cases", "mean_std",
           "paired_wilcoxon", "scipy_rng_kwargs"]
