"""medvit.outcome: the one rule for how a trial ended, and the places that read it."""

from __future__ import annotations

import pytest

from medvit.outcome import DIVERGED, EARLY_STOPPED, ERRORED, FINISHED, OUTCOMES, UNFINISHED, trial_outcome


def _reports(epochs: int, diverged: bool = False) -> list[dict]:
    return [{"epoch": e, "val_acc": 0.5, "diverged": diverged and e == epochs} for e in range(1, epochs + 1)]


@pytest.mark.parametrize("reports, epochs, errored, ended, outcome", [
    (_reports(3), 3, False, True, FINISHED),
    (_reports(3), 3, False, False, FINISHED),  # reached its budget: finished, whatever Ray says
    (_reports(1), 3, False, True, EARLY_STOPPED),  # ASHA stopped it
    (_reports(1), 3, False, False, UNFINISHED),  # still running, or cut off
    (_reports(2, diverged=True), 3, False, True, DIVERGED),  # stopped early because it diverged
    (_reports(3, diverged=True), 3, False, True, DIVERGED),  # diverged in its last epoch
    (_reports(3), 3, True, True, ERRORED),  # an error outranks everything else
    ([], 3, True, True, ERRORED),  # errored before its first report
    ([], None, False, False, UNFINISHED),
    ([{"training_iteration": 3}], 3, False, True, FINISHED),  # Ray's counter where there is no epoch
])
def test_each_way_a_trial_ends(reports, epochs, errored, ended, outcome):
    assert trial_outcome(reports, epochs, errored=errored, ended=ended) == outcome


def test_the_results_table_and_tensorboard_know_every_outcome():
    from analysis.schema import STOP_REASONS
    from trainables.tensorboard import TRIAL_ENDS

    assert STOP_REASONS == OUTCOMES
    # TensorBoard writes the end of a trial that has ended: anything but unfinished
    assert set(TRIAL_ENDS) == set(OUTCOMES) - {UNFINISHED}
