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

``run --trial-seed S`` trains the same drawn configs with another training seed. With records
of several seeds, ``table`` adds what a sweep's user gets: ASHA replayed on one seed's curves,
its pick re-trained (``medsweep confirm``) and scored on the *other* seeds (their mean
validation-selected test accuracy), so neither the pick's own seed nor one test run flatters it.

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
from studies.recipe.records import read_records
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


def curves(record: dict, prefix: str, metric: str = "acc") -> tuple[list[float], list[float], list[float]]:
    """Per epoch: the validation ``metric`` (accuracy by default), its trailing mean (the
    selection score a run ranked on it reports), the test ``metric``."""
    window = record["config"]["select_window"]
    val = [e[f"{prefix}val_{metric}"] for e in record["epochs"]]
    score = [float(np.mean(val[max(0, i + 1 - window):i + 1])) for i in range(len(val))]
    return val, score, [e[f"{prefix}test_{metric}"] for e in record["epochs"]]


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
            config = build_config(values | {"device": "cpu", "bn_recompute": False, "seed": args.trial_seed})
            append_record(args.out, record_run(config, load_data(config), spec.name, bn_readout=True, config_index=i))


def selected(curve: tuple[list[float], list[float], list[float]]) -> tuple[float, float]:
    """A full run's (selection score, test accuracy) at the epoch its selection score chose."""
    _, score, test = curve
    value, epoch = best_epoch(enumerate(score, 1), "max")
    return value, test[epoch - 1]


def asha_ranking(scores: list[list[float]], order: list[int], spec) -> tuple[list[int], dict[int, tuple[float, int]], int]:
    """Ray's ASHA replayed on per-trial selection-score curves arriving in ``order``: the trials
    (indices into ``scores``) best first, as the sweep ranks them (each by its best score over
    the epochs ASHA let it run), each one's (best score, its epoch), and the trial-epochs run."""
    arrived = [scores[i] for i in order]
    ran = asha_epochs_run(arrived, spec.scheduler.grace_period, spec.scheduler.reduction_factor, "max")
    reached = {order[k]: best_epoch(enumerate(arrived[k][:ran[k]], 1), "max") for k in range(len(order))}
    return sorted(reached, key=lambda i: -reached[i][0]), reached, sum(ran)


def asha_pick(scores: list[list[float]], order: list[int], spec) -> tuple[int, int, int]:
    """The trial ASHA in ``order`` would choose (:func:`asha_ranking`), its chosen epoch, and
    the trial-epochs it ran."""
    ranking, reached, spent = asha_ranking(scores, order, spec)
    return ranking[0], reached[ranking[0]][1], spent


def table(args) -> None:
    spec = load_spec(args.spec)
    if spec.scheduler.type != "asha" or spec.scheduler.rung_metric != SCORE:
        raise SystemExit(f"--spec: {spec.name} has no ASHA on the selection score; allowed: a spec with "
                         f"scheduler.type asha and the default rung_metric ({SCORE})")
    by_seed: dict[int, dict[int, dict]] = {}
    for record in read_records(args.records):
        by_seed.setdefault(record["seed"], {})[record["config_index"]] = record
    # the rung tables read one run per config: the first seed's
    first = by_seed[min(by_seed)]
    records = [first[i] for i in sorted(first)]
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
        final_score, final_test = (list(column) for column in zip(*map(selected, per_trial)))
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
        scores = [score for _, score, _ in per_trial]
        rng, spent, kept, tests = random.Random(0), [], 0, []
        for _ in range(args.orders):
            pick, epoch, ran = asha_pick(scores, rng.sample(range(len(per_trial)), len(per_trial)), spec)
            spent.append(ran / sum(map(len, scores)))
            kept += scores[pick][epoch - 1] == final_score[winner]
            tests.append(per_trial[pick][2][epoch - 1])
        print(f"| {name} | {final_score[winner]:.3f} / {final_test[winner]:.3f} | {np.mean(spent):.2f} "
              f"| {kept} of {args.orders} | {np.mean(tests):.3f} +- {np.std(tests, ddof=1):.3f} |")
    if len(by_seed) > 1:
        held_out_table(spec, by_seed, args.orders)


def held_out_table(spec, by_seed: dict[int, dict[int, dict]], orders: int) -> None:
    """Per readout: ASHA (and FIFO) choosing on one seed's curves, the choice scored by the
    config's mean validation-selected test accuracy over the other seeds; mean +- std over
    the choosing seeds, and the paired difference between the readouts."""
    configs = sorted(set.intersection(*(set(runs) for runs in by_seed.values())))
    seeds = sorted(by_seed)
    print(f"\nOver {len(seeds)} training seeds ({', '.join(map(str, seeds))}) of the {len(configs)} configs "
          "that have them all: ASHA chooses on one seed's curves; its choice is scored by the config's "
          "test ACC (epoch chosen on validation) averaged over the other seeds, what `medsweep confirm` "
          f"would report. Mean over {orders} arrival orders per choosing seed; +- over the choosing seeds.\n")
    print("| readout | ASHA's choice, held-out test ACC | FIFO's choice, held-out test ACC "
          "| best config by its mean over all seeds |")
    print("|---|---|---|---|")
    asha_by_readout = {}
    for name, prefix in READOUTS.items():
        final = {s: {i: selected(curves(by_seed[s][i], prefix))[1] for i in configs} for s in seeds}
        asha, fifo = [], []
        for s in seeds:
            held = {i: float(np.mean([final[t][i] for t in seeds if t != s])) for i in configs}
            per_trial = [curves(by_seed[s][i], prefix) for i in configs]
            scores = [score for _, score, _ in per_trial]
            rng = random.Random(0)
            picks = [asha_pick(scores, rng.sample(range(len(configs)), len(configs)), spec)[0] for _ in range(orders)]
            asha.append(float(np.mean([held[configs[pick]] for pick in picks])))
            fifo.append(held[configs[int(np.argmax([selected(c)[0] for c in per_trial]))]])
        asha_by_readout[name] = asha
        oracle = max(float(np.mean([final[s][i] for s in seeds])) for i in configs)
        print(f"| {name} | {_pm(asha)} | {_pm(fifo)} | {oracle:.3f} |")
    running, recomputed = asha_by_readout.values()
    print(f"\nASHA's choice, recomputed minus running readout, paired by choosing seed: "
          f"{_pm(np.subtract(recomputed, running), signed=True)} "
          f"({', '.join(f'{d:+.3f}' for d in np.subtract(recomputed, running))}).")


def _pm(values, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{np.mean(values):{sign}.3f} +- {np.std(values, ddof=1):.3f}" if len(values) > 1 else \
        f"{np.mean(values):{sign}.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run", help="train the drawn configs, both readouts recorded")
    go.add_argument("--spec", required=True)
    go.add_argument("--configs", type=int, default=10)
    go.add_argument("--seed", type=int, default=0, help="the random sampler's seed")
    go.add_argument("--trial-seed", type=int, default=0, help="every config's training seed")
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
