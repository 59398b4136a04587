"""Tests for medvit.metrics against medmnist's own getACC/getAUC and scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from medmnist.evaluator import getACC, getAUC
from scipy.stats import rankdata
from sklearn.exceptions import UndefinedMetricWarning as SklearnUndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from medvit.metrics import (UndefinedMetricWarning, average_ranks, best_class_offsets, best_decision_rule, best_threshold,
                            class_offset_accuracy, correct_per_image, evaluate, quadratic_weighted_kappa, roc_auc_columns,
                            scores_from_logits, threshold_accuracy)

SEEDS = [0, 1, 2, 3, 4]


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def random_single_label(seed, n, k, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)  # every class present, so every one-vs-rest AUC is defined
    rng.shuffle(y)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    if ties:
        logits = np.round(logits, 1)  # many tied scores within a column
    return y, softmax(logits)


def assert_matches_medmnist(task, y_medmnist, y_ours, scores):
    ours = evaluate(task, y_ours, scores)
    assert ours["acc"] == pytest.approx(getACC(y_medmnist, scores, task), rel=1e-12, abs=1e-12)
    assert ours["auc"] == pytest.approx(getAUC(y_medmnist, scores, task), rel=1e-12, abs=1e-12)
    return ours


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [3, 9, 11])
@pytest.mark.parametrize("ties", [False, True])
def test_multi_class_matches_medmnist(seed, k, ties):
    y, scores = random_single_label(seed, 300, k, ties)
    ours = assert_matches_medmnist("multi-class", y[:, None], y[:, None], scores)
    assert set(ours) == {"acc", "auc"}
    assert all(type(v) is float for v in ours.values())


@pytest.mark.parametrize("seed", SEEDS)
def test_ordinal_matches_medmnist_sklearn_and_hand_mae(seed):
    k = 5
    y, scores = random_single_label(seed, 250, k)
    ours = assert_matches_medmnist("ordinal-regression", y[:, None], y, scores)
    assert set(ours) == {"acc", "auc", "qwk", "mae"}
    assert all(type(v) is float for v in ours.values())
    pred = scores.argmax(axis=1)
    expected_qwk = cohen_kappa_score(y, pred, weights="quadratic", labels=np.arange(k))
    assert ours["qwk"] == pytest.approx(expected_qwk, rel=1e-12, abs=1e-12)
    mae = sum(abs(int(p) - int(t)) for p, t in zip(pred, y)) / len(y)
    assert ours["mae"] == pytest.approx(mae, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_binary_matches_medmnist(seed, ties):
    y, scores = random_single_label(seed, 200, 2, ties)
    assert scores.shape == (200, 2)
    assert_matches_medmnist("binary-class", y[:, None], y[:, None], scores)
    # A 1-D score (probability of class 1) is accepted too.
    ours_1d = evaluate("binary-class", y, scores[:, 1])
    assert ours_1d == evaluate("binary-class", y, scores)


def test_binary_threshold_is_strict():
    y = np.array([1, 0, 1, 0])
    p1 = np.array([0.5, 0.5, 0.7, 0.2])
    scores = np.stack([1 - p1, p1], axis=1)
    out = evaluate("binary-class", y, scores)
    assert out["acc"] == getACC(y, scores, "binary-class") == 0.75


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_multi_label_matches_medmnist(seed, ties):
    rng = np.random.default_rng(seed)
    n, labels = 300, 14
    y = (rng.random((n, labels)) < rng.uniform(0.05, 0.5, size=labels)).astype(np.float32)
    y[0], y[1] = 1, 0  # every label has both values
    logits = rng.normal(size=(n, labels)) + 1.2 * y
    if ties:
        logits = np.round(logits, 1)
    scores = 1 / (1 + np.exp(-logits))
    ours = assert_matches_medmnist("multi-label, binary-class", y, y, scores)
    assert set(ours) == {"acc", "auc"}


def test_multi_label_scores_from_logits_round_trip():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(50, 14)), dtype=torch.float32)
    scores = scores_from_logits("multi-label, binary-class", logits)
    assert scores.dtype == np.float64 and scores.shape == (50, 14)
    np.testing.assert_allclose(scores, torch.sigmoid(logits.double()).numpy())


@pytest.mark.parametrize("task", ["multi-class", "binary-class", "ordinal-regression"])
def test_scores_from_logits_softmax(task):
    logits = torch.randn(10, 5 if task != "binary-class" else 2, requires_grad=True)
    scores = scores_from_logits(task, logits)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(scores, torch.softmax(logits.detach().double(), 1).numpy())


def test_label_shapes_n_and_n1_agree():
    y, scores = random_single_label(0, 100, 5)
    for task in ("multi-class", "ordinal-regression"):
        assert evaluate(task, y, scores) == evaluate(task, y[:, None], scores)
        assert evaluate(task, y.astype(np.uint8)[:, None], scores) == evaluate(task, y, scores)


@pytest.mark.parametrize("seed", SEEDS)
def test_average_ranks_are_scipys_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    for n in (0, 1, 2, 17, 200):
        for scores in (rng.normal(size=(n, 3)), rng.integers(0, 4, size=(n, 3)).astype(float)):
            assert np.array_equal(average_ranks(scores), rankdata(scores, method="average", axis=0))


def test_roc_auc_columns_matches_sklearn_per_column():
    rng = np.random.default_rng(5)
    positive = rng.random((80, 6)) < 0.3
    positive[0], positive[1] = True, False
    scores = np.round(rng.random((80, 6)), 1)
    ours = roc_auc_columns(positive, scores)
    for c in range(6):
        assert ours[c] == pytest.approx(roc_auc_score(positive[:, c], scores[:, c]), abs=1e-12)


def test_qwk_against_sklearn_with_absent_grades():
    # Grades 0, 1, 4 only: the weights must be grade distances, as with labels=range(K).
    y = np.array([0, 1, 4, 4, 1, 0, 4])
    pred = np.array([0, 4, 4, 1, 1, 0, 0])
    assert quadratic_weighted_kappa(y, pred, 5) == pytest.approx(
        cohen_kappa_score(y, pred, weights="quadratic", labels=np.arange(5)), abs=1e-12
    )


# --------------------------------------------------------------------------- degenerate cases


def test_absent_class_gives_nan_auc_like_medmnist():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=40)  # class 4 of 5 never occurs
    scores = softmax(rng.normal(size=(40, 5)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnUndefinedMetricWarning)
        theirs = getAUC(y, scores, "ordinal-regression")
    assert np.isnan(theirs)
    with pytest.warns(UndefinedMetricWarning, match=r"column\(s\) \[4\]"):
        ours = evaluate("ordinal-regression", y, scores)
    assert np.isnan(ours["auc"])
    assert ours["acc"] == pytest.approx(getACC(y, scores, "ordinal-regression"))
    assert np.isfinite(ours["qwk"]) and np.isfinite(ours["mae"])


def test_multi_label_constant_column_gives_nan_auc():
    rng = np.random.default_rng(1)
    y = (rng.random((30, 3)) < 0.5).astype(np.float32)
    y[:, 2] = 0
    scores = rng.random((30, 3))
    with pytest.warns(UndefinedMetricWarning):
        out = evaluate("multi-label, binary-class", y, scores)
    assert np.isnan(out["auc"])
    assert out["acc"] == pytest.approx(getACC(y, scores, "multi-label, binary-class"))


@pytest.mark.parametrize("task,k", [("multi-class", 3), ("binary-class", 2), ("ordinal-regression", 5)])
def test_tiny_splits_never_crash(task, k):
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 3):
        y = rng.integers(0, k, size=(n, 1))
        scores = softmax(rng.normal(size=(n, k))) if n else np.zeros((0, k))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            out = evaluate(task, y, scores)
        expected_keys = {"acc", "auc", "qwk", "mae"} if task == "ordinal-regression" else {"acc", "auc"}
        assert set(out) == expected_keys
        assert all(type(v) is float for v in out.values())
        if n == 0:
            assert all(np.isnan(v) for v in out.values())
        else:
            assert 0.0 <= out["acc"] <= 1.0


def test_single_grade_qwk_is_nan():
    y = np.array([2, 2, 2])
    scores = np.tile(np.eye(5)[2], (3, 1))
    with pytest.warns(UndefinedMetricWarning):
        out = evaluate("ordinal-regression", y, scores)
    assert np.isnan(out["qwk"]) and out["acc"] == 1.0 and out["mae"] == 0.0


def test_non_finite_scores_give_nan_auc_not_an_exception():
    y, scores = random_single_label(0, 50, 3)
    scores = scores.copy()
    scores[3, 1] = np.nan
    with pytest.warns(UndefinedMetricWarning, match=r"\[1\]"):
        out = evaluate("multi-class", y, scores)
    assert np.isnan(out["auc"])


# --------------------------------------------------------------------------- validation


def test_input_validation():
    y, scores = random_single_label(0, 20, 3)
    with pytest.raises(ValueError, match="task"):
        evaluate("regression", y, scores)
    with pytest.raises(ValueError, match="task"):
        scores_from_logits("regression", torch.zeros(2, 3))
    with pytest.raises(ValueError, match="y_true"):
        evaluate("multi-class", y[:10], scores)
    with pytest.raises(ValueError, match="y_true"):
        evaluate("multi-class", y + 3, scores)
    with pytest.raises(ValueError, match="y_true"):
        evaluate("multi-class", y + 0.5, scores)
    with pytest.raises(ValueError, match="y_true"):
        evaluate("multi-label, binary-class", np.zeros((20, 2)), scores)
    with pytest.raises(ValueError, match="y_true"):
        evaluate("binary-class", np.full(20, 2), scores[:, :2])


@pytest.mark.parametrize("seed", range(20))
def test_best_threshold_is_the_best_of_every_cut(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    y = rng.integers(0, 2, n)
    score = np.round(rng.random(n), 1)  # ties
    threshold, acc = best_threshold(y[:, None], np.stack([1 - score, score], axis=1))
    # every cut that changes a prediction: below all scores, and at each score
    every = [threshold_accuracy(y, score, cut) for cut in [-1.0, *score]]
    assert acc == pytest.approx(max(every)) and threshold_accuracy(y, score, threshold) == pytest.approx(acc)
    assert acc >= evaluate("binary-class", y, score)["acc"]  # 0.5 is one of the cuts


def test_best_threshold_prefers_the_cut_nearest_one_half_and_handles_edges():
    y, score = np.array([0, 1, 1]), np.array([0.1, 0.2, 0.9])
    assert best_threshold(y, score) == (pytest.approx(0.15), 1.0)
    # all positive: any cut below 0.3 is perfect; the one nearest 0.5 is just below 0.3
    threshold, acc = best_threshold(np.array([1, 1]), np.array([0.3, 0.8]))
    assert acc == 1.0 and threshold == pytest.approx(0.3) and threshold < 0.3
    assert all(np.isnan(best_threshold(np.array([], dtype=int), np.array([]))))
    assert threshold_accuracy(y, score, 0.5) == evaluate("binary-class", y, score)["acc"]
    with pytest.raises(ValueError, match="binary"):
        best_threshold(np.array([0, 2]), np.array([0.1, 0.9]))


def random_scores(seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    return rng.integers(0, k, n), np.round(rng.dirichlet(np.ones(k), n), 1)  # rounded: ties


@pytest.mark.parametrize("seed", range(20))
def test_best_class_offsets_leave_no_class_a_move_that_gains(seed):
    y, scores = random_scores(seed, 5)
    offsets, acc = best_class_offsets(y[:, None], scores)
    assert class_offset_accuracy(y, scores, offsets) == acc >= class_offset_accuracy(y, scores, np.zeros(5))
    log_scores = np.log(np.clip(scores, 1e-12, None))
    for c in range(5):  # every offset of class c that changes a prediction, the others held
        others = np.delete(log_scores + offsets, c, axis=1).max(axis=1) - log_scores[:, c]
        for value in [-100.0, 100.0, *(others - 1e-9), *(others + 1e-9)]:
            moved = offsets.copy()
            moved[c] = value
            assert class_offset_accuracy(y, scores, moved) <= acc


@pytest.mark.parametrize("seed", range(20))
def test_class_offsets_on_two_classes_are_the_best_threshold(seed):
    y, scores = random_scores(seed, 2)
    assert best_class_offsets(y, scores)[1] == pytest.approx(best_threshold(y, scores)[1])


def test_the_decision_rule_chosen_follows_the_task():
    y, scores = np.array([0, 1, 2, 2]), np.array([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25], [0.6, 0.1, 0.3], [0.2, 0.2, 0.6]])
    assert evaluate("multi-class", y, scores)["acc"] == 0.5
    # one start's ascent stops at 0.75 here (no single offset gains); the random starts find 1.0
    assert best_class_offsets(y, scores, starts=1)[1] == 0.75
    rule = best_decision_rule("ordinal-regression", y, scores)
    assert rule["acc"] == 1.0 and set(rule) == {"offsets", "acc"}
    assert class_offset_accuracy(y, scores, np.array(rule["offsets"])) == 1.0
    assert best_decision_rule("binary-class", np.array([0, 1]), np.array([0.7, 0.9])) == {"threshold": pytest.approx(0.8), "acc": 1.0}
    assert best_decision_rule("multi-label, binary-class", np.zeros((2, 3)), np.full((2, 3), 0.5)) is None
    offsets, acc = best_class_offsets(np.array([], dtype=int), np.zeros((0, 3)))
    assert np.isnan(acc) and offsets.shape == (3,) and np.isnan(offsets).all()
    with pytest.raises(ValueError, match="class"):
        best_class_offsets(np.array([0, 3]), scores[:2])
    with pytest.raises(ValueError, match="task"):
        best_decision_rule("regression", y, scores)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_each_images_share_of_correct_labels_averages_to_medmnists_acc(seed):
    y, scores = random_single_label(seed, 120, 5, ties=True)
    for task in ("multi-class", "ordinal-regression"):
        correct = correct_per_image(task, y, scores)
        assert correct.shape == (120,) and set(np.unique(correct)) <= {0.0, 1.0}
        assert correct.mean() == pytest.approx(getACC(y[:, None], scores, task), abs=1e-12)
    binary = np.round(np.random.default_rng(seed).random(120), 1)  # scores of exactly 0.5 are negative
    labels = (np.random.default_rng(seed + 1).random(120) < 0.5).astype(int)
    assert correct_per_image("binary-class", labels[:, None], binary).mean() == pytest.approx(
        getACC(labels[:, None], binary[:, None], "binary-class"), abs=1e-12)
    multi = np.random.default_rng(seed).random((120, 4))
    positive = (np.random.default_rng(seed + 2).random((120, 4)) < 0.3).astype(int)
    shares = correct_per_image("multi-label, binary-class", positive, multi)
    assert set(np.unique(shares)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert shares.mean() == pytest.approx(getACC(positive, multi, "multi-label, binary-class"), abs=1e-12)
    with pytest.raises(ValueError, match="y_true"):
        correct_per_image("multi-class", y[:, None] + 5, scores)
