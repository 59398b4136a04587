"""Ensembles from a finished sweep: greedy selection with replacement on the validation split.

A sweep trains many models and keeps one. Averaging several of them is usually better than
the best one alone, and costs no training: every trial's checkpoint already holds its
selected weights and their validation probabilities. Caruana et al. (2004) pick the members
greedily: start from the best single model, then repeatedly add (with replacement) the
trial whose addition makes the averaged validation probabilities score best. Adding a trial
twice gives it twice the weight.

The order is what keeps the test split honest: members and weights are fixed on the
validation split alone (`select_members` never sees test data); only then does
`build_ensemble` run each member on the test split, once.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable

import numpy as np

import torch

from medvit.checkpoint import SELECTION_FILE, Selection, read_selection
from medvit.config import build_config
from medvit.jsonio import write_json
from medvit.losses import loss_for_task
from medvit.metrics import PROBABILITY_FLOOR, decoded_metrics, evaluate, logits_from_scores
from medvit.selection import metric_named
from medvit.tasks import MULTI_LABEL, ORDINAL

if TYPE_CHECKING:
    from medvit.data import MedMNISTData

ENSEMBLE_FILE = "ensemble.json"
DEFAULT_ROUNDS = 20
# The greedy adds one member per round: beyond a few hundred rounds its weights barely move, and a
# mistyped huge --rounds would run for ever.
MAX_ROUNDS = 1000


@dataclass(frozen=True)
class Candidate:
    """One finished trial: its id, folder, selected weights' validation probabilities and config."""

    trial_id: str
    checkpoint: Path | str  # a str: in a bucket (s3://, gs://), fetched when loaded
    val_scores: np.ndarray
    config: dict  # the run's TrainConfig values


Objective = Callable[[np.ndarray], tuple[float, float]]


