"""The one rule for "the best trial", shared by the launcher (``best_config.yaml``) and the
analysis (tables, figures, report, test evaluation, confirm). Imports neither Ray nor torch.

A trial is ranked by its best selection score over its epochs. The score is ``select_score``,
which the trainer reports every epoch (the select metric averaged over a trailing window, so
one lucky epoch of a noisy validation split does not win); results written before it existed
are ranked on the sweep's metric itself. A trial whose last result says ``diverged`` is never
ranked. Ties go to the earlier best epoch, then to the smaller trial id.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

__all__ = ["SCORE", "trial_best", "rank_key"]

# The per-epoch result the sweep optimises: Tune's metric, ASHA's and the searcher's signal.
SCORE = "select_score"


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def trial_best(history: Iterable[Mapping[str, Any]], metric: str, mode: str) -> tuple[float, int] | None:
    """(best score, the first epoch that reached it) over a trial's per-epoch results, in
    epoch order; None when the trial cannot be ranked (no score, or it diverged)."""
    history = list(history)
    if not history or history[-1].get("diverged") is True:
        return None
    column = SCORE if any(_finite(record.get(SCORE)) is not None for record in history) else metric
    best: tuple[float, int] | None = None
    for record in history:
        value = _finite(record.get(column))
        if value is None:
            continue
        if best is None or (value > best[0] if mode == "max" else value < best[0]):
            best = (value, int(record.get("epoch", record.get("training_iteration"))))
    return best


def rank_key(value: float, epoch: int, trial_id: Any, mode: str) -> tuple:
    """Sort key of a trial's best (value, epoch), best trial first."""
    return (-value if mode == "max" else value, epoch, str(trial_id))
