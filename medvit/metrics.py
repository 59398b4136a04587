"""Evaluation metrics with ``medmnist.evaluator`` semantics (``getACC`` / ``getAUC``).

Vectorised re-implementation; the tests check it against medmnist's own functions.

Per task (medmnist's task strings):

- ``"multi-class"`` and ``"ordinal-regression"``: ``acc`` = accuracy of the argmax class
  (ties go to the lowest index, as ``np.argmax``); ``auc`` = unweighted mean over the ``K``
  score columns of the one-vs-rest ROC AUC.
- ``"binary-class"``: the score is the last column (probability of class 1) or the 1-D score;
  ``acc`` thresholds it with ``score > 0.5``; ``auc`` is the ROC AUC of that score.
- ``"multi-label, binary-class"``: ``auc`` = mean per-label ROC AUC; ``acc`` = mean per-label
  accuracy of ``score > 0.5``.
- Ordinal tasks add ``qwk`` (quadratic weighted Cohen's kappa between label and argmax grade,
  weights ``(i - j)^2`` over the grades ``0..K-1``) and ``mae`` (mean absolute error of the
  argmax grade).

ROC AUC is computed as the Mann-Whitney statistic with average ranks for ties, which equals
scikit-learn's trapezoidal ``roc_auc_score`` (a tie between a positive and a negative counts
one half).

Degenerate cases (tiny smoke splits): nothing here raises for them.

- A one-vs-rest (or per-label) AUC whose column has only positives or only negatives in
  ``y_true`` (e.g. a class absent from the split) is undefined.  medmnist sums the per-class
  ``roc_auc_score`` values, and with the installed scikit-learn that call warns
  ``UndefinedMetricWarning`` and returns NaN, so medmnist's mean AUC is NaN.  This module
  does the same: the undefined column is NaN, the reported ``auc`` is NaN (not a mean over
  the defined columns, which would be a different metric), and this module's
  ``UndefinedMetricWarning`` (a ``UserWarning``, named after scikit-learn's) says which
  columns.  (Older scikit-learn raised ``ValueError`` there instead, so medmnist crashed; we
  never do.)  Non-finite scores likewise give a NaN AUC for their column.
- ``qwk`` is NaN (with ``UndefinedMetricWarning``) when its denominator is zero, i.e. labels
  and predictions all fall in one and the same grade, as ``sklearn.metrics.cohen_kappa_score``.
- An empty split gives NaN for every metric.
- One sample works (medmnist's ``squeeze`` breaks there; this module does not squeeze the
  sample axis).

Neither scikit-learn nor SciPy is imported: importing them took 1.5 s in every training
process (a sweep trial, ``medsweep train``), more than a small epoch.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from medvit.tasks import BINARY, MULTI_LABEL, ORDINAL, TASKS

__all__ = [
    "UndefinedMetricWarning",
    "average_ranks",
    "scores_from_logits",
    "logits_from_scores",
    "evaluate",
    "roc_auc_columns",
    "quadratic_weighted_kappa",
    "expected_grade",
    "tune_cutpoints",
    "decode_grades",
    "decoded_metrics",
    "best_threshold",
    "threshold_accuracy",
    "best_class_offsets",
    "class_offset_accuracy",
    "best_decision_rule",
    "correct_per_image",
]


THRESHOLD = 0.5
# The smallest probability whose logarithm is taken: a confident 0 gives a large, finite loss.
PROBABILITY_FLOOR = 1e-12


def _check_task(task: str) -> None:
    if task not in TASKS:
        allowed = ", ".join(repr(t) for t in TASKS)
        raise ValueError(f"task: unknown task {task!r}; allowed: {allowed}")


def scores_from_logits(task: str, logits: torch.Tensor) -> np.ndarray:
    """Model outputs to scores, float64 ``(N, C)``: sigmoid per label for the multi-label task,
    softmax over classes otherwise (binary tasks have two logits)."""
    _check_task(task)
    if logits.ndim != 2:
        raise ValueError(f"logits: expected shape (N, C); got {tuple(logits.shape)}")
    x = logits.detach().to(device="cpu", dtype=torch.float64)
    probs = torch.sigmoid(x) if task == MULTI_LABEL else torch.softmax(x, dim=1)
    return probs.numpy()


def logits_from_scores(task: str, scores: np.ndarray) -> torch.Tensor:
    """Scores back to logits that :func:`scores_from_logits` maps to them (an ensemble's
    averaged probabilities have no logits of their own): ``log p`` (softmax(log p) = p), or
    each label's log-odds for the multi-label task. Probabilities are clipped away from 0 and 1."""
    _check_task(task)
    p = np.clip(np.asarray(scores, dtype=np.float64), PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    return torch.from_numpy(np.log(p) - np.log1p(-p) if task == MULTI_LABEL else np.log(p))


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined on these labels (a class absent, one grade only): it is NaN."""


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks of each column of ``scores`` (N, C), ties sharing their mean rank
    (``scipy.stats.rankdata(method="average", axis=0)`` for finite scores)."""
    ranks = np.empty(scores.shape, dtype=np.float64)
    for column in range(scores.shape[1]):
        order = np.argsort(scores[:, column], kind="stable")
        ordered = scores[order, column]
        begins = np.r_[True, ordered[1:] != ordered[:-1]]  # each tie group's first position
        starts = np.flatnonzero(begins)
        ends = np.r_[starts[1:], len(ordered)]
        group = np.cumsum(begins) - 1
        ranks[order, column] = (starts[group] + ends[group] + 1) / 2.0  # mean of ranks start+1 .. end
    return ranks


def roc_auc_columns(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each column of ``scores`` (N, C) against the boolean ``positive`` (N, C).

    Mann-Whitney form with average ranks for ties.  A column without both positives and
    negatives, or with a non-finite score, gives NaN.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    n_pos = positive.sum(axis=0).astype(np.float64)
    n_neg = n - n_pos
    if n == 0:
        return np.full(scores.shape[1], np.nan)
    ranks = np.where(np.isfinite(scores).all(axis=0, keepdims=True), average_ranks(scores), np.nan)
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def quadratic_weighted_kappa(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Cohen's kappa with quadratic weights ``(i - j)^2`` over the grades ``0..K-1``.

    Same value as ``sklearn.metrics.cohen_kappa_score(y_true, y_pred, weights="quadratic",
    labels=range(K))``.  The grades are fixed to ``0..K-1`` so that the weights are distances
    between grades even when a grade is absent (without ``labels``, scikit-learn weighs by the
    index among the grades present).  NaN when undefined (zero expected disagreement).
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    k = int(num_classes)
    if y_true.size == 0:
        return float("nan")
    observed = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k).astype(np.float64)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / y_true.size
    grades = np.arange(k, dtype=np.float64)
    weights = (grades[:, None] - grades[None, :]) ** 2
    denominator = float((weights * expected).sum())
    if denominator == 0.0:
        warnings.warn(
            "qwk: labels and predictions all fall in one grade; quadratic weighted kappa is "
            "undefined and reported as NaN",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return float("nan")
    return float(1.0 - (weights * observed).sum() / denominator)


def _single_labels(y_true: np.ndarray, n: int) -> np.ndarray:
    """(N,) or (N, 1) integer-valued labels to int64 (N,)."""
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y_true: expected shape ({n},) or ({n}, 1); got {np.shape(y_true)}")
    if y.dtype.kind == "f":
        if not np.all(y == np.round(y)):
            raise ValueError("y_true: expected integer class labels; got non-integer values")
    elif y.dtype.kind not in "iub":
        raise ValueError(f"y_true: expected integer class labels; got dtype {y.dtype}")
    return y.astype(np.int64)


def _check_range(y: np.ndarray, num_classes: int, what: str) -> None:
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"y_true: {what} labels must lie in [0, {num_classes}); "
            f"got values in [{y.min()}, {y.max()}]"
        )


def _mean_auc(aucs: np.ndarray, task: str) -> float:
    undefined = np.flatnonzero(np.isnan(aucs))
    if undefined.size:
        what = "label" if task == MULTI_LABEL else "class"
        warnings.warn(
            f"auc: ROC AUC is undefined for {what} column(s) {undefined.tolist()} (only one "
            "class present in y_true for that column, or non-finite scores); the mean AUC is "
            "NaN, as in medmnist.evaluator.getAUC",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return float("nan")
    return float(aucs.mean())


def evaluate(task: str, y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Metrics of one split: ``{"acc", "auc"}``, plus ``"qwk"`` and ``"mae"`` for ordinal tasks.

    ``scores`` are probabilities as from :func:`scores_from_logits` (``(N, C)``; binary tasks
    also accept ``(N,)``).  ``y_true`` is ``(N,)`` or ``(N, 1)`` integer labels, or ``(N, L)``
    0/1 labels for the multi-label task.  Values are Python floats; see the module docstring
    for the exact semantics and for the degenerate cases (NaN, never an exception).
    """
    _check_task(task)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim not in (1, 2):
        raise ValueError(f"scores: expected shape (N, C); got {scores.shape}")
    n = scores.shape[0]
    nan = float("nan")

    if task == MULTI_LABEL:
        y = np.asarray(y_true)
        if y.shape != scores.shape or scores.ndim != 2:
            raise ValueError(
                f"y_true: expected shape {scores.shape} (N, L) matching scores; got {y.shape}"
            )
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("y_true: multi-label targets must be 0 or 1")
        positive = y == 1
        if n == 0:
            return {"acc": nan, "auc": nan}
        acc = float(correct_per_image(task, y, scores).mean())
        return {"acc": acc, "auc": _mean_auc(roc_auc_columns(positive, scores), task)}

    y = _single_labels(y_true, n)

    if task == BINARY:
        score = scores[:, -1] if scores.ndim == 2 else scores
        _check_range(y, 2, "binary")
        if n == 0:
            return {"acc": nan, "auc": nan}
        auc = _mean_auc(roc_auc_columns((y == 1)[:, None], score[:, None]), task)
        return {"acc": float(correct_per_image(task, y, score).mean()), "auc": auc}

    # multi-class and ordinal-regression
    if scores.ndim != 2:
        raise ValueError(f"scores: expected shape (N, K) for task {task!r}; got {scores.shape}")
    k = scores.shape[1]
    _check_range(y, k, "class")
    if n == 0:
        out = {"acc": nan, "auc": nan}
        if task == ORDINAL:
            out.update(qwk=nan, mae=nan)
        return out
    pred = np.argmax(scores, axis=1)
    positive = y[:, None] == np.arange(k)[None, :]
    out = {
        "acc": float(correct_per_image(task, y, scores).mean()),
        "auc": _mean_auc(roc_auc_columns(positive, scores), task),
    }
    if task == ORDINAL:
        out["qwk"] = quadratic_weighted_kappa(y, pred, k)
        out["mae"] = float(np.abs(pred - y).mean())
    return out


def correct_per_image(task: str, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each image's share of correct labels under :func:`evaluate`'s decision rule (the argmax
    class; a binary score above 0.5; each of a multi-label image's labels above 0.5): ``(N,)``
    floats whose mean is :func:`evaluate`'s ``acc``. What a bootstrap over test images resamples."""
    _check_task(task)
    scores = np.asarray(scores, dtype=np.float64)
    if task == MULTI_LABEL:
        y = np.asarray(y_true)
        if y.shape != scores.shape or scores.ndim != 2:
            raise ValueError(f"y_true: expected shape {scores.shape} (N, L) matching scores; got {y.shape}")
        return ((scores > THRESHOLD) == (y == 1)).mean(axis=1)
    if task == BINARY:
        y, score = _binary_score(y_true, scores)
        return ((score > THRESHOLD) == (y == 1)).astype(np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected shape (N, K) for task {task!r}; got {scores.shape}")
    y = _single_labels(y_true, scores.shape[0])
    _check_range(y, scores.shape[1], "class")
    return (np.argmax(scores, axis=1) == y).astype(np.float64)


def _binary_score(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A binary task's labels ``(N,)`` and score of the positive class ``(N,)``."""
    scores = np.asarray(scores, dtype=np.float64)
    score = scores[:, -1] if scores.ndim == 2 else scores
    y = _single_labels(y_true, score.shape[0])
    _check_range(y, 2, "binary")
    return y, score


def threshold_accuracy(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """A binary task's accuracy with ``score > threshold`` as the positive class (nan for no samples)."""
    y, score = _binary_score(y_true, scores)
    return float(((score > threshold) == (y == 1)).mean()) if score.size else float("nan")


def best_threshold(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """A binary task's decision threshold that maximises accuracy on these labels, and that
    accuracy (``score > threshold`` is the positive class, as in :func:`evaluate`; among equally
    accurate thresholds the one nearest 0.5). Chosen on the split it then scores, the accuracy
    is flattered: the test-selection audit reports it so, never as a result. ``(nan, nan)`` for
    no samples."""
    y, score = _binary_score(y_true, scores)
    if score.size == 0:
        return float("nan"), float("nan")
    values = np.unique(score)
    # one cut below every score (all positive), one between each pair of neighbours, one at the top (none)
    cuts = np.concatenate([[np.nextafter(values[0], -np.inf)], (values[:-1] + values[1:]) / 2, [values[-1]]])
    negatives, positives = np.sort(score[y == 0]), np.sort(score[y == 1])
    negatives_below = np.searchsorted(negatives, cuts, side="right")
    correct = negatives_below + positives.size - np.searchsorted(positives, cuts, side="right")
    best = np.flatnonzero(correct == correct.max())
    cut = cuts[best[np.argmin(np.abs(cuts[best] - THRESHOLD))]]
    return float(cut), float(correct.max() / score.size)


def _class_log_scores(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A multi-class task's labels ``(N,)`` and log-probabilities ``(N, K)``."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected shape (N, K); got {scores.shape}")
    y = _single_labels(y_true, scores.shape[0])
    _check_range(y, scores.shape[1], "class")
    return y, np.log(np.clip(scores, PROBABILITY_FLOOR, None))


def class_offset_accuracy(y_true: np.ndarray, scores: np.ndarray, offsets: np.ndarray) -> float:
    """A multi-class task's accuracy of the argmax of the log-probabilities plus one offset per
    class (zero offsets: :func:`evaluate`'s ACC; nan for no samples)."""
    y, log_scores = _class_log_scores(y_true, scores)
    return float((np.argmax(log_scores + offsets, axis=1) == y).mean()) if y.size else float("nan")


def best_class_offsets(y_true: np.ndarray, scores: np.ndarray, starts: int = 20) -> tuple[np.ndarray, float]:
    """Per-class offsets to a multi-class task's log-probabilities, chosen to raise the argmax's
    accuracy on these labels, and that accuracy: the multi-class form of :func:`best_threshold`
    (on two classes an offset is a threshold). Coordinate ascent: each class's offset in turn
    moves to the value that scores best with the others held (exact: every cut between two
    images' margins is tried; among equals the one nearest its current value), until a round
    changes nothing; from zero and from ``starts - 1`` seeded random starts (one start stops
    where no single offset gains, on RetinaMNIST up to 4 test images short), the best kept. The
    best offsets overall may score higher still, so on the test split this is a lower bound of
    what tuning them there could print: the audit reports it so, never as a result. ``(nan
    offsets, nan)`` for no samples."""
    y, log_scores = _class_log_scores(y_true, scores)
    k = log_scores.shape[1]
    if y.size == 0:
        return np.full(k, np.nan), float("nan")
    rng = np.random.default_rng(0)
    ascents = (_ascend(y, log_scores, np.zeros(k) if i == 0 else rng.normal(size=k)) for i in range(max(starts, 1)))
    offsets, correct = max(ascents, key=lambda ascent: ascent[1])  # the first of equals: zero's
    return offsets, correct / y.size


def _ascend(y: np.ndarray, log_scores: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`best_class_offsets`' coordinate ascent from ``offsets``: the offsets where no
    single class's move gains, and the images they get right."""
    correct = int((np.argmax(log_scores + offsets, axis=1) == y).sum())
    moved = True
    while moved:
        moved = False
        for c in range(log_scores.shape[1]):
            others = log_scores + offsets
            others[:, c] = -np.inf
            # class c takes image i exactly when its offset exceeds margin[i]
            margin = others.max(axis=1) - log_scores[:, c]
            values = np.unique(margin)
            cuts = np.concatenate([[values[0] - 1], (values[:-1] + values[1:]) / 2, [values[-1] + 1]])
            mine = np.sort(margin[y == c])
            theirs = np.sort(margin[(y != c) & (np.argmax(others, axis=1) == y)])
            count = np.searchsorted(mine, cuts, side="left") + theirs.size - np.searchsorted(theirs, cuts, side="right")
            best = np.flatnonzero(count == count.max())
            candidate = offsets.copy()
            candidate[c] = cuts[best[np.argmin(np.abs(cuts[best] - offsets[c]))]]
            # counted again from the argmax itself: a tie the cuts cannot see never passes as a gain
            gained = int((np.argmax(log_scores + candidate, axis=1) == y).sum())
            if gained > correct:
                offsets, correct, moved = candidate, gained, True
    return offsets, correct


def best_decision_rule(task: str, y_true: np.ndarray, scores: np.ndarray) -> dict | None:
    """The decision rule that scores best on these labels and its accuracy: a binary task's
    threshold (:func:`best_threshold`), a multi-class or ordinal task's class offsets
    (:func:`best_class_offsets`); None for a multi-label task, whose ACC averages one threshold
    per label. What the test-selection audit reports as the rule a paper could tune on test."""
    _check_task(task)
    if task == BINARY:
        threshold, acc = best_threshold(y_true, scores)
        return {"threshold": threshold, "acc": acc}
    if task == MULTI_LABEL:
        return None
    offsets, acc = best_class_offsets(y_true, scores)
    return {"offsets": [float(v) for v in offsets], "acc": acc}


# -- ordinal decoding ----------------------------------------------------------------------
#
# Argmax throws away the order of the grades. The expected grade sum_k k p_k keeps it, and
# cut-points between grades tuned on the validation split (the method of the diabetic-
# retinopathy grading competitions) turn it back into a grade that usually scores better on
# QWK and MAE. ACC stays argmax, as medmnist defines it.


def expected_grade(scores: np.ndarray) -> np.ndarray:
    """(N, K) class probabilities to the (N,) expected grade in [0, K - 1]."""
    scores = np.asarray(scores, dtype=np.float64)
    return scores @ np.arange(scores.shape[1], dtype=np.float64)


def decode_grades(expected: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Grade k where cuts[k - 1] < expected <= cuts[k] (K - 1 increasing cut-points)."""
    return np.searchsorted(np.asarray(cuts), np.asarray(expected), side="left").astype(np.int64)


def tune_cutpoints(expected: np.ndarray, y_true: np.ndarray, num_classes: int, passes: int = 3) -> np.ndarray:
    """K - 1 cut-points that maximise QWK of the decoded grades on (expected, y_true).

    Coordinate ascent from the midpoints 0.5, 1.5, ...: each cut in turn moves to the best of
    the midpoints between neighbouring expected values that keep the cuts in order. Among
    equal QWKs the candidate nearest the current cut wins, so the result is deterministic and
    stays at the midpoints when the data cannot tell.
    """
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    e = np.sort(np.unique(np.asarray(expected, dtype=np.float64)))
    midpoints = (e[1:] + e[:-1]) / 2.0
    cuts = np.arange(num_classes - 1, dtype=np.float64) + 0.5

    def qwk(c: np.ndarray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            value = quadratic_weighted_kappa(y, decode_grades(expected, c), num_classes)
        return -np.inf if np.isnan(value) else value

    for _ in range(passes):
        for j in range(num_classes - 1):
            low = cuts[j - 1] if j > 0 else -np.inf
            high = cuts[j + 1] if j < num_classes - 2 else np.inf
            candidates = midpoints[(midpoints > low) & (midpoints < high)]
            best, best_key = cuts[j], (qwk(cuts), 0.0)
            for c in candidates:
                trial = cuts.copy()
                trial[j] = c
                key = (qwk(trial), -abs(c - cuts[j]))
                if key > best_key:
                    best, best_key = c, key
            cuts[j] = best
    return cuts


def decoded_metrics(y_val: np.ndarray, val_scores: np.ndarray, y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """QWK and MAE of expected-grade decoding on (y, scores), cut-points tuned on the
    validation split: ``{"qwk_decoded", "mae_decoded"}``."""
    k = np.asarray(scores).shape[1]
    cuts = tune_cutpoints(expected_grade(val_scores), _single_labels(y_val, len(val_scores)), k)
    labels = _single_labels(y, len(scores))
    grades = decode_grades(expected_grade(scores), cuts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        qwk = quadratic_weighted_kappa(labels, grades, k)
    return {"qwk_decoded": qwk, "mae_decoded": float(np.abs(grades - labels).mean()) if len(labels) else float("nan")}