def objective(task: str, y_val: np.ndarray, metric: str = "acc", loss_fn: torch.nn.Module | None = None) -> Objective:
    """What greedy selection maximises for averaged validation probabilities: the sweep's metric
    (any name of medvit.selection's table: ``val_loss``, ``mae``, ...) turned so that more is
    better, then (on 120 images accuracy often ties) the mean log-likelihood of the true labels
    as a finer tie-breaker. A loss metric is ``loss_fn`` (the run's evaluation loss; default the
    task's plain loss) of the probabilities' logits."""
    selected = metric_named(metric)
    loss_fn = loss_fn or loss_for_task(task)
    target = torch.as_tensor(y_val, dtype=torch.float64 if task == MULTI_LABEL else torch.int64)

    def value_of(scores: np.ndarray) -> float:
        if selected.from_scores:
            return evaluate(task, y_val, scores)[selected.key]
        return float(loss_fn(logits_from_scores(task, scores), target))

    def key(scores: np.ndarray) -> tuple[float, float]:
        value = value_of(scores) * (1 if selected.direction == "max" else -1)
        p = np.clip(scores, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
        if task == MULTI_LABEL:
            loglik = np.mean(y_val * np.log(p) + (1 - y_val) * np.log(1 - p))
        else:
            loglik = np.mean(np.log(p[np.arange(len(y_val)), y_val]))
        return (value if math.isfinite(value) else -math.inf, float(loglik))

    return key


def select_members(task: str, candidates: list[Candidate], y_val: np.ndarray, metric: str = "acc",
                   rounds: int = DEFAULT_ROUNDS, loss_fn: torch.nn.Module | None = None) -> Counter:
    """Trial id -> how many times it was picked (its weight is count / total).

    Starts from the candidate that scores best alone (`first_pick`), then adds the best
    candidate `rounds` times with replacement, and keeps the prefix of picks that scored best
    (the earliest among equals), so an ensemble is never worse on validation than its first
    member.
    """
    if not candidates:
        raise ValueError("ensemble: no finished trial with validation scores to choose from")
    score = objective(task, y_val, metric, loss_fn)
    total = np.zeros_like(candidates[0].val_scores, dtype=np.float64)
    picks: list[int] = []
    best_prefix, best_key = 0, (-math.inf, -math.inf)
    for step in range(rounds + 1):
        pick, key = _best_addition(candidates, score, total, len(picks))
        picks.append(pick)
        total += candidates[pick].val_scores
        if key > best_key:
            best_prefix, best_key = len(picks), key
    return Counter(candidates[i].trial_id for i in picks[:best_prefix])


def first_pick(task: str, candidates: list[Candidate], y_val: np.ndarray, metric: str = "acc",
               loss_fn: torch.nn.Module | None = None) -> str:
    """The trial whose validation scores alone score best by the greedy objective (the earliest
    among equals): where greedy selection starts. Not "the best trial" of a sweep: that is
    `best_single`, by the ranking."""
    if not candidates:
        raise ValueError("ensemble: no finished trial with validation scores to choose from")
    zeros = np.zeros_like(candidates[0].val_scores, dtype=np.float64)
    return candidates[_best_addition(candidates, objective(task, y_val, metric, loss_fn), zeros, 0)[0]].trial_id


def _best_addition(candidates: list[Candidate], score: Objective, total: np.ndarray,
                   picked: int) -> tuple[int, tuple[float, float]]:
    """(index, objective) of the candidate whose addition to `picked` picks summing to `total`
    scores best; ties to the earliest."""
    keys = [score((total + c.val_scores) / (picked + 1)) for c in candidates]
    pick = max(range(len(candidates)), key=lambda i: (keys[i], -i))
    return pick, keys[pick]


def weighted_scores(members: Counter, scores: dict[str, np.ndarray]) -> np.ndarray:
    total = sum(members.values())
    return sum(count / total * scores[trial_id] for trial_id, count in members.items())


def split_summary(task: str, y: np.ndarray, scores: np.ndarray, y_val: np.ndarray | None = None,
                  val_scores: np.ndarray | None = None) -> dict[str, float]:
    metrics = evaluate(task, y, scores)
    if task == ORDINAL and val_scores is not None:
        metrics |= decoded_metrics(y_val, val_scores, y, scores)
    return metrics


def build_ensemble(task: str, candidates: list[Candidate], y_val: np.ndarray, y_test: np.ndarray,
                   test_scores_of: Callable[[Candidate], np.ndarray], metric: str = "acc",
                   rounds: int = DEFAULT_ROUNDS, loss_fn: torch.nn.Module | None = None,
                   winner: str | None = None) -> dict:
    """Select on validation, then score the fixed members on test (each member, and the
    ``winner`` when given, once).

    ``winner``, the sweep's best trial (`best_single`), is reported beside the ensemble, so
    that a user sees whether the ensemble beats taking the winner (over 20 RetinaMNIST sweeps
    it did not: reports/recipe/README.md)."""
    members = select_members(task, candidates, y_val, metric, rounds, loss_fn)
    by_id = {c.trial_id: c for c in candidates}
    scored = [*members, *([winner] if winner is not None and winner not in members else [])]
    val = {t: by_id[t].val_scores for t in scored}
    test = {t: test_scores_of(by_id[t]) for t in scored}
    val_scores, test_scores = weighted_scores(members, val), weighted_scores(members, test)
    total = sum(members.values())
    result = {
        "members": [
            {"trial_id": t, "weight": count / total,
             "val_acc": evaluate(task, y_val, by_id[t].val_scores)["acc"]}
            for t, count in members.most_common()
        ],
        "val": split_summary(task, y_val, val_scores, y_val, val_scores),
        "test": split_summary(task, y_test, test_scores, y_val, val_scores),
    }
    if winner is not None:
        result["winner"] = {
            "trial_id": winner,
            "val": split_summary(task, y_val, val[winner], y_val, val[winner]),
            "test": split_summary(task, y_test, test[winner], y_val, val[winner]),
        }
    return result


def best_single(sweep_dir: str | Path, candidates: list[Candidate]) -> str | None:
    """The sweep's best trial among the candidates by medsweep's one ranking
    (`analysis.tables.rank_trials`, that is `sweeps.ranking` over the trials' reports: the
    trial best_config.yaml, the tables and the report name; with repeats, the best trial of the
    best configuration); None when no candidate is ranked."""
    from analysis.collect import read_sweep
    from analysis.tables import rank_trials

    ids = {candidate.trial_id for candidate in candidates}
    return next((t for t in rank_trials(read_sweep(sweep_dir).to_pandas())["trial_id"] if t in ids), None)


# -- a sweep folder -----------------------------------------------------------------------


def sweep_candidates(sweep_dir: str | Path) -> list[Candidate]:
    """Every trial of a sweep folder whose newest whole checkpoint holds selected weights'
    validation scores and that did not diverge, in trial-id order. Each is read from its
    checkpoint's small selection file (in a bucket, s3:// or gs://, that file alone is fetched),
    or from its state.pt where it was written before that file."""
    from sweeps.folder import RESULT_FILE, newest_checkpoint, readable_copy, trial_id_from_folder
    from sweeps.paths import local_folder

    location = os.fspath(sweep_dir).rstrip("/")
    in_bucket = local_folder(location) is None
    candidates = []
    with readable_copy(location) as listing:
        for trial_dir in sorted(p for p in Path(listing).iterdir() if p.is_dir()):
            newest = newest_checkpoint(trial_dir)
            result_file = trial_dir / RESULT_FILE
            if newest is None or not result_file.is_file():
                continue
            checkpoint = f"{location}/{newest.relative_to(listing)}" if in_bucket else newest
            selection = checkpoint_selection(checkpoint, listed=newest)
            if selection.diverged or selection.val_scores is None:
                continue
            trial_id = trial_id_from_folder(trial_dir)
            if trial_id is None:
                raise ValueError(f"{result_file}: no trial_id in its first line nor in the folder's name; "
                                 "allowed: a trial folder Ray wrote")
            candidates.append(Candidate(trial_id, checkpoint, selection.val_scores, selection.config))
    return sorted(candidates, key=lambda c: c.trial_id)


def checkpoint_selection(checkpoint: Path | str, listed: Path) -> Selection:
    """What a checkpoint (a folder, or a bucket's folder whose files ``listed`` holds, empty)
    says an ensemble needs: its selection file, else its state.pt, fetched whole."""
    from sweeps.folder import fetched_file
    from analysis.evaluate import checkpoint_state

    if (listed / SELECTION_FILE).is_file():
        with fetched_file(f"{checkpoint}/{SELECTION_FILE}") as path:
            return read_selection(Path(path).parent)
    state = checkpoint_state(checkpoint)
    scores = state.get("best_val_scores")
    return Selection(None if scores is None else np.asarray(scores), bool(state.get("diverged")),
                     state.get("config", {}))


def test_scores(candidate: Candidate, data: MedMNISTData, device: str = "auto") -> np.ndarray:
    """A member's test-split probabilities, from the selected weights in its checkpoint."""
    from analysis.evaluate import load_checkpoint
    from medvit.metrics import scores_from_logits
    from medvit.train import Trainer

    model, config = load_checkpoint(candidate.checkpoint)
    trainer = Trainer(config.model_copy(update={"device": device}), data)
    trainer.eval_model.load_state_dict(model.state_dict())
    return scores_from_logits(config.task, trainer.logits("test").cpu())


def ensemble_sweep(sweep_dir: str | Path, out_dir: str | Path, data_root: str | None = None,
                   rounds: int = DEFAULT_ROUNDS, device: str = "auto") -> dict:
    """`medsweep ensemble`: select members of a sweep folder on validation, evaluate on test
    once, and write ``out_dir/ensemble.json``."""
    from analysis.evaluate import load_eval_data
    from medvit.train import evaluation_loss

    sweep_dir = os.fspath(sweep_dir)
    candidates = sweep_candidates(sweep_dir)
    if not candidates:
        raise ValueError(f"ensemble: {sweep_dir} holds no finished trial checkpoint with validation scores")
    config = build_config(candidates[0].config)
    data = load_eval_data(config, data_root)
    y_val, y_test = data.labels["val"].numpy(), data.labels["test"].numpy()
    lengths = {len(c.val_scores) for c in candidates}
    if lengths != {len(y_val)}:
        raise ValueError(f"ensemble: trials were validated on {sorted(lengths)} images, the split has {len(y_val)}; "
                         "allowed: trials of one sweep on the same data")

    name = PurePosixPath(sweep_dir.rstrip("/")).name
    result = {"dataset": config.dataset, "sweep": name, "metric": config.select_metric, "rounds": rounds,
              "candidates": len(candidates),
              **build_ensemble(config.task, candidates, y_val, y_test, lambda c: test_scores(c, data, device),
                               config.select_metric, rounds, evaluation_loss(config), best_single(sweep_dir, candidates))}
    write_json(Path(out_dir) / ENSEMBLE_FILE, result)
    return result
