"""analysis.stats against known values and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis.stats import binomial_se, format_pm, mean_ci, paired_bootstrap


def test_mean_ci_matches_scipy_t_interval():
    x = [0.552, 0.570, 0.594, 0.581, 0.557]
    r = mean_ci(x)
    lo, hi = sps.t.interval(0.95, df=4, loc=np.mean(x), scale=sps.sem(x))
    assert r.n == 5 and r.mean == pytest.approx(np.mean(x))
    assert r.std == pytest.approx(np.std(x, ddof=1))
    assert (r.ci_low, r.ci_high) == (pytest.approx(lo), pytest.approx(hi))


def test_mean_ci_textbook_value():
    # mean 10, std 2 (ddof=1), n = 5: half width = t_{0.975,4} * 2 / sqrt(5) = 2.776 * 0.894
    r = mean_ci([8, 9, 10, 11, 12], confidence=0.95)
    assert r.std == pytest.approx(math.sqrt(2.5))
    assert r.half_width == pytest.approx(2.7764451 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    r90 = mean_ci([8, 9, 10, 11, 12], confidence=0.90)
    assert r90.half_width < r.half_width


def test_mean_ci_edge_cases():
    one = mean_ci([0.5])
    assert one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert mean_ci([0.5, float("nan"), 0.7]).n == 2
    with pytest.raises(ValueError):
        mean_ci([])
    with pytest.raises(ValueError):
        mean_ci([1, 2], confidence=1.5)


def test_paired_bootstrap_known_inputs():
    a = np.array([0.60, 0.62, 0.59, 0.61, 0.63])
    b = a - 0.02  # constant difference: every resample gives exactly 0.02
    r = paired_bootstrap(a, b, n_resamples=2000, seed=1)
    assert r.mean_diff == pytest.approx(0.02)
    assert r.ci_low == pytest.approx(0.02) and r.ci_high == pytest.approx(0.02)
    assert r.frac_le_zero == 0.0
    r2 = paired_bootstrap(b, a, n_resamples=2000, seed=1)
    assert r2.frac_le_zero == 1.0 and r2.mean_diff == pytest.approx(-0.02)


def test_paired_bootstrap_seeded_and_sensible():
    rng = np.random.default_rng(0)
    a = rng.normal(0.60, 0.02, 30)
    b = a - 0.01 + rng.normal(0, 0.01, 30)
    r1 = paired_bootstrap(a, b, seed=7)
    r2 = paired_bootstrap(a, b, seed=7)
    assert r1 == r2  # reproducible
    d = a - b
    assert r1.mean_diff == pytest.approx(d.mean())
    assert r1.ci_low < d.mean() < r1.ci_high
    # the bootstrap CI is close to the normal-theory interval for 30 pairs
    se = d.std(ddof=1) / math.sqrt(30)
    assert r1.ci_high - r1.ci_low == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert 0.0 <= r1.frac_le_zero < 0.05
    with pytest.raises(ValueError):
        paired_bootstrap([1, 2], [1, 2, 3])


def test_binomial_se_and_format():
    assert binomial_se(0.6, 400) == pytest.approx(0.0245, abs=1e-4)  # RetinaMNIST test, ~2.4 pp
    assert format_pm(0.5941, 0.0123) == "0.594 ± 0.012"
    assert format_pm(0.5941) == "0.594"
    assert format_pm(None) == "–" and format_pm(float("nan")) == "–"
