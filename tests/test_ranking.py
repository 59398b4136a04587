"""One ranking rule (`sweeps.ranking`) for the launcher's best_config.yaml and the analysis
tables: the best selection score over a trial's epochs, diverged trials never ranked, ties to
the earlier best epoch, then the smaller trial id."""

from __future__ import annotations

import pandas as pd

from analysis.tables import rank_trials
from sweeps.ranking import SCORE, rank_key, trial_best


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
