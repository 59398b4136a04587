"""Does ASHA's first rung read the trials or the BatchNorm lag? Both readouts, one run each.

The running BatchNorm statistics that validation uses trail fast-moving weights: on RetinaMNIST
the default recipe's validation accuracy sat at one class's share for the first 4-6 epochs in
4 of 5 seeds, and a sweep's ASHA compares trials at epoch 4 or 5. `bn_recompute` gives the
evaluated weights fresh statistics before each validation without touching training, so one
run can record both readouts (`run_arm.recomputed_bn_metrics`). This study draws ``--configs``
trial configs from a spec's search space (Optuna's random sampler, seeded), trains each to the
end (FIFO), and records per epoch the validation and test metrics under both readouts.

    python -m studies.recipe.rung_readout run --spec retinamnist-cpu --configs 10 --worker 0/2 --out F.jsonl
    python -m studies.recipe.rung_readout table --spec retinamnist-cpu F.jsonl

The table, per readout: at each ASHA rung of the spec, how many trials read a constant-class
validation accuracy (exactly one class's share of the split), and the Spearman correlation
of the rung's selection score (what ASHA compares) with the trial's final selection score and
with its validation-selected test accuracy; then Ray's ASHA replayed on the recorded curves
(``benchmarks.bench_sweep_efficiency.asha_epochs_run``) in ``--orders`` random arrival orders: the
share of FIFO's trial-epochs it spends, how often the trials it let run reach FIFO's best
selection score, and the test accuracy of the trial it would choose.
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
import optuna
import torch
from scipy.stats import spearmanr

from benchmarks.bench_sweep_efficiency import asha_epochs_run
from medvit.config import build_config
from medvit.selection import best_epoch
from medvit.train import load_data
from studies import run_main
from studies.recipe.run_arm import append_record, record_run
from sweeps.ranking import SCORE
from sweeps.space import DefineByRun, trial_config
from sweeps.spec import load_spec

READOUTS = {"running statistics": "", "recomputed (bn_recompute)": "bn_"}


def draw_configs(spec, n: int, seed: int) -> list[dict]:
    """``n`` trial configs of ``spec``'s search space, drawn at random (seeded)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space, configs = DefineByRun(spec), []
    for _ in range(n):
        trial = study.ask()
        constants = space(trial) or {}
        configs.append(trial_config(spec, {**trial.params, **constants}))
        study.tell(trial, 0.0)
    return configs


def rungs(spec) -> list[int]:
    """The epochs at which the spec's ASHA compares trials."""
    scheduler, epochs = spec.scheduler, spec.train.epochs
    points, rung = [], scheduler.grace_period
    while rung < epochs:
        points.append(rung)
        rung *= scheduler.reduction_factor
    return points


def curves(record: dict, prefix: str) -> tuple[list[float], list[float], list[float]]:
    """Per epoch: validation accuracy, its trailing mean (the selection score), test accuracy."""
    window = record["config"]["select_window"]
    val = [e[f"{prefix}val_acc"] for e in record["epochs"]]
    score = [float(np.mean(val[max(0, i + 1 - window):i + 1])) for i in range(len(val))]
    return val, score, [e[f"{prefix}test_acc"] for e in record["epochs"]]


def rank_correlation(x: list[float], y: list[float]) -> str:
    """Spearman's rho, or "-" where one side is constant (every trial tied: no ranking at all)."""
    return "-" if len(set(x)) < 2 or len(set(y)) < 2 else f"{spearmanr(x, y)[0]:.2f}"


def run(args) -> None:
    spec = load_spec(args.spec)
    index, workers = (int(part) for part in args.worker.split("/"))
    torch.set_num_threads(args.threads)
    for i, values in enumerate(draw_configs(spec, args.configs, args.seed)):
        if i % workers == index:
            # the running-statistics readout is the trial's own: the study recomputes beside it
            config = build_config(values | {"device": "cpu", "bn_recompute": False})
            append_record(args.out, record_run(config, load_data(config), spec.name, bn_readout=True, config_index=i))


