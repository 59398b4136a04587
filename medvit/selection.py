"""What a run and a sweep select on: the one metrics table and the one best-epoch rule.

Every other place that needs a metric's direction, the tasks it exists for, the key the
evaluation returns for it or its column names derives them from :data:`METRICS`; every place
that asks "is this value better" or "which epoch was best" calls :func:`improves` or
:func:`best_epoch`. Imports neither torch nor Ray: the config, the ranking and the analysis
all read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Literal

from medvit.tasks import ORDINAL, TASKS

__all__ = ["AUDIT_PREFIX", "audit_key", "Metric", "METRICS", "SELECT_METRICS", "WORST_SCORE", "metric_named", "select_metrics_for",
           "SCORE_METRICS", "TEST_COLUMNS", "improves", "best_epoch"]

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class Metric:
    """One metric: ``key`` is what ``Trainer.evaluate`` (and ``analysis.evaluate.split_metrics``)
    returns for it; ``from_scores``: ``medvit.metrics.evaluate`` computes it from the
    probabilities (so it is reported on the test split), else it is the evaluation loss of the
    logits."""

    key: str
    direction: Direction
    tasks: tuple[str, ...]
    from_scores: bool = True

    @property
    def val_name(self) -> str:
        """Its name in a run's per-epoch report and a spec's ``metric``: ``val_acc``."""
        return f"val_{self.key}"

    @property
    def test_name(self) -> str:
        """Its column in the results table: ``test_acc``."""
        return f"test_{self.key}"


METRICS: dict[str, Metric] = {metric.key: metric for metric in (
    Metric("acc", "max", TASKS),
    Metric("auc", "max", TASKS),
    Metric("qwk", "max", (ORDINAL,)),
    Metric("mae", "min", (ORDINAL,)),
    Metric("loss", "min", TASKS, from_scores=False),
)}

# The metrics computed from a split's scores (medvit.metrics.evaluate's keys for an ordinal task).
SCORE_METRICS: tuple[str, ...] = tuple(metric.key for metric in METRICS.values() if metric.from_scores)

# Validation metrics a run may select its best epoch on, with the direction that is better.
SELECT_METRICS: dict[str, Direction] = {metric.val_name: metric.direction for metric in METRICS.values()}

# The results table's test-metric columns: every metric computed from the scores.
TEST_COLUMNS: tuple[str, ...] = tuple(metric.test_name for metric in METRICS.values() if metric.from_scores)

# The test-selection audit's per-epoch keys (audit_test on): a prefix no reader of the reported
# test_* numbers matches; the results and confirm tables name their audit columns the same way.
AUDIT_PREFIX = "audit_test_"


def audit_key(select_metric: str) -> str:
    """The per-epoch audit value choosing on test ranks epochs by: the test value of the
    select metric's kind (``audit_test_acc`` for ``val_acc``)."""
    return AUDIT_PREFIX + select_metric.removeprefix("val_")

# The value a diverged run reports as its selection score: worse than any real one.
WORST_SCORE: dict[str, float] = {"max": -1.0, "min": 1.0e9}


def metric_named(name: str) -> Metric:
    """The metric of a name: ``val_acc``, ``test_acc`` or ``acc``; KeyError for another."""
    for prefix in ("val_", "test_"):
        if name.startswith(prefix) and name.removeprefix(prefix) in METRICS:
            return METRICS[name.removeprefix(prefix)]
    return METRICS[name]


def select_metrics_for(task: str) -> tuple[str, ...]:
    """The select metrics (``val_*``) that exist for a task."""
    return tuple(metric.val_name for metric in METRICS.values() if task in metric.tasks)


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def improves(value: Any, best: float | None, mode: str) -> bool:
    """Whether ``value`` beats ``best`` in direction ``mode``: a missing or non-finite value
    never does, anything finite beats no best, and a tie keeps the earlier one."""
    value = _finite(value)
    if value is None:
        return False
    if best is None or not math.isfinite(best):
        return True
    return value > best if mode == "max" else value < best


def best_epoch(values: Iterable[tuple[int, Any]], mode: str) -> tuple[float, int] | None:
    """(best value, the first epoch that reached it) over ``(epoch, value)`` pairs in epoch
    order; None when no value is finite."""
    best: tuple[float, int] | None = None
    for epoch, value in values:
        if improves(value, best[0] if best else None, mode):
            best = (float(value), int(epoch))
    return best
