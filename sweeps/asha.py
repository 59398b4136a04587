"""ASHA that compares its own rung metric, not the sweep's.

Tune hands the ``TuneConfig`` metric (the smoothed selection score: what the searcher learns
from and the sweep ranks on) to its scheduler, and Ray refuses a scheduler that was built with
a metric of its own. This one keeps the metric it was built with, so a spec's
``scheduler.rung_metric`` (``val_auc``, say) decides who goes on at each rung while everything
else still sees the selection score. Imported only by the launcher: it imports Ray.
"""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler


class RungMetricASHA(ASHAScheduler):
    """``ASHAScheduler(metric=..., mode=...)`` that ignores the metric and mode Tune passes on."""

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        return True
