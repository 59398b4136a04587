"""analysis.stats against known values and scipy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis.stats import (
    MAX_SEEDS,
    binomial_se,
    detectable_difference,
    expected_best_of,
    format_pm,
    mean_ci,
    paired_bootstrap,
    seed_image_bootstrap,
    paired_t_power,
    power_sentence,
    seeds_needed,
)


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


@pytest.mark.parametrize("effect, seeds", [(0.2, 199), (0.5, 34), (0.8, 15), (1.0, 10)])
def test_seeds_needed_matches_the_power_tables(effect, seeds):
    # Cohen's tables (and G*Power) for a paired t-test, 5% two-sided, 80% power; only the ratio
    # of the difference to the differences' spread matters
    assert seeds_needed(1.0, effect) == seeds
    assert seeds_needed(0.03, -effect * 0.03) == seeds


def test_seeds_needed_is_what_simulated_t_tests_find():
    rng = np.random.default_rng(0)
    std, difference = 0.03, 0.02
    n = seeds_needed(std, difference)
    for seeds in (n - 1, n):
        diffs = rng.normal(difference, std, size=(20_000, seeds))
        found = np.mean(sps.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05)
        assert found == pytest.approx(float(paired_t_power(seeds, std, difference)), abs=0.01)
    assert paired_t_power(n - 1, std, difference) < 0.8 <= paired_t_power(n, std, difference)


def test_detectable_difference_inverts_seeds_needed():
    for n in (2, 3, 5, 20):
        d = detectable_difference(0.03, n)
        assert float(paired_t_power(n, 0.03, d)) == pytest.approx(0.8)
        assert seeds_needed(0.03, d * 1.001) == n
    assert detectable_difference(0.03, 5) > detectable_difference(0.03, 20)


def test_seeds_needed_edges_and_bad_input():
    assert seeds_needed(0.03, 0.0) is None
    assert seeds_needed(0.03, 0.0001) is None  # more than MAX_SEEDS
    with pytest.raises(ValueError, match="diff_std"):
        seeds_needed(0.0, 0.01)
    with pytest.raises(ValueError, match="power"):
        seeds_needed(0.03, 0.01, power=1.0)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        detectable_difference(0.03, 1)


def test_power_sentence():
    diffs = np.array([0.037, -0.022, 0.005])
    std, mean = diffs.std(ddof=1), diffs.mean()
    text = power_sentence(diffs, {"the paper's gain": 0.042})
    assert f"std {std:.3f}" in text and "over 3 seeds" in text
    assert f"only from ±{detectable_difference(std, 3):.3f} on" in text
    assert f"finding the observed {mean:+.3f} would take {seeds_needed(std, mean)} seeds" in text
    assert text.endswith(f"and the paper's gain (+0.042) {seeds_needed(std, 0.042)}.")
    assert f"more than {MAX_SEEDS:,} seeds" in power_sentence([0.0301, -0.03, 0.0])
    assert power_sentence([0.01]) == power_sentence([0.01, 0.01]) == power_sentence([]) == ""


@pytest.mark.parametrize("seed", range(5))
def test_expected_best_of_is_the_mean_best_over_every_draw(seed):
    x = np.round(np.random.default_rng(seed).normal(0.52, 0.02, 8), 3)  # rounded: ties
    for k in range(1, 9):
        every = [max(draw) for draw in itertools.combinations(x, k)]
        assert expected_best_of(x, k) == pytest.approx(np.mean(every))
    assert expected_best_of(x, 1) == pytest.approx(x.mean()) and expected_best_of(x, 8) == x.max()


def test_expected_best_of_drops_nan_and_names_k_out_of_range():
    assert expected_best_of([0.5, float("nan"), 0.6], 2) == pytest.approx(0.6)
    for k in (0, 3):
        with pytest.raises(ValueError, match=f"k: expected 1 to 2 .*got {k}"):
            expected_best_of([0.5, 0.6, float("nan")], k)


def _share(correct, images):
    return correct[images].mean()


def test_seed_image_bootstrap_of_one_run_is_the_binomial_spread_of_its_test_images():
    correct = (np.arange(400) % 5 < 3).astype(float)  # 60% right on 400 images
    res = seed_image_bootstrap(_share, [correct], 400, n_resamples=4000, seed=1)
    assert res.mean_diff == pytest.approx(0.6) and res.n == 1
    half = 1.96 * math.sqrt(0.6 * 0.4 / 400)
    assert res.ci_low == pytest.approx(0.6 - half, abs=0.01) and res.ci_high == pytest.approx(0.6 + half, abs=0.01)
    assert seed_image_bootstrap(_share, [correct], 400, n_resamples=200, seed=1) == \
        seed_image_bootstrap(_share, [correct], 400, n_resamples=200, seed=1)


def test_seed_image_bootstrap_sees_what_a_bootstrap_over_seeds_cannot():
    # every seed gains exactly 0.5 on this split, so seeds alone say the gain is exactly 0.5,
    # but it comes from the first half of the images: another draw of them moves it
    base = [np.zeros(200)] * 4
    runs = [(np.arange(200) < 100).astype(float)] * 4
    seeds_only = paired_bootstrap([r.mean() for r in runs], [b.mean() for b in base], seed=0)
    assert seeds_only.ci_low == seeds_only.ci_high == 0.5
    both = seed_image_bootstrap(_share, runs, 200, baseline=base, n_resamples=500)
    assert both.mean_diff == 0.5 and both.ci_low < 0.45 and both.ci_high > 0.55
    # seeds that differ widen it further
    noisy = [(np.arange(200) < 80 + 20 * k).astype(float) for k in range(4)]
    wider = seed_image_bootstrap(_share, noisy, 200, baseline=base, n_resamples=500)
    assert wider.ci_high - wider.ci_low > both.ci_high - both.ci_low
    same = seed_image_bootstrap(_share, runs, 200, baseline=runs, n_resamples=50)
    assert (same.mean_diff, same.ci_low, same.ci_high, same.frac_le_zero) == (0.0, 0.0, 0.0, 1.0)


def test_seed_image_bootstrap_drops_undefined_resamples_and_names_bad_input():
    def first_image_undefined(run, images):
        return math.nan if 0 in images else run[images].mean()

    res = seed_image_bootstrap(first_image_undefined, [np.ones(3)], 3, n_resamples=300)
    assert math.isnan(res.mean_diff) and res.ci_low == res.ci_high == 1.0
    with pytest.raises(ValueError, match="differ in number: 2 vs 1"):
        seed_image_bootstrap(_share, [np.ones(3)] * 2, 3, baseline=[np.ones(3)])
    with pytest.raises(ValueError, match="at least one run"):
        seed_image_bootstrap(_share, [], 3)
