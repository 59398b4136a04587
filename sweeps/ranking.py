"""The one rule for "the best trial", shared by the launcher (``best_config.yaml``) and the
analysis (tables, figures, report, test evaluation, confirm). Imports neither Ray nor torch.

A trial is ranked by its best selection score over its epochs. The score is ``select_score``,
which the trainer reports every epoch (the select metric averaged over a trailing window, so
one lucky epoch of a noisy validation split does not win); results written before it existed
are ranked on the sweep's metric itself. A trial whose last result says ``diverged`` is never
ranked. Ties go to the earlier best epoch, then to the smaller trial id.

In a sweep with ``repeats`` (each configuration trained with several seeds), configurations
are ranked, not trials: a configuration's score is the mean over its repeats of each trial's
best score, and its trials follow one another in the order, best trial first (``ranks``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import fmean
from typing import Any, Hashable, Iterable, Mapping, Sequence

from medvit.outcome import DIVERGED, report_epoch, trial_outcome
from medvit.selection import best_epoch, improves

__all__ = ["SCORE", "trial_best", "rank_key", "Candidate", "Rank", "ranks"]

# The per-epoch result the sweep optimises: Tune's metric, ASHA's and the searcher's signal.
SCORE = "select_score"


def trial_best(history: Iterable[Mapping[str, Any]], metric: str, mode: str) -> tuple[float, int] | None:
    """(best score, the first epoch that reached it) over a trial's per-epoch results, in
    epoch order, by the trainer's own best-epoch rule (``medvit.selection.best_epoch``); None
    when the trial cannot be ranked (no score, or it diverged)."""
    history = list(history)
    if not history or trial_outcome(history, None) == DIVERGED:
        return None
    # Results written before the trainer reported a selection score are ranked on the metric.
    column = SCORE if any(improves(record.get(SCORE), None, mode) for record in history) else metric
    return best_epoch(((report_epoch(record), record.get(column)) for record in history), mode)


def rank_key(value: float, epoch: int, trial_id: Any, mode: str) -> tuple:
    """Sort key of a trial's best (value, epoch), best trial first."""
    return (-value if mode == "max" else value, epoch, str(trial_id))


@dataclass(frozen=True)
class Candidate:
    """What the rule needs to know of one trial."""

    trial_id: str
    best: tuple[float, int] | None  # trial_best; None for a trial never ranked (errored, diverged)
    finished: bool = True  # ran all its epochs
    group: Hashable | None = None  # its configuration, in a sweep with repeats; None: its own
    repeats: int = 1  # the sweep's repeats: how many trials a complete group holds


@dataclass(frozen=True)
class Rank:
    """Where a trial ranks: ``key`` sorts best first; ``score`` is what it is ranked by (its
    own best, or its configuration's mean over the repeats)."""

    key: tuple
    score: float
    complete: bool  # False: an incomplete configuration, ranked behind every complete one


def ranks(candidates: Sequence[Candidate], mode: str) -> list[Rank | None]:
    """The rank of each candidate, in the given order; None for a trial never ranked.

    A configuration (candidates sharing a ``group``) scores the mean of its members' best
    scores, ties going to the earlier mean best epoch, then to its smallest trial id; its
    members follow one another, ordered by ``rank_key``. A configuration is complete when
    it has at least ``repeats`` members, each finished and ranked. An incomplete one ranks
    behind every complete one: a mean over fewer seeds is noisier, so it would win the
    winner's curse more often, and leaving out a member that diverged or errored would
    reward a configuration for being unstable. A candidate without a group is a
    configuration of its own, complete when ranked: without repeats the order is
    ``rank_key``'s.
    """
    # A trial without a group is keyed by its position: trial ids may repeat across sweeps.
    groups = [("trial", i) if c.group is None else ("configuration", c.group) for i, c in enumerate(candidates)]
    members: dict[Hashable, list[Candidate]] = defaultdict(list)
    for group, candidate in zip(groups, candidates):
        members[group].append(candidate)
    group_keys: dict[Hashable, tuple[bool, tuple, float]] = {}
    for group, trials in members.items():
        ranked = [trial for trial in trials if trial.best is not None]
        if not ranked:
            continue
        repeated = group[0] == "configuration"
        complete = not repeated or (len(ranked) == len(trials) >= trials[0].repeats
                                    and all(trial.finished for trial in trials))
        score = fmean(trial.best[0] for trial in ranked)
        epoch = fmean(trial.best[1] for trial in ranked)
        first = min(str(trial.trial_id) for trial in ranked)
        group_keys[group] = (not complete, rank_key(score, epoch, first, mode), score)
    out: list[Rank | None] = []
    for group, candidate in zip(groups, candidates):
        if candidate.best is None:
            out.append(None)
            continue
        incomplete, group_key, score = group_keys[group]
        trial_key = rank_key(*candidate.best, candidate.trial_id, mode)
        out.append(Rank((incomplete, group_key, trial_key), score, not incomplete))
    return out
