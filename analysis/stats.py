"""Small statistics for the report: spread over seeds and paired comparisons.

* :func:`mean_ci` -- mean, sample standard deviation and a Student-t confidence interval
  over seeds (or trials).
* :func:`paired_bootstrap` -- bootstrap of the mean difference of two paired metric arrays
  (e.g. the same seeds trained with alpha 0.2 and alpha 0), seeded and reproducible.
* :func:`seed_image_bootstrap` -- the same over seeds AND test images: the test split is one
  draw of patients, so an interval over seeds alone speaks of this split only.
* :func:`binomial_se` -- standard error of an accuracy measured on ``n`` test images.
* :func:`seeds_needed`, :func:`detectable_difference`, :func:`power_sentence` -- how many
  paired seeds a paired t-test needs to tell a difference from 0, given the seeds' spread:
  what a comparison that is "within seed noise" would take to settle.
* :func:`expected_best_of` -- the expected best of ``k`` runs drawn from the seeds one has:
  what a paper that runs ``k`` times and prints its best run would print.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["MeanCI", "BootstrapResult", "mean_ci", "paired_bootstrap", "seed_image_bootstrap", "binomial_se", "format_pm",
           "paired_t_power", "seeds_needed", "seeds_text", "detectable_difference", "power_sentence",
           "expected_best_of"]

#: The power a comparison is planned for, and the most seeds :func:`seeds_needed` looks at.
POWER = 0.8
MAX_SEEDS = 1000


@dataclass(frozen=True)
class MeanCI:
    """Summary of values over seeds: ``std`` uses ddof=1; the interval is Student-t.

    With a single value ``std``, ``ci_low`` and ``ci_high`` are NaN (no spread is known).
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap of ``mean(a - b)``.

    ``frac_le_zero`` is the fraction of resampled mean differences that are <= 0: a
    one-sided bootstrap p-value for "a is better than b" when higher is better.
    """

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    frac_le_zero: float
    n_resamples: int
    confidence: float


def _clean(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> MeanCI:
    """Mean, std (ddof=1) and ``confidence`` Student-t interval of ``values`` (NaNs ignored).

    Raises ``ValueError`` for no values or a confidence outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = _clean(values)
    n = int(x.size)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(x.mean())
    if n == 1:
        return MeanCI(1, mean, math.nan, math.nan, math.nan, confidence)
    std = float(x.std(ddof=1))
    from scipy import stats  # 0.8 s to import: only a table with a spread over seeds pays it, not `medsweep status`

    tcrit = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1))
    half = tcrit * std / math.sqrt(n)
    return MeanCI(n, mean, std, mean - half, mean + half, confidence)


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Bootstrap the mean of the paired differences ``a[i] - b[i]``.

    Pairs are resampled with replacement (indices drawn with ``numpy.random.default_rng(seed)``),
    so the result is reproducible. The interval is the percentile interval of the resampled
    means. Pairs where either side is NaN are dropped.

    Returns:
        :class:`BootstrapResult` with the observed mean difference, the interval and the
        fraction of resampled mean differences <= 0.
    """
    xa = np.asarray(a, dtype=float).ravel()
    xb = np.asarray(b, dtype=float).ravel()
    if xa.shape != xb.shape:
        raise ValueError(f"paired arrays differ in length: {xa.size} vs {xb.size}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    ok = ~(np.isnan(xa) | np.isnan(xb))
    d = xa[ok] - xb[ok]
    n = int(d.size)
    if n == 0:
        raise ValueError("paired_bootstrap needs at least one complete pair")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return BootstrapResult(
        n=n,
        mean_diff=float(d.mean()),
        ci_low=float(lo),
        ci_high=float(hi),
        frac_le_zero=float(np.mean(means <= 0)),
        n_resamples=int(n_resamples),
        confidence=confidence,
    )


def seed_image_bootstrap(
    metric: Callable[[Any, np.ndarray], float],
    runs: Sequence[Any],
    n_images: int,
    baseline: Sequence[Any] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Bootstrap the mean over seeds of ``metric(runs[k], images)`` (minus
    ``metric(baseline[k], images)``: paired runs, one seed each), resampling the seeds and the
    test images together.

    ``metric(run, images)`` scores one run on the test images with those indices (a run is
    whatever the metric reads: each image's correctness, its predicted grade). Each resample draws
    ``n_images`` image indices with replacement, one draw for every run (the split is one draw of
    patients, shared by every seed), then the seeds with replacement, from
    ``numpy.random.default_rng(seed)``. The percentile interval then says what another draw of
    test images could show; :func:`paired_bootstrap` and :func:`mean_ci` speak of this split only.
    Resamples where the metric is undefined (NaN) are dropped. ``mean_diff`` is the observed mean
    over seeds on every image (of the difference, with a baseline).
    """
    if baseline is not None and len(baseline) != len(runs):
        raise ValueError(f"paired runs differ in number: {len(runs)} vs {len(baseline)}")
    if not runs or n_images < 1:
        raise ValueError("seed_image_bootstrap needs at least one run and one image")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")

    def per_run(images: np.ndarray) -> np.ndarray:
        scored = np.array([metric(run, images) for run in runs], dtype=float)
        return scored if baseline is None else scored - np.array([metric(b, images) for b in baseline], dtype=float)

    n = len(runs)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for b in range(n_resamples):
        images = rng.integers(0, n_images, n_images)
        means[b] = per_run(images)[rng.integers(0, n, n)].mean()
    means = means[~np.isnan(means)]
    lo, hi = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2]) if means.size else (math.nan, math.nan)
    return BootstrapResult(
        n=n,
        mean_diff=float(np.mean(per_run(np.arange(n_images)))),
        ci_low=float(lo),
        ci_high=float(hi),
        frac_le_zero=float(np.mean(means <= 0)) if means.size else math.nan,
        n_resamples=int(n_resamples),
        confidence=confidence,
    )


