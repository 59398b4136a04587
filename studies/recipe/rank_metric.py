"""Should a RetinaMNIST sweep rank its trials on validation ACC (the specs today) or QWK?
Replayed on rung_readout.py's records: whole trials, every epoch's metrics recorded.

    python -m studies.recipe.rank_metric --spec retinamnist-cpu \\
        --draw reports/recipe/rung-readout.jsonl.gz reports/recipe/rung-readout-seeds.jsonl.gz \\
        --draw reports/recipe/rung-readout-draw1.jsonl.gz reports/recipe/rung-readout-draw1-seeds.jsonl.gz

Each ``--draw`` is one draw of trial configs from the spec's search space, trained with two or
more training seeds; each (draw, seed) is one sweep of those trials. For each metric a sweep may
rank on (``metric: val_acc`` or ``val_qwk``), under each BatchNorm readout: the selection score
is that validation metric's trailing mean over ``select_window`` epochs (what the trainable
reports), the epoch chosen its best; FIFO keeps the best final score, ASHA (replayed on that
score in ``--orders`` arrival orders) the best score among the epochs it let run. Each choice is
scored as ``medsweep confirm`` would score it: the chosen config's test ACC and QWK, at the epoch
its own metric chooses, averaged over the draw's *other* training seeds, so neither the choosing
seed nor one test run flatters it. Then QWK-ranked minus ACC-ranked, paired by sweep.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

import numpy as np

from medvit.selection import best_epoch
from studies import run_main
from studies.recipe.records import read_records, require_files
from studies.recipe.rung_readout import READOUTS, asha_pick, curves
from studies.recipe.summarize import fmt, paired_cell
from sweeps.spec import load_spec

RANK_ON = ("acc", "qwk")


def draw_runs(records: list[dict]) -> dict[int, dict[int, dict]]:
    """``{training seed: {config index: record}}`` of one draw; a ValueError when a config index
    names two configs (records of two draws given as one) or a run is recorded twice."""
    runs: dict[int, dict[int, dict]] = {}
    configs: dict[int, dict] = {}
    for record in records:
        index, seed = record["config_index"], record["seed"]
        config = {k: v for k, v in record["config"].items() if k not in ("seed", "data_root")}
        if configs.setdefault(index, config) != config:
            raise ValueError(f"--draw: config {index} differs between runs: give each draw its own --draw")
        if index in runs.setdefault(seed, {}):
            raise ValueError(f"--draw: config {index} with seed {seed} is recorded twice")
        runs[seed][index] = record
    return runs


def choice(record: dict, prefix: str, rank_on: str) -> tuple[list[float], dict[str, float]]:
    """One run ranked on validation ``rank_on``: its selection score per epoch, and its test ACC
    and QWK (an ordinal task's; a binary task records none) at the epoch that score chooses."""
    _, score, _ = curves(record, prefix, rank_on)
    _, epoch = best_epoch(enumerate(score, 1), "max")
    chosen = record["epochs"][epoch - 1]
    return score, {m: chosen[f"{prefix}test_{m}"] for m in RANK_ON if f"{prefix}test_{m}" in chosen}


def sweep_choices(runs: dict[int, dict[int, dict]], seed: int, prefix: str, rank_on: str, spec, orders: int
                  ) -> dict[str, list[int]]:
    """The configs one sweep (the draw's runs with ``seed``) keeps ranking on ``rank_on``: FIFO's
    one, and ASHA's in each of ``orders`` arrival orders."""
    configs = sorted(runs[seed])
    scores = [choice(runs[seed][i], prefix, rank_on)[0] for i in configs]
    fifo = configs[int(np.argmax([max(score) for score in scores]))]
    rng = random.Random(0)
    asha = [configs[asha_pick(scores, rng.sample(range(len(configs)), len(configs)), spec)[0]] for _ in range(orders)]
    return {"FIFO": [fifo], "ASHA": asha}


def held_out(runs: dict[int, dict[int, dict]], seed: int, config: int, prefix: str, rank_on: str) -> dict[str, float]:
    """A chosen config's test ACC and QWK averaged over the draw's training seeds but ``seed``."""
    others = [choice(runs[s][config], prefix, rank_on)[1] for s in runs if s != seed and config in runs[s]]
    return {m: float(np.mean([o[m] for o in others])) for m in RANK_ON}


def outcomes(draws: list[dict[int, dict[int, dict]]], prefix: str, rank_on: str, spec, orders: int) -> dict:
    """Per scheduler, per sweep (draw, seed): the held-out test ACC and QWK of its choice (ASHA's
    averaged over arrival orders) and the share of its choices with alpha > 0."""
    out: dict[str, dict[str, list[float]]] = {}
    for runs in draws:
        for seed in sorted(runs):
            for scheduler, picks in sweep_choices(runs, seed, prefix, rank_on, spec, orders).items():
                scored = [held_out(runs, seed, pick, prefix, rank_on) for pick in picks]
                row = out.setdefault(scheduler, {"acc": [], "qwk": [], "alpha": []})
                for m in RANK_ON:
                    row[m].append(float(np.mean([s[m] for s in scored])))
                row["alpha"].append(float(np.mean([runs[seed][p]["config"]["alpha"] > 0 for p in picks])))
    return out


def parse_draws(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, Any, list[dict]]:
    """A replay's arguments (``--spec``, ``--orders``, one ``--draw`` per draw of configs), the
    spec, and each draw's runs (:func:`draw_runs`); a missing file or a draw with one training
    seed is one line."""
    parser.add_argument("--spec", required=True, help="the spec whose ASHA is replayed")
    parser.add_argument("--orders", type=int, default=50, help="ASHA's random arrival orders per sweep")
    parser.add_argument("--draw", nargs="+", action="append", required=True,
                        help="one draw's record files (every training seed of the same configs)")
    args = parser.parse_args(argv)
    require_files(parser, "--draw", [path for paths in args.draw for path in paths])
    draws = [draw_runs(read_records(paths)) for paths in args.draw]
    for k, runs in enumerate(draws, 1):
        if len(runs) < 2:
            raise SystemExit(f"--draw: draw {k} has one training seed; a choice is scored on the others: "
                             "give two or more")
    return args, load_spec(args.spec), draws


def main(argv: list[str] | None = None) -> None:
    args, spec, draws = parse_draws(argparse.ArgumentParser(description=__doc__.splitlines()[0]), argv)
    if any("val_qwk" not in run["epochs"][0] for runs in draws for seed in runs.values() for run in seed.values()):
        raise SystemExit(f"--draw: records without val_qwk ({spec.dataset} is not an ordinal task); "
                         "allowed: an ordinal task's records, e.g. RetinaMNIST's")
    sweeps = sum(len(runs) for runs in draws)
    print(f"{spec.name}: {len(draws)} draws of trial configs, {sweeps} sweeps (draw, training seed); each choice "
          "scored by its config's test metrics (epoch chosen on the ranking metric) averaged over the draw's "
          f"other seeds; ASHA averaged over {args.orders} arrival orders; +- over the sweeps\n")
    print("| readout | ranked on | scheduler | held-out test ACC | held-out test QWK | choices with alpha > 0 |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name, prefix in READOUTS.items():
        for rank_on in RANK_ON:
            results[name, rank_on] = outcomes(draws, prefix, rank_on, spec, args.orders)
            for scheduler, row in results[name, rank_on].items():
                print(f"| {name} | val {rank_on} | {scheduler} | {fmt(row['acc'])} | {fmt(row['qwk'])} "
                      f"| {np.mean(row['alpha']):.0%} |")
    print(f"\nRanked on QWK minus ranked on ACC, paired by sweep ({sweeps} sweeps; 95% t interval):\n")
    print("| readout | scheduler | held-out test ACC | held-out test QWK | per sweep, ACC |")
    print("|---|---|---|---|---|")
    for name in READOUTS:
        for scheduler in results[name, "acc"]:
            on_acc, on_qwk = results[name, "acc"][scheduler], results[name, "qwk"][scheduler]
            diffs = {m: list(np.subtract(on_qwk[m], on_acc[m])) for m in RANK_ON}
            print(f"| {name} | {scheduler} | {paired_cell(diffs['acc'])} | {paired_cell(diffs['qwk'])} "
                  f"| {', '.join(f'{d:+.3f}' for d in diffs['acc'])} |")


if __name__ == "__main__":
    run_main("rank_metric.py", main)
