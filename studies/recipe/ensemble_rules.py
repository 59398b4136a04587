"""Which way of combining a finished sweep's trials should `medsweep ensemble` use?

For each sweep folder given, five rules pick weights over its trials on the validation split:
``winner`` (the best single trial), ``greedy`` (what `medsweep ensemble` ships: Caruana et al.
2004, with replacement), ``bagged`` (greedy on ``--bags`` random halves of the trials, weights
averaged: Caruana's remedy for selection that overfits a small validation split), ``top5`` (the
five best single trials, equal weights) and ``all`` (every trial, equal weights). Single trials
are ranked, and greedy picks, by `analysis.ensemble`'s own objective.

Two scores per rule and sweep, in the sweep's selection metric (what `medsweep ensemble`
selects on: accuracy for the RetinaMNIST specs; for MAE lower is better): ``val_b``, the score
on one half of the validation split of the weights picked on the other half (mean over
``--splits`` random halvings), which is what a choice between rules may rest on; and
``test``, the test score of the weights picked on the whole validation split, reported only.
The last table gives each rule's mean over sweeps and its paired difference to ``greedy``;
the sweeps given must select on one metric.

    python -m studies.recipe.ensemble_rules SWEEP_DIR [SWEEP_DIR ...] [--data-root DIR]
        [--splits 5] [--bags 10] [--out rules.jsonl]
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

from analysis.ensemble import Candidate, first_pick, select_members, sweep_candidates, test_scores
from analysis.evaluate import load_eval_data
from analysis.stats import format_pm, mean_ci
from medvit.config import TrainConfig
from medvit.metrics import evaluate
from studies import run_main

RULES = ("winner", "greedy", "bagged", "top5", "all")


def ranked(task: str, candidates: list[Candidate], y: np.ndarray, metric: str, k: int) -> list[str]:
    """The k best single candidates, best first."""
    left, order = list(candidates), []
    while left and len(order) < k:
        best = first_pick(task, left, y, metric)
        order.append(best)
        left = [c for c in left if c.trial_id != best]
    return order


def weights(rule: str, task: str, candidates: list[Candidate], y: np.ndarray, metric: str, bags: int,
            seed: int) -> dict[str, float]:
    if rule == "winner":
        return {first_pick(task, candidates, y, metric): 1.0}
    if rule == "greedy":
        members = select_members(task, candidates, y, metric)
        return {t: n / sum(members.values()) for t, n in members.items()}
    if rule == "bagged":
        rng, total = np.random.default_rng(seed), {}
        for _ in range(bags):
            half = rng.choice(len(candidates), size=max(2, len(candidates) // 2), replace=False)
            for t, w in weights("greedy", task, [candidates[i] for i in sorted(half)], y, metric, bags, seed).items():
                total[t] = total.get(t, 0.0) + w / bags
        return total
    chosen = ranked(task, candidates, y, metric, 5) if rule == "top5" else [c.trial_id for c in candidates]
    return {t: 1.0 / len(chosen) for t in chosen}


def averaged(w: dict[str, float], scores: dict[str, np.ndarray]) -> np.ndarray:
    return sum(v * scores[t] for t, v in w.items())


def finished(sweep: Path) -> tuple[list[Candidate], TrainConfig]:
    """The sweep's finished trials and the training config of the first."""
    candidates = sweep_candidates(sweep)
    if len(candidates) < 2:
        raise SystemExit(f"{sweep}: needs at least 2 finished trials with validation scores, has {len(candidates)}")
    return candidates, TrainConfig(**candidates[0].config)


def study_sweep(sweep: Path, data_root: str | None, splits: int, bags: int) -> dict:
    candidates, config = finished(sweep)
    data = load_eval_data(config, data_root)
    task, y_val, y_test = config.task, data.labels["val"].numpy(), data.labels["test"].numpy()
    metric = config.select_metric.removeprefix("val_")  # what `medsweep ensemble` selects on, and scores here
    val = {c.trial_id: c.val_scores for c in candidates}
    test = {c.trial_id: test_scores(c, data, "cpu") for c in candidates}
    rng = np.random.default_rng(0)
    halvings = [rng.permutation(len(y_val)) for _ in range(splits)]
    row = {"sweep": str(sweep), "trials": len(candidates), "metric": metric}
    for rule in RULES:
        held_out = []
        for order in halvings:
            pick, score = order[: len(order) // 2], order[len(order) // 2:]
            half = [Candidate(c.trial_id, c.checkpoint, c.val_scores[pick], c.config) for c in candidates]
            w = weights(rule, task, half, y_val[pick], metric, bags, seed=0)
            held_out.append(evaluate(task, y_val[score], averaged(w, {t: s[score] for t, s in val.items()}))[metric])
        w = weights(rule, task, candidates, y_val, metric, bags, seed=0)
        row[rule] = {"val_b": float(np.mean(held_out)), "test": evaluate(task, y_test, averaged(w, test))[metric],
                     "members": len(w)}
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--splits", type=int, default=5, help="random halvings of the validation split")
    parser.add_argument("--bags", type=int, default=10, help="halves of the trials for the bagged rule")
    parser.add_argument("--out", type=Path, default=None, help="also write one JSON line per sweep here")
    args = parser.parse_args(argv)
    for name in ("splits", "bags"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: {getattr(args, name)}; allowed: 1 or more")
    for sweep in args.sweeps:
        if not sweep.is_dir():
            parser.error(f"sweeps: {sweep} is not a folder")
    metrics = sorted({finished(sweep)[1].select_metric for sweep in args.sweeps})
    if len(metrics) > 1:
        parser.error(f"sweeps: they select on {', '.join(metrics)}; allowed: sweeps that select on one metric")
    warnings.filterwarnings("ignore", message=".*AUC is undefined.*")  # a validation half may miss a grade

    rows = []
    for sweep in args.sweeps:
        rows.append(study_sweep(sweep, args.data_root, args.splits, args.bags))
        print(f"{sweep}: {rows[-1]['trials']} trials, test {rows[-1]['metric'].upper()} "
              + ", ".join(f"{r} {rows[-1][r]['test']:.3f}" for r in RULES), flush=True)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))

    name = rows[0]["metric"].upper()
    print(f"\n{len(rows)} sweeps; mean ± std over sweeps, and the paired difference to greedy\n")
    print(f"| rule | val-B {name} | vs greedy | test {name} | vs greedy | members |")
    print("|---|---|---|---|---|---|")
    for rule in RULES:
        cols = []
        for key in ("val_b", "test"):
            x = np.array([r[rule][key] for r in rows])
            d = x - np.array([r["greedy"][key] for r in rows])
            cols += [_mean_pm(x), ("+" if d.mean() >= 0 else "") + _mean_pm(d)]
        members = np.mean([r[rule]["members"] for r in rows])
        print(f"| {rule} | " + " | ".join(cols) + f" | {members:.1f} |")


def _mean_pm(values: np.ndarray) -> str:
    """Mean ± std over sweeps; the mean alone for one sweep (no spread to show)."""
    summary = mean_ci(values)
    return format_pm(summary.mean, summary.std)


if __name__ == "__main__":
    run_main("ensemble_rules.py", main)
