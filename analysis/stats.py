"""Small statistics for the report: spread over seeds and paired comparisons.

* :func:`mean_ci` -- mean, sample standard deviation and a Student-t confidence interval
  over seeds (or trials).
* :func:`paired_bootstrap` -- bootstrap of the mean difference of two paired metric arrays
  (e.g. the same seeds trained with alpha 0.2 and alpha 0), seeded and reproducible.
* :func:`binomial_se` -- standard error of an accuracy measured on ``n`` test images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["MeanCI", "BootstrapResult", "mean_ci", "paired_bootstrap", "binomial_se", "format_pm"]


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
