"""One ranking rule (`sweeps.ranking`) for the launcher's best_config.yaml and the analysis
tables: the best selection score over a trial's epochs, diverged trials never ranked, ties to
the earlier best epoch, then the smaller trial id; with repeats, configurations ranked by the
mean over their seeds."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.tables import rank_trials
from sweeps.ranking import SCORE, Candidate, rank_key, ranks, trial_best


def _epochs(metric_values, scores=None, diverged_last=False):
    history = [{"epoch": i + 1, "training_iteration": i + 1, "val_acc": v} for i, v in enumerate(metric_values)]
    for record, score in zip(history, scores or []):
        record[SCORE] = score
    if diverged_last:
        history[-1]["diverged"] = True
    return history


def test_ranks_on_the_smoothed_score_where_reported():
    # the raw metric peaks at epoch 2; the smoothed score at epoch 4
    assert trial_best(_epochs([0.5, 0.9, 0.6, 0.7], scores=[0.5, 0.7, 0.66, 0.73]), "val_acc", "max") == (0.73, 4)


def test_older_results_rank_on_the_metric_first_epoch_on_ties():
    assert trial_best(_epochs([0.5, 0.8, 0.8, 0.6]), "val_acc", "max") == (0.8, 2)
    assert trial_best([{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.4}], "val_loss", "min") == (0.4, 2)


def test_a_diverged_or_empty_trial_is_never_ranked():
    assert trial_best(_epochs([0.5, 0.9], scores=[0.5, -1.0], diverged_last=True), "val_acc", "max") is None
    assert trial_best([], "val_acc", "max") is None
    assert trial_best(_epochs([float("nan")]), "val_acc", "max") is None


def test_rank_key_orders_best_first_then_earlier_epoch_then_trial_id():
    trials = [(0.8, 5, "t3"), (0.9, 7, "t2"), (0.9, 3, "t9"), (0.9, 3, "t1")]
    assert sorted(trials, key=lambda t: rank_key(*t, "max")) == [(0.9, 3, "t1"), (0.9, 3, "t9"), (0.9, 7, "t2"),
                                                                (0.8, 5, "t3")]
    assert sorted(trials, key=lambda t: rank_key(*t, "min"))[0] == (0.8, 5, "t3")


def test_the_results_table_is_ranked_by_the_same_key():
    rows = [("t3", 0.8, 5, "finished"), ("t2", 0.9, 7, "finished"), ("t9", 0.9, 3, "early_stopped"),
            ("t1", 0.9, 3, "finished"), ("t0", 0.95, 1, "errored"), ("t4", None, None, "diverged")]
    df = pd.DataFrame([{"trial_id": t, "best_value": v, "best_epoch": e, "stop_reason": r, "sweep": "s",
                        "metric": "val_acc", "mode": "max"} for t, v, e, r in rows])
    assert rank_trials(df)["trial_id"].tolist() == ["t1", "t9", "t2", "t3"]


# --------------------------------------------------------------------------------------------
# sweeps with repeats: configurations ranked by the mean over their seeds


def _ranked_ids(candidates, mode="max"):
    keyed = [(rank.key, c.trial_id) for rank, c in zip(ranks(candidates, mode), candidates) if rank is not None]
    return [trial_id for _, trial_id in sorted(keyed)]


def _repeats(group, *values, finished=True):
    """Candidates of one configuration repeated with two seeds; None: a diverged or errored repeat."""
    return [Candidate(f"{group}{i}", None if v is None else (v, 3), finished, group=group, repeats=2)
            for i, v in enumerate(values)]


def test_the_best_mean_over_seeds_wins_over_the_single_best_trial():
    # lucky: one seed at 0.70 (the single best trial), the other at 0.40, mean 0.55;
    # steady: 0.60 and 0.58, mean 0.59
    candidates = _repeats("lucky", 0.70, 0.40) + _repeats("steady", 0.60, 0.58)
    assert _ranked_ids(candidates) == ["steady0", "steady1", "lucky0", "lucky1"]
    by_id = dict(zip((c.trial_id for c in candidates), ranks(candidates, "max")))
    assert by_id["steady1"].score == pytest.approx(0.59) and by_id["lucky0"].score == pytest.approx(0.55)
    # the same rule from the results table
    rows = [{"trial_id": c.trial_id, "best_value": c.best[0], "best_epoch": c.best[1], "stop_reason": "finished",
             "sweep": "s", "sweep_dir": "/s", "config_group": c.group, "repeat_index": int(c.trial_id[-1]),
             "repeats": 2, "metric": "val_acc", "mode": "max"} for c in candidates]
    assert rank_trials(pd.DataFrame(rows))["trial_id"].tolist() == ["steady0", "steady1", "lucky0", "lucky1"]


def test_min_mode_ranks_the_lowest_mean_first():
    candidates = _repeats("lucky", 0.20, 0.90) + _repeats("steady", 0.40, 0.45)
    assert _ranked_ids(candidates, "min") == ["steady0", "steady1", "lucky0", "lucky1"]


def test_a_configuration_with_a_failed_or_missing_repeat_ranks_behind_complete_ones():
    diverged = _repeats("diverged", 0.90, None)          # its surviving seed is the best trial
    short = _repeats("short", 0.80)                      # one of two repeats ran
    unfinished = _repeats("unfinished", 0.85, 0.85, finished=False)
    complete = _repeats("complete", 0.50, 0.52)
    order = _ranked_ids(diverged + short + unfinished + complete)
    assert order[:2] == ["complete1", "complete0"]
    assert set(order[2:]) == {"diverged0", "short0", "unfinished0", "unfinished1"}  # by their means, behind
    assert "diverged1" not in order  # a diverged trial itself is never ranked


def test_without_repeats_the_order_is_rank_keys():
    trials = [("t3", 0.8, 5), ("t2", 0.9, 7), ("t9", 0.9, 3), ("t1", 0.9, 3), ("t4", None, None)]
    candidates = [Candidate(t, None if v is None else (v, e), finished=False) for t, v, e in trials]
    expected = sorted((t for t in trials if t[1] is not None), key=lambda t: rank_key(t[1], t[2], t[0], "max"))
    assert _ranked_ids(candidates) == [t for t, _, _ in expected] == ["t1", "t9", "t2", "t3"]
