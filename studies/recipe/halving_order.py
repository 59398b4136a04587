"""Does ASHA's arrival order decide a sweep's winner, and would order-free halving choose better?
Replayed on rung_readout.py's records: whole trials, every epoch's metrics recorded.

    python -m studies.recipe.halving_order --spec retinamnist-cpu \\
        --draw reports/recipe/rung-readout.jsonl.gz reports/recipe/rung-readout-seeds.jsonl.gz \\
        --draw reports/recipe/rung-readout-draw1.jsonl.gz reports/recipe/rung-readout-draw1-seeds.jsonl.gz

Ray's ASHA judges a trial at a rung against the trials that reached that rung before it (the
first to arrive always goes on), so the same trials, arriving in another order, can be stopped
differently and the sweep can name another winner (reports/cpu-audit: PneumoniaMNIST did). Each
(draw, training seed) is one sweep of the draw's configs, ranked as the spec ranks (its metric's
trailing mean, its BatchNorm readout). Three schedulers choose on it: FIFO (every trial to the
end), ASHA replayed in ``--orders`` random arrival orders, and synchronous halving: at each of
ASHA's rungs every trial still running is judged against all the others at once, by ASHA's own
cut (the ``1 - 1/reduction_factor`` quantile of their scores), so no order enters. Each choice is
scored as ``medsweep confirm`` would score it: the chosen config's validation-selected test ACC
averaged over the draw's *other* training seeds. Printed per sweep: how many different configs
ASHA's orders name, the held-out test ACC of each scheduler's choice (ASHA's: mean and range over
orders), and the trial-epochs each spends (``--by-config``: every config the orders name, how
often, and its held-out test ACC); then synchronous minus ASHA, paired by sweep. Last,
whether a user could do better on validation alone: ASHA's top K (``RERANK_TOP``) re-trained with
another seed and re-ranked on that seed's validation, scored on the seeds left (draws with three
seeds or more).
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections import Counter

import numpy as np

from studies import run_main
from studies.recipe.rank_metric import choice, parse_draws
from studies.recipe.rung_readout import asha_ranking, rungs
from studies.recipe.summarize import fmt, paired_cell

# How many of ASHA's best trials the re-ranking table takes to another seed's validation.
RERANK_TOP = (2, 3)


def synchronous_halving(scores: list[list[float]], milestones: list[int], reduction: int) -> tuple[int, int]:
    """Successive halving with every trial's rung score known at once: at each milestone the
    trials still running whose score is below the ``1 - 1/reduction`` quantile of theirs stop
    (ASHA's cut, taken over all of them instead of those that came first). Returns the trial it
    would choose (best score over the epochs it ran, as the sweep ranks) and the trial-epochs run."""
    epochs = len(scores[0])
    ran = [epochs] * len(scores)
    running = list(range(len(scores)))
    for milestone in milestones:
        values = [scores[i][milestone - 1] for i in running]
        cutoff = np.percentile(values, (1 - 1 / reduction) * 100)
        for i, value in zip(list(running), values):
            if value < cutoff:
                ran[i] = milestone
                running.remove(i)
    pick = max(range(len(scores)), key=lambda i: max(scores[i][:ran[i]]))
    return pick, sum(ran)


def draw_choices(runs: dict[int, dict[int, dict]], prefix: str, rank_on: str) -> tuple[list[int], dict]:
    """A draw's config indices, and per training seed each config's :func:`choice` (its selection
    score per epoch, its test metrics at the epoch chosen), in that order."""
    configs = sorted(next(iter(runs.values())))
    return configs, {s: [choice(runs[s][c], prefix, rank_on) for c in configs] for s in runs}


def sweep_outcome(chosen: dict[int, list], seed: int, spec, orders: int) -> dict:
    """One sweep (the draw's runs with ``seed``; ``chosen`` from :func:`draw_choices`): the
    configs ASHA's orders name (position, share of orders, held-out test ACC, commonest first),
    the held-out test ACC of each order's, synchronous halving's and FIFO's choice, the
    trial-epochs each spends; and, where the draw has a third seed, ASHA's top K re-ranked on
    another seed's validation (``rerank``: K -> that choice minus ASHA's winner, both scored on
    the seeds left, mean over orders and re-ranking seeds)."""
    scores = [score for score, _ in chosen[seed]]

    def test_acc(index: int, seeds) -> float:
        return float(np.mean([chosen[s][index][1]["acc"] for s in seeds]))

    others = [s for s in sorted(chosen) if s != seed]
    rng = random.Random(0)
    asha = [asha_ranking(scores, rng.sample(range(len(scores)), len(scores)), spec) for _ in range(orders)]
    sync, sync_spent = synchronous_halving(scores, rungs(spec), spec.scheduler.reduction_factor)
    fifo = int(np.argmax([max(s) for s in scores]))
    rerank = {}
    for k in RERANK_TOP if len(others) > 1 else ():
        gains = []
        for (ranking, _, _), fresh in itertools.product(asha, others):
            left = [s for s in others if s != fresh]
            pick = max(ranking[:k], key=lambda i: max(chosen[fresh][i][0]))
            gains.append(test_acc(pick, left) - test_acc(ranking[0], left))
        rerank[k] = float(np.mean(gains))
    named = Counter(ranking[0] for ranking, _, _ in asha).most_common()
    return {"named": [(i, count / orders, test_acc(i, others)) for i, count in named],
            "asha": [test_acc(ranking[0], others) for ranking, _, _ in asha],
            "sync": test_acc(sync, others), "sync_config": sync, "fifo": test_acc(fifo, others), "rerank": rerank,
            "spent": {"FIFO": sum(map(len, scores)), "ASHA": float(np.mean([spent for _, _, spent in asha])),
                      "synchronous": sync_spent}}


def print_named(sweeps: list[tuple], outcomes: list[dict], searched: list[str]) -> None:
    """Per sweep, every config ASHA's orders name, commonest first: its share of the orders, its
    held-out test ACC and its searched values."""
    print("\n| sweep (draw, seed) | config | orders naming it | held-out test ACC | " + " | ".join(searched) + " |")
    print("|---|---:|---:|---|" + "---|" * len(searched))
    for (k, seed, runs, configs, _), outcome in zip(sweeps, outcomes):
        for i, share, held in outcome["named"]:
            values = runs[seed][configs[i]]["config"]
            print(f"| {k}, {seed} | {configs[i]} | {share:.0%} | {held:.3f} | "
                  + " | ".join(f"{values[key]:.4g}" if isinstance(values[key], float) else str(values[key])
                               for key in searched) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--by-config", action="store_true",
                        help="also list, per sweep, every config ASHA's orders name: how often, its held-out test ACC")
    args, spec, draws = parse_draws(parser, argv)
    if args.orders < 2:
        parser.error(f"--orders: {args.orders}; allowed: 2 or more (the orders are what is compared)")
    if spec.scheduler.type != "asha":
        parser.error(f"--spec: {spec.name} uses scheduler {spec.scheduler.type!r}; allowed: a spec with ASHA")
    for k, runs in enumerate(draws, 1):
        if len({frozenset(configs) for configs in runs.values()}) > 1:
            raise SystemExit(f"--draw: draw {k}'s training seeds ran different configs; each seed must run them all")
    prefix = "bn_" if spec.train.bn_recompute else ""
    rank_on = spec.metric.removeprefix("val_")
    print(f"{spec.name}: ranked on val {rank_on}'s trailing mean, readout "
          f"{'recomputed (bn_recompute)' if prefix else 'running statistics'}, ASHA grace "
          f"{spec.scheduler.grace_period} x reduction {spec.scheduler.reduction_factor} (rungs "
          f"{', '.join(map(str, rungs(spec)))}), {args.orders} random arrival orders a sweep. Held-out test ACC: the "
          "chosen config's validation-selected test ACC averaged over the draw's other training seeds.\n")
    print("| sweep (draw, seed) | configs ASHA's orders name | orders on the commonest | ASHA: mean [min, max] "
          "| synchronous | FIFO | synchronous chooses ASHA's commonest |")
    print("|---|---:|---:|---|---|---|---|")
    # each draw's choices once; a sweep is one of its training seeds
    sweeps = []
    for k, runs in enumerate(draws, 1):
        configs, chosen = draw_choices(runs, prefix, rank_on)
        sweeps += [(k, seed, runs, configs, chosen) for seed in sorted(runs)]
    outcomes = []
    for k, seed, _, _, chosen in sweeps:
        o = sweep_outcome(chosen, seed, spec, args.orders)
        outcomes.append(o)
        (commonest, share, _), names = o["named"][0], len(o["named"])
        print(f"| {k}, {seed} | {names} of {len(chosen[seed])} | {share:.0%} "
              f"| {np.mean(o['asha']):.3f} [{min(o['asha']):.3f}, {max(o['asha']):.3f}] | {o['sync']:.3f} "
              f"| {o['fifo']:.3f} | {'yes' if o['sync_config'] == commonest else 'no'} |")
    if args.by_config:
        print_named(sweeps, outcomes, list(spec.search))
    asha = [float(np.mean(o["asha"])) for o in outcomes]
    sync, fifo = [o["sync"] for o in outcomes], [o["fifo"] for o in outcomes]
    print(f"\nOver the {len(outcomes)} sweeps (mean +- std; paired by sweep, with a 95% t interval):\n")
    print("| | held-out test ACC | trial-epochs, share of FIFO's |")
    print("|---|---|---|")
    for name, key, values in (("ASHA (mean over orders)", "ASHA", asha), ("synchronous halving", "synchronous", sync),
                              ("FIFO", "FIFO", fifo)):
        share = [o["spent"][key] / o["spent"]["FIFO"] for o in outcomes]
        print(f"| {name} | {fmt(values)} | {np.mean(share):.2f} |")
    print(f"| ASHA, best minus worst order | {fmt([max(o['asha']) - min(o['asha']) for o in outcomes])} | |")
    print(f"| synchronous minus ASHA | {paired_cell(list(np.subtract(sync, asha)))} | |")
    print(f"| FIFO minus ASHA | {paired_cell(list(np.subtract(fifo, asha)))} | |")
    reranked = [o["rerank"] for o in outcomes if o["rerank"]]
    if reranked:
        print(f"\nASHA's top K re-trained with another seed and re-ranked on that seed's validation (what choosing "
              f"among `confirm --top K`'s runs on validation would do), minus keeping ASHA's winner; both scored "
              f"on the draw's seeds left; mean over orders and re-ranking seeds, +- over the {len(reranked)} sweeps "
              "of draws with three seeds or more:\n")
        print("| K | held-out test ACC, re-ranked minus winner | per sweep |")
        print("|---:|---|---|")
        for k in RERANK_TOP:
            gains = [r[k] for r in reranked]
            print(f"| {k} | {paired_cell(gains)} | {', '.join(f'{g:+.3f}' for g in gains)} |")


if __name__ == "__main__":
    run_main("halving_order.py", main)
