"""Statistics used by result tables, checked against SciPy on fixed data."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sstats

from vlsm.evaluation import stats

# Fixed per-image Dice scores (two models on the same 24 images), deliberately skewed like real Dice.
A = np.array([0.91, 0.88, 0.95, 0.42, 0.87, 0.93, 0.79, 0.90, 0.00, 0.85, 0.96, 0.71,
              0.89, 0.92, 0.66, 0.94, 0.81, 0.88, 0.97, 0.58, 0.90, 0.83, 0.92, 0.86])
B = np.array([0.89, 0.84, 0.95, 0.31, 0.80, 0.91, 0.70, 0.88, 0.05, 0.79, 0.94, 0.69,
              0.82, 0.90, 0.52, 0.93, 0.75, 0.86, 0.95, 0.40, 0.88, 0.80, 0.90, 0.81])
NAMES = [f"img{i:02d}.png" for i in range(len(A))]


def _scipy_ci(x, stat, n_resamples, method, seed=0, batch=None, confidence=0.95):
    res = sstats.bootstrap((x,), stat, n_resamples=n_resamples, method=method, batch=batch,
                           confidence_level=confidence, **stats.scipy_rng_kwargs(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@pytest.mark.parametrize("stat", [np.mean, np.median])
def test_percentile_bootstrap_equals_scipy_with_same_seed(stat):
    ours = stats.bootstrap_ci(A, stat=stat, n_resamples=10000, seed=0)
    ref = _scipy_ci(A, stat, 10000, "percentile", seed=0)
    assert ours == pytest.approx(ref, rel=0, abs=1e-12)


def test_percentile_bootstrap_batched_equals_scipy_batched():
    ours = stats.bootstrap_ci(A, n_resamples=2500, seed=7, batch=600, confidence=0.9)
    ref = _scipy_ci(A, np.mean, 2500, "percentile", seed=7, batch=600, confidence=0.9)
    assert ours == pytest.approx(ref, rel=0, abs=1e-12)


def test_percentile_bootstrap_close_to_scipy_with_other_seed():
    # Different random streams: the intervals agree only up to Monte-Carlo error.
    ours = stats.bootstrap_ci(A, n_resamples=10000, seed=1)
    ref = _scipy_ci(A, np.mean, 10000, "percentile", seed=12345)
    assert ours == pytest.approx(ref, abs=0.01)
    assert ours[0] < A.mean() < ours[1]


def test_bca_delegates_to_scipy():
    ours = stats.bootstrap_ci(A, n_resamples=3000, seed=3, method="bca")
    ref = _scipy_ci(A, np.mean, 3000, "BCa", seed=3)
    assert ours == pytest.approx(ref, rel=0, abs=1e-12)


def test_bootstrap_is_deterministic_and_seed_dependent():
    assert stats.bootstrap_ci(A, seed=5, n_resamples=500) == stats.bootstrap_ci(A, seed=5, n_resamples=500)
    assert stats.bootstrap_ci(A, seed=5, n_resamples=500) != stats.bootstrap_ci(A, seed=6, n_resamples=500)


def test_bootstrap_plain_statistic_without_axis():
    def trimmed(x):  # no axis argument: evaluated row by row
        return float(np.sort(x)[1:-1].mean())

    ours = stats.bootstrap_ci(A, stat=trimmed, n_resamples=300, seed=0)
    dist = stats.bootstrap_distribution(A, trimmed, n_resamples=300, seed=0)
    assert dist.shape == (300,)
    assert ours == pytest.approx(tuple(np.percentile(dist, [2.5, 97.5])))


def test_bootstrap_degenerate_and_bad_input():
    assert stats.bootstrap_ci([0.7]) == (0.7, 0.7)
    assert stats.bootstrap_ci([1.0, 1.0, 1.0], method="bca") == (1.0, 1.0)
    with pytest.raises(ValueError, match="no values"):
        stats.bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        stats.bootstrap_ci([0.5, np.nan])
    with pytest.raises(ValueError, match="confidence"):
        stats.bootstrap_ci(A, confidence=95)
    with pytest.raises(ValueError, match="method"):
        stats.bootstrap_ci(A, method="basic")


def test_large_samples_are_batched_to_bound_memory():
    assert stats.default_batch(100, 10000) is None
    assert stats.default_batch(2000, 10000) == 2500


def test_paired_wilcoxon_equals_scipy():
    a = dict(zip(NAMES, A))
    b = dict(zip(reversed(NAMES), B[::-1]))  # same pairs, different order: matched by name
    res = stats.paired_wilcoxon(a, b)
    ref = sstats.wilcoxon(A, B)
    assert res.statistic == pytest.approx(float(ref.statistic))
    assert res.pvalue == pytest.approx(float(ref.pvalue))
    stat, p = res  # unpacks like a tuple
    assert p < 0.01


def test_paired_wilcoxon_with_ties_and_zeros_equals_scipy():
    x = np.array([0.9, 0.8, 0.8, 0.7, 1.0, 0.6, 0.5, 0.95])
    y = np.array([0.9, 0.7, 0.9, 0.6, 1.0, 0.4, 0.55, 0.85])
    names = [str(i) for i in range(len(x))]
    res = stats.paired_wilcoxon(dict(zip(names, x)), dict(zip(names, y)))
    ref = sstats.wilcoxon(x, y)
    assert (res.statistic, res.pvalue) == pytest.approx((float(ref.statistic), float(ref.pvalue)))


def test_paired_wilcoxon_identical_results():
    a = dict(zip(NAMES, A))
    assert stats.paired_wilcoxon(a, dict(a)) == (0.0, 1.0)


def test_paired_wilcoxon_lists_unmatched_names():
    a = {"x.png": 0.5, "y.png": 0.6, "z.png": 0.7}
    b = {"x.png": 0.4, "y.png": 0.6, "w.png": 0.1}
    with pytest.raises(ValueError) as err:
        stats.paired_wilcoxon(a, b, "UNet-D", "CLIPSeg")
    msg = str(err.value)
    assert "only in UNet-D (1): z.png" in msg and "only in CLIPSeg (1): w.png" in msg


def test_mean_std_uses_population_std():
    mean, std = stats.mean_std(A, scale=100)
    assert mean == pytest.approx(A.mean() * 100)
    assert std == pytest.approx(np.std(A, ddof=0) * 100)
    assert std != pytest.approx(np.std(A, ddof=1) * 100)
    assert stats.STD_DDOF == 0


def test_formatting():
    assert stats.format_mean_std(85.3149, 12.0351) == "85.31 ± 12.04"
    assert stats.format_mean_std(85.3149, 12.0351, pm=" $\\pm$ ") == "85.31 $\\pm$ 12.04"
    assert stats.format_ci(83.104, 87.425) == "[83.10, 87.42]"
    assert stats.format_gain(6.3) == "+6.30"
    assert stats.format_gain(-0.456) == "-0.46"
    assert stats.format_gain(-0.001) == "+0.00"
    assert stats.format_pvalue(0.01234) == "0.0123"
    assert stats.format_pvalue(1.2e-5) == "1.2e-05"
