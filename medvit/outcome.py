"""How a trial ended: the one rule, read by the results table (``analysis.collect``'s
``stop_reason``), TensorBoard's HParams (``trainables.tensorboard``'s ``end``) and the
launcher (``sweeps.launch``: which trials finished, how many diverged). A pure function of a
trial's per-epoch reports (what the trainer yields: ``epoch``, ``diverged``, ...), its epoch
budget and whether it errored; no Ray, no torch.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["FINISHED", "EARLY_STOPPED", "ERRORED", "DIVERGED", "UNFINISHED", "OUTCOMES", "report_epoch",
           "trial_outcome"]

FINISHED = "finished"  # ran every epoch of its budget
EARLY_STOPPED = "early_stopped"  # ended before that: the scheduler (ASHA) stopped it
ERRORED = "errored"  # it raised
DIVERGED = "diverged"  # its last report says the training loss became non-finite: never ranked
UNFINISHED = "unfinished"  # still running, or cut off (a crash, an interrupted sweep)
OUTCOMES: tuple[str, ...] = (FINISHED, EARLY_STOPPED, ERRORED, DIVERGED, UNFINISHED)


def report_epoch(report: Mapping[str, Any]) -> int | None:
    """The epoch of one report: the trainer's ``epoch``, else Ray's ``training_iteration``."""
    epoch = report.get("epoch", report.get("training_iteration"))
    try:
        return int(epoch)
    except (TypeError, ValueError, OverflowError):
        return None


def trial_outcome(reports: Sequence[Mapping[str, Any]], epochs: int | None, *, errored: bool = False,
                  ended: bool = True) -> str:
    """How a trial ended, from its reports in epoch order (the last is its last epoch), its
    epoch budget (None: unknown) and whether it errored; ``ended``: it is no longer running
    (a trial that reached its budget counts as finished either way)."""
    if errored:
        return ERRORED
    last = reports[-1] if reports else {}
    if last.get("diverged") is True:
        return DIVERGED
    reached = max((report_epoch(report) or 0 for report in reports), default=0)
    if epochs is not None and reached >= epochs:
        return FINISHED
    return EARLY_STOPPED if ended else UNFINISHED