def table(args) -> None:
    spec = load_spec(args.spec)
    if spec.scheduler.type != "asha" or spec.scheduler.rung_metric != SCORE:
        raise SystemExit(f"--spec: {spec.name} has no ASHA on the selection score; allowed: a spec with "
                         f"scheduler.type asha and the default rung_metric ({SCORE})")
    records = sorted((json.loads(line) for path in args.records for line in open(path)),
                     key=lambda r: r["config_index"])
    # the validation split the runs read (a spec's `subset` shrinks it)
    labels = load_data(build_config(records[0]["config"])).labels["val"].numpy().ravel()
    shares = np.bincount(labels) / len(labels)
    print(f"{spec.name}: {len(records)} trial configs, every one trained {spec.train.epochs} epochs; "
          f"ASHA grace {spec.scheduler.grace_period}, reduction {spec.scheduler.reduction_factor}\n")
    print("| readout | rung epoch | trials at one class's share | Spearman: rung score vs final score "
          "| vs final val-selected test ACC |")
    print("|---|---:|---:|---:|---:|")
    finals = {}
    for name, prefix in READOUTS.items():
        per_trial = [curves(r, prefix) for r in records]
        chosen = [best_epoch(enumerate(score, 1), "max") for _, score, _ in per_trial]
        final_score = [value for value, _ in chosen]
        final_test = [test[epoch - 1] for (_, _, test), (_, epoch) in zip(per_trial, chosen)]
        finals[name] = (per_trial, final_score, final_test)
        for rung in rungs(spec):
            at_share = sum(np.isclose(val[rung - 1], shares).any() for val, _, _ in per_trial)
            rung_score = [score[rung - 1] for _, score, _ in per_trial]
            print(f"| {name} | {rung} | {at_share} of {len(records)} | {rank_correlation(rung_score, final_score)} "
                  f"| {rank_correlation(rung_score, final_test)} |")
    print(f"\nRay's ASHA replayed on the recorded curves, {args.orders} random arrival orders "
          "(FIFO: every trial to the end):\n")
    print("| readout | FIFO's winner: final score / test ACC | trial-epochs, share of FIFO's "
          "| ASHA reaches FIFO's best score | ASHA's winner's test ACC, mean +- std |")
    print("|---|---|---:|---:|---|")
    for name, (per_trial, final_score, final_test) in finals.items():
        winner = int(np.argmax(final_score))
        rng, spent, kept, tests = random.Random(0), [], 0, []
        for _ in range(args.orders):
            order = rng.sample(range(len(per_trial)), len(per_trial))
            scores = [per_trial[i][1] for i in order]
            ran = asha_epochs_run(scores, spec.scheduler.grace_period, spec.scheduler.reduction_factor, "max")
            spent.append(sum(ran) / sum(map(len, scores)))
            reached = {order[k]: best_epoch(enumerate(scores[k][:ran[k]], 1), "max") for k in range(len(order))}
            pick = max(reached, key=lambda i: reached[i][0])
            kept += reached[pick][0] == final_score[winner]
            tests.append(per_trial[pick][2][reached[pick][1] - 1])
        print(f"| {name} | {final_score[winner]:.3f} / {final_test[winner]:.3f} | {np.mean(spent):.2f} "
              f"| {kept} of {args.orders} | {np.mean(tests):.3f} +- {np.std(tests, ddof=1):.3f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run", help="train the drawn configs, both readouts recorded")
    go.add_argument("--spec", required=True)
    go.add_argument("--configs", type=int, default=10)
    go.add_argument("--seed", type=int, default=0, help="the random sampler's seed")
    go.add_argument("--worker", default="0/1", help="I/N: train configs I, I+N, I+2N, ... (N processes in parallel)")
    go.add_argument("--threads", type=int, default=1)
    go.add_argument("--out", required=True)
    show = commands.add_parser("table", help="the rung tables from the records")
    show.add_argument("--spec", required=True)
    show.add_argument("--orders", type=int, default=50)
    show.add_argument("records", nargs="+")
    args = parser.parse_args(argv)
    (run if args.command == "run" else table)(args)


if __name__ == "__main__":
    run_main("rung_readout.py", main)
