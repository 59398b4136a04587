"""Sweep efficiency, repeated: Optuna TPE + ASHA against random search with every trial run
to the end (FIFO), same number of trials, several seeds, on real RetinaMNIST.

For each seed both sweeps run on a local Ray (2 trials at a time, 1 CPU each) from the same
spec (``--spec``, default ``retinamnist-cpu``: the CPU preset's search space); the searcher's
seed is the repetition's. Random search is Optuna with every trial in its random start-up
phase (the spec's conditional entries need Optuna); note that TPE itself samples at random
for its first ``n_startup_trials`` (Optuna's default 10), so with fewer trials than that the
two sweeps differ by the scheduler alone. Printed per run and as a mean over seeds: trial-epochs spent, as a
share of FIFO's, and the best validation value reached over all trials' epochs (by
``sweeps.ranking.trial_best``: the smoothed selection score where trials report one, else the
spec's metric), with the gap to FIFO's best.

    .venv/bin/python benchmarks/bench_sweep_efficiency.py --quick      # minutes: 6 trials x 4 epochs, 256 images
    .venv/bin/python benchmarks/bench_sweep_efficiency.py              # the spec as it is, 3 seeds (hours on 2 CPUs)

Options override the spec: ``--trials``, ``--epochs``, ``--grace``, ``--reduction``,
``--subset``, ``--seeds 0,1,2``, ``--max-concurrent``. Targets (issue 10): ASHA spends at
most 35% of FIFO's trial-epochs and reaches a best within 0.01 of FIFO's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep import timed_sweep  # noqa: E402  (beside this file)

from sweeps.ranking import trial_best  # noqa: E402
from sweeps.spec import load_spec, spec_from_dict  # noqa: E402

QUICK = {"trials": 6, "epochs": 4, "grace": 1, "reduction": 2, "subset": 256}


def make_spec(base: dict, storage: str, name: str, seed: int, asha: bool, args) -> object:
    data = {**base, "name": name, "storage": storage, "max_concurrent": args.max_concurrent,
            "resources": {"cpu": 1, "gpu": 0}}
    data["train"] = {**base["train"]}
    if args.trials:
        data["num_samples"] = args.trials
    if args.epochs:
        data["train"]["epochs"] = args.epochs
    if args.subset:
        data["train"]["subset"] = args.subset
    if asha:
        scheduler = {key: value for key, value in base["scheduler"].items() if key != "max_t"}
        if base["scheduler"]["type"] != "asha":
            scheduler = {"type": "asha"}
        if args.grace:
            scheduler["grace_period"] = args.grace
        if args.reduction:
            scheduler["reduction_factor"] = args.reduction
        data["scheduler"] = scheduler
        data["searcher"] = {"type": "optuna", "seed": seed}
    else:
        data["scheduler"] = {"type": "fifo"}
        # Random search through Optuna: TPE that never leaves its random start-up phase, so the
        # spec's conditional entries (which Ray's own random searcher refuses) still work.
        data["searcher"] = {"type": "optuna", "seed": seed, "n_startup_trials": data["num_samples"]}
    return spec_from_dict(data, f"bench {name}")


def summarise(spec, wall: float, trials: list) -> dict:
    # the project's one ranking rule: the smoothed selection score where trials report it
    values = [best[0] for _, lines in trials if (best := trial_best(lines, spec.metric, spec.mode))]
    best = max(values) if spec.mode == "max" else min(values)
    return {"trials": len(trials), "trial_epochs": sum(len(lines) for _, lines in trials), "best": best, "wall": wall,
            "budget": spec.num_samples * spec.train.epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="retinamnist-cpu")
    parser.add_argument("--quick", action="store_true", help=f"a small configuration: {QUICK}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--grace", type=int)
    parser.add_argument("--reduction", type=int)
    parser.add_argument("--subset", type=int)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) is None:
                setattr(args, key, value)

    base = load_spec(args.spec).to_dict()
    storage = tempfile.mkdtemp(prefix="bench-sweep-efficiency-")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for label, asha in (("random + FIFO", False), ("TPE + ASHA", True)):
            spec = make_spec(base, storage, f"{'asha' if asha else 'fifo'}-{seed}", seed, asha, args)
            wall, trials = timed_sweep(spec, args.data_root)
            rows.append((seed, label, spec, summarise(spec, wall, trials)))
            print(f"seed {seed} {label}: {rows[-1][3]}", flush=True)  # partial results survive a stop
    ray.shutdown()

    fifo_spec = rows[0][2]
    asha_spec = rows[1][2]
    print(f"\n{args.spec}: {fifo_spec.num_samples} trials x {fifo_spec.train.epochs} epochs, "
          f"subset {fifo_spec.train.subset or 'all'}, ASHA grace {asha_spec.scheduler.grace_period} "
          f"reduction {asha_spec.scheduler.reduction_factor}, {args.max_concurrent} concurrent, "
          f"{os.cpu_count()} CPUs; metric {fifo_spec.metric} ({fifo_spec.mode})\n")
    print("| seed | sweep | trial-epochs | vs FIFO | best selection value | best - FIFO's | wall s |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    shares, gaps = [], []
    for i, (seed, label, _, r) in enumerate(rows):
        fifo = rows[i - i % 2][3]  # each seed runs FIFO first, then ASHA
        share = r["trial_epochs"] / fifo["trial_epochs"]
        gap = r["best"] - fifo["best"]
        if label == "TPE + ASHA":
            shares.append(share)
            gaps.append(gap)
        print(f"| {seed} | {label} | {r['trial_epochs']} | {share:.0%} | {r['best']:.4f} | {gap:+.4f} | {r['wall']:.0f} |")
    print(f"\nTPE + ASHA over {len(shares)} seeds: {statistics.mean(shares):.0%} of FIFO's trial-epochs "
          f"(target <= 35%), best {statistics.mean(gaps):+.4f} vs FIFO's on average "
          f"(target >= -0.01), worst seed {min(gaps):+.4f}")


if __name__ == "__main__":
    main()