def paired_t_power(n: int | np.ndarray, diff_std: float, difference: float, confidence: float = 0.95) -> np.ndarray:
    """Probability that a two-sided paired t-test at level ``1 - confidence`` over ``n`` seeds
    finds a true mean difference ``difference`` when the per-seed differences have standard
    deviation ``diff_std`` (normal differences: the noncentral t distribution, exact)."""
    from scipy import stats

    n = np.asarray(n, dtype=float)
    df = n - 1
    t_crit = stats.t.ppf(0.5 + confidence / 2, df)
    shift = abs(difference) / diff_std * np.sqrt(n)
    # The wrong-sided tail vanishes as the shift grows, and scipy's nct.cdf returns NaN for it there.
    wrong_side = np.nan_to_num(stats.nct.cdf(-t_crit, df, shift), nan=0.0)
    return stats.nct.sf(t_crit, df, shift) + wrong_side


def _check_spread(diff_std: float, confidence: float, power: float) -> None:
    if not (diff_std > 0 and math.isfinite(diff_std)):
        raise ValueError(f"diff_std must be a positive number, got {diff_std}")
    if not 0 < confidence < 1 or not 0 < power < 1:
        raise ValueError(f"confidence and power must be in (0, 1), got {confidence} and {power}")


def seeds_needed(diff_std: float, difference: float, power: float = POWER, confidence: float = 0.95,
                 max_seeds: int = MAX_SEEDS) -> int | None:
    """The fewest paired seeds (at least 2) with which a two-sided paired t-test at level
    ``1 - confidence`` finds a true mean difference ``difference`` with probability ``power``,
    the per-seed differences having standard deviation ``diff_std``; None above ``max_seeds``
    (a difference of 0 is never found)."""
    _check_spread(diff_std, confidence, power)
    if difference == 0:
        return None
    n = np.arange(2, max_seeds + 1)
    enough = np.flatnonzero(paired_t_power(n, diff_std, difference, confidence) >= power)
    return int(n[enough[0]]) if enough.size else None


def seeds_text(diff_std: float, difference: float, power: float = POWER) -> str:
    """:func:`seeds_needed` for a table or a sentence: ``1,234``, or ``more than 1,000``."""
    needed = seeds_needed(diff_std, difference, power)
    return f"more than {MAX_SEEDS:,}" if needed is None else f"{needed:,}"


def detectable_difference(diff_std: float, n: int, power: float = POWER, confidence: float = 0.95) -> float:
    """The smallest true mean difference that a two-sided paired t-test over ``n`` seeds finds
    with probability ``power``, the per-seed differences having standard deviation ``diff_std``."""
    _check_spread(diff_std, confidence, power)
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 seeds, got {n}")
    from scipy.optimize import brentq

    def short_of_power(difference: float) -> float:
        return float(paired_t_power(n, diff_std, difference, confidence)) - power

    high = diff_std  # power grows with the difference, from 1 - confidence at 0
    while short_of_power(high) < 0:
        high *= 2
    return brentq(short_of_power, 0.0, high, xtol=diff_std * 1e-9)


def power_sentence(diffs: Sequence[float] | np.ndarray, claims: dict[str, float] | None = None,
                   power: float = POWER, digits: int = 3) -> str:
    """One sentence on what paired per-seed differences ``diffs`` can tell: the smallest
    difference their seeds find with ``power`` (two-sided paired t-test, 5%) at their spread,
    and the seeds that finding the observed mean difference, and each claimed one (``claims``,
    name -> difference), would take. Empty for fewer than 2 differences or no spread."""
    d = _clean(diffs)
    if d.size < 2 or not d.std(ddof=1) > 0:
        return ""
    std, n = float(d.std(ddof=1)), int(d.size)
    claimed = "".join(f", and {name} ({value:+.{digits}f}) {seeds_text(std, value, power)}"
                      for name, value in (claims or {}).items())
    return (f"At this spread (the paired differences' std {std:.{digits}f}), a paired t-test (5%, two-sided) over "
            f"{n} seeds finds a true difference {power:.0%} of the time only from "
            f"±{detectable_difference(std, n, power):.{digits}f} on; finding the observed {d.mean():+.{digits}f} "
            f"would take {seeds_text(std, float(d.mean()), power)} seeds{claimed}.")


def expected_best_of(values: Sequence[float] | np.ndarray, k: int) -> float:
    """The mean, over every way of drawing ``k`` of ``values`` (seeds' results) without
    replacement, of the largest drawn: the unbiased estimate of the expected best of ``k``
    independent runs (the ``k``-th order statistic's weights, ``C(i, k - 1) / C(n, k)`` on the
    ``i``-th smallest, counted from 0). ``k`` = 1 is the mean, ``k`` = n the largest."""
    x = np.sort(_clean(values))
    if not 1 <= k <= x.size:
        raise ValueError(f"k: expected 1 to {x.size} (the values given); got {k}")
    weights = np.array([math.comb(i, k - 1) for i in range(x.size)], dtype=float) / math.comb(x.size, k)
    return float(weights @ x)


def binomial_se(p: float, n: int) -> float:
    """Standard error ``sqrt(p (1 - p) / n)`` of an accuracy ``p`` measured on ``n`` images."""
    if n <= 0:
        raise ValueError("n must be positive")
    p = min(max(float(p), 0.0), 1.0)
    return math.sqrt(p * (1 - p) / n)


def format_pm(mean: float | None, std: float | None = None, digits: int = 3) -> str:
    """``0.594 ± 0.012``, or ``0.594`` without a std, or ``–`` for a missing mean."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
