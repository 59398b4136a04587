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
spec's metric), with the gap to FIFO's best, and the test accuracy of each sweep's winner (the
analysis' ranking): the validation best of many noisy trials is itself inflated, so whether a
smaller one costs a user anything shows on the test split (reported, never used to choose).

    .venv/bin/python -m benchmarks.bench_sweep_efficiency --quick      # minutes: 6 trials x 4 epochs, 256 images
    .venv/bin/python -m benchmarks.bench_sweep_efficiency              # the spec as it is, 3 seeds (hours on 2 CPUs)
    .venv/bin/python -m benchmarks.bench_sweep_efficiency --replay DIR...   # replay finished FIFO sweeps only
    .venv/bin/python -m benchmarks.bench_sweep_efficiency --replay DIR... --pool 8,16,32   # and as sweeps of n trials
    .venv/bin/python -m benchmarks.bench_sweep_efficiency --seeds 0 --fifo-from DIR --asha 5x4 ...
        # other ASHA settings against a FIFO run this benchmark already made (same options)

Options override the spec: ``--trials``, ``--epochs``, ``--asha 4x2,2x3`` (one TPE + ASHA
sweep per grace period x reduction factor, each against the same FIFO run; default: the
spec's), ``--subset``, ``--seeds 0,1,2``, ``--max-concurrent``. Targets (issue 10): ASHA
spends at most 35% of FIFO's trial-epochs and reaches a best within 0.01 of FIFO's.
``--rung-metric val_auc`` makes ASHA compare one epoch's validation AUC at its rungs instead of
the spec's ``scheduler.rung_metric`` (the searcher and the best value stay on the selection score).

It also replays Ray Tune's own ASHA (``ASHAScheduler``, fed through its ``on_trial_add`` /
``on_trial_result`` API) on FIFO's recorded curves for a grid of settings and rung metrics (the
selection score, ``val_auc`` and ``--rung-metric``): the same random configurations, each
trial judged at a rung against those that reached it before. That isolates the scheduler from
the searcher, so it is the cheap way to choose a spec's defaults; the real runs above add the
searcher's own proposals and the trials' real timing.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import statistics
import tempfile
from pathlib import Path
from types import SimpleNamespace

import ray
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from analysis.collect import read_sweep
from analysis.evaluate import evaluate_checkpoint
from analysis.tables import rank_trials
from benchmarks.bench_sweep import timed_sweep, trial_records
from medvit.config import SELECT_METRICS
from sweeps.folder import SPEC_FILE
from sweeps.ranking import SCORE, trial_best
from sweeps.launch import sweep_dir
from sweeps.spec import load_spec, spec_from_dict

QUICK = {"trials": 6, "epochs": 4, "asha": "1x2", "subset": 256}
# The grid the replay tries: grace periods x reduction factors (grace 5: the GPU specs').
REPLAY_GRID = ((1, 2, 4, 5, 8), (2, 3, 4))
# Random sweeps drawn per size by --pool.
POOL_DRAWS = 200


def make_spec(base: dict, storage: str, name: str, seed: int, asha: tuple[int, int] | None, args) -> object:
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
        data["scheduler"] = {"type": "asha", "grace_period": asha[0], "reduction_factor": asha[1],
                             "rung_metric": args.rung_metric or base["scheduler"].get("rung_metric", SCORE)}
        data["searcher"] = {"type": "optuna", "seed": seed}
    else:
        data["scheduler"] = {"type": "fifo"}
        # Random search through Optuna: TPE that never leaves its random start-up phase, so the
        # spec's conditional entries (which Ray's own random searcher refuses) still work.
        data["searcher"] = {"type": "optuna", "seed": seed, "n_startup_trials": data["num_samples"]}
    return spec_from_dict(data, f"bench {name}")


def asha_settings(text: str | None, base: dict) -> list[tuple[int, int]]:
    """``--asha 4x2,2x3`` as [(grace, reduction), ...]; the spec's own ASHA when not given."""
    if not text:
        scheduler = base["scheduler"] if base["scheduler"]["type"] == "asha" else {}
        return [(scheduler.get("grace_period", 1), scheduler.get("reduction_factor", 4))]
    try:
        return [tuple(int(part) for part in item.split("x")) for item in text.split(",")]
    except ValueError:
        raise SystemExit(f"--asha: {text!r}; allowed: GRACExREDUCTION[,...], e.g. 4x2,2x3") from None


def asha_epochs_run(rungs: list[list[float]], grace: int, reduction: int, mode: str) -> list[int]:
    """Ray Tune's own ASHA fed recorded per-epoch values (one list per trial, every trial run
    to the end) through ``on_trial_add``/``on_trial_result``, as Tune's controller calls them:
    the trials arrive in their recorded order, each reporting epoch after epoch until ASHA
    stops it. With epochs of equal length that is the order in which they reach every rung
    whatever the number running at once, so each is judged against those that reached the rung
    before it. Returns the epochs each trial got to run."""
    scheduler = ASHAScheduler(time_attr="training_iteration", metric="rung", mode=mode, max_t=len(rungs[0]),
                              grace_period=grace, reduction_factor=reduction)
    ran = [0] * len(rungs)
    for i, values in enumerate(rungs):
        trial = SimpleNamespace(trial_id=str(i))  # all that ASHA reads of a trial
        scheduler.on_trial_add(None, trial)
        for epoch, value in enumerate(values, start=1):
            ran[i] = epoch
            if scheduler.on_trial_result(None, trial, {"training_iteration": epoch, "rung": value}) == TrialScheduler.STOP:
                break
    return ran


def replay_asha(curves: list[list[float]], grace: int, reduction: int, mode: str,
                rungs: list[list[float]] | None = None, rung_mode: str | None = None) -> tuple[int, float]:
    """``asha_epochs_run`` on ``curves`` (or on ``rungs``, direction ``rung_mode``, when ASHA
    compares other values than the scores). Returns the trial-epochs spent and the best score
    over the epochs each trial got to run."""
    rungs, rung_mode = (rungs, rung_mode) if rungs else (curves, mode)
    ran = asha_epochs_run(rungs, grace, reduction, rung_mode)
    best_of = max if mode == "max" else min
    return sum(ran), best_of(v for curve, stop in zip(curves, ran) for v in curve[:stop])


def halving_outcomes(samples: list[tuple[list, list, str]], grace: int, reduction: int, mode: str
                     ) -> tuple[list[float], list[float]]:
    """For each sample ``(curves, rungs, rung_mode)`` (trials of one sweep, all run to the end):
    the share of FIFO's trial-epochs ASHA spends and its best minus FIFO's."""
    best_of = max if mode == "max" else min
    shares, gaps = [], []
    for curves, rungs, rung_mode in samples:
        spent, best = replay_asha(curves, grace, reduction, mode, rungs, rung_mode)
        shares.append(spent / sum(map(len, curves)))
        gaps.append(best - best_of(v for curve in curves for v in curve))
    return shares, gaps


def print_replay(fifo_runs: list[tuple[int, object, list]], rung_metrics: list[str]) -> None:
    """The replay table: every grid setting and rung metric, mean over seeds of its share and gap."""
    print("\nRay Tune's ASHA replayed on FIFO's curves (the same random configurations), mean over "
          f"{len(fifo_runs)} seeds:\n")
    print("| rung metric | grace | reduction | trial-epochs vs FIFO | best - FIFO's | worst seed |")
    print("|---|---:|---:|---:|---:|---:|")
    mode = fifo_runs[0][1].mode
    for rung_metric in rung_metrics:
        rung_mode = mode if rung_metric == SCORE else SELECT_METRICS[rung_metric]
        samples = []
        for _, _, trials in fifo_runs:
            histories = [lines for _, lines in trials
                         if lines and all(SCORE in line and rung_metric in line for line in lines)]
            if histories:
                samples.append(([[line[SCORE] for line in lines] for lines in histories],
                                [[line[rung_metric] for line in lines] for lines in histories], rung_mode))
        for grace, reduction in itertools.product(*REPLAY_GRID):
            usable = [sample for sample in samples if grace < len(sample[0][0])]
            if usable:
                shares, gaps = halving_outcomes(usable, grace, reduction, mode)
                print(f"| {rung_metric} | {grace} | {reduction} | {statistics.mean(shares):.0%} | "
                      f"{statistics.mean(gaps):+.4f} | {min(gaps):+.4f} |")


def pooled_replay(fifo_runs: list[tuple[int, object, list]], sizes: list[int], draws: int = POOL_DRAWS,
                  seed: int = 0) -> list[tuple[int, int, int, float, float, float]]:
    """Sweeps of other sizes from the pooled curves of several FIFO runs of one search space:
    ``draws`` random sets of n trials per size, successive halving replayed on each (selection
    score at the rungs). Rows (n, grace, reduction, share of FIFO's trial-epochs, mean best -
    FIFO's, share of draws more than 0.01 below FIFO's best)."""
    curves = [[line[SCORE] for line in lines] for _, spec, trials in fifo_runs for _, lines in trials]
    mode = fifo_runs[0][1].mode
    rng = random.Random(seed)
    rows = []
    for n in (n for n in sizes if n <= len(curves)):
        picks = [rng.sample(curves, n) for _ in range(draws if n < len(curves) else 1)]
        for grace, reduction in itertools.product(*REPLAY_GRID):
            if grace < len(curves[0]):
                shares, gaps = halving_outcomes([(pick, pick, mode) for pick in picks], grace, reduction, mode)
                rows.append((n, grace, reduction, statistics.mean(shares), statistics.mean(gaps),
                             sum(gap < -0.01 for gap in gaps) / len(gaps)))
    return rows


def recorded_fifo_runs(folders: list[str]) -> list[tuple[int, object, list]]:
    """Finished FIFO sweeps (this benchmark's ``fifo-N`` folders, or a user's own) as
    ``print_replay`` takes them; a folder that is not a finished FIFO sweep is one line."""
    runs = []
    for folder in folders:
        path = Path(folder)
        if not (path / SPEC_FILE).is_file():
            raise SystemExit(f"--replay: {folder}: no {SPEC_FILE} in it (not a medsweep sweep folder)")
        spec = load_spec(path / SPEC_FILE)
        trials = trial_records(path)
        if not trials:
            raise SystemExit(f"--replay: {folder}: no trial with results in it")
        if spec.scheduler.type != "fifo" or any(len(lines) != spec.train.epochs for _, lines in trials):
            raise SystemExit(f"--replay: {folder}: needs a FIFO sweep whose trials all ran {spec.train.epochs} epochs")
        runs.append((len(runs), spec, trials))
    return runs


def reused_fifo(folder: str, expected) -> tuple[object, list]:
    """A FIFO sweep this benchmark made before: its spec and trial records, refused in one
    line unless the spec is the one these options would run (``expected``)."""
    _, spec, trials = recorded_fifo_runs([folder])[0]
    recorded = spec.to_dict()
    differ = sorted(key for key, value in expected.to_dict().items()
                    if key not in ("name", "storage") and recorded.get(key) != value)
    if differ:
        raise SystemExit(f"--fifo-from: {folder}: its {', '.join(differ)} differ from what these options run")
    return spec, trials


def winner_test_acc(spec, data_root: str | None) -> float:
    """Test accuracy of the sweep's winner (the analysis' ranking, its selected weights):
    reported beside the validation best, never used to choose anything."""
    top = rank_trials(read_sweep(sweep_dir(spec)).to_pandas()).iloc[0]
    return evaluate_checkpoint(top["checkpoint_path"], data_root, device="cpu")["acc"]


def rung_metrics(extra: str | None) -> list[str]:
    """The replay's rung metrics: the selection score, val_auc and ``--rung-metric``."""
    return list(dict.fromkeys((SCORE, "val_auc", *([extra] if extra else []))))


def summarise(spec, wall: float, trials: list, data_root: str | None) -> dict:
    # the project's one ranking rule: the smoothed selection score where trials report it
    values = [best[0] for _, lines in trials if (best := trial_best(lines, spec.metric, spec.mode))]
    best = max(values) if spec.mode == "max" else min(values)
    return {"trials": len(trials), "trial_epochs": sum(len(lines) for _, lines in trials), "best": best, "wall": wall,
            "budget": spec.num_samples * spec.train.epochs, "test_acc": winner_test_acc(spec, data_root)}


def pool_sizes(text: str) -> list[int]:
    """``--pool 8,16,32`` as [8, 16, 32]."""
    try:
        sizes = [int(n) for n in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 2:
        raise SystemExit(f"--pool: {text!r}; allowed: trial counts of at least 2, e.g. 8,16,32")
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="retinamnist-cpu")
    parser.add_argument("--quick", action="store_true", help=f"a small configuration: {QUICK}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--asha", help="grace x reduction settings, e.g. 4x2,2x3 (default: the spec's)")
    parser.add_argument("--rung-metric", choices=(SCORE, *SELECT_METRICS),
                        help="what ASHA compares at each rung (default: the spec's scheduler.rung_metric)")
    parser.add_argument("--subset", type=int)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--replay", nargs="+", metavar="SWEEP_DIR",
                        help="only replay successive halving on these finished FIFO sweeps (no training)")
    parser.add_argument("--pool", help="with --replay: also pool their trials into sweeps of these sizes, e.g. 8,16,32")
    parser.add_argument("--fifo-from", nargs="+", metavar="SWEEP_DIR",
                        help="one finished fifo-N folder of this benchmark per seed, used instead of running FIFO again")
    args = parser.parse_args(argv)
    if args.pool and not args.replay:
        parser.error("--pool needs --replay SWEEP_DIR...: it pools the trials of finished FIFO sweeps")
    if args.replay:
        runs = recorded_fifo_runs(args.replay)
        print_replay(runs, rung_metrics(args.rung_metric))
        if args.pool:
            sizes = pool_sizes(args.pool)
            print(f"\nPooled: the {sum(len(t) for _, _, t in runs)} trials of these runs drawn as sweeps of n trials "
                  f"({POOL_DRAWS} draws each), replayed on the selection score:\n")
            print("| trials | grace | reduction | trial-epochs vs FIFO | best - FIFO's | draws below -0.01 |")
            print("|---:|---:|---:|---:|---:|---:|")
            for n, grace, reduction, share, gap, below in pooled_replay(runs, sizes):
                print(f"| {n} | {grace} | {reduction} | {share:.0%} | {gap:+.4f} | {below:.0%} |")
        return
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) is None:
                setattr(args, key, value)

    base = load_spec(args.spec).to_dict()
    settings = asha_settings(args.asha, base)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.fifo_from and len(args.fifo_from) != len(seeds):
        parser.error(f"--fifo-from: {len(args.fifo_from)} folders for {len(seeds)} seeds; give one per seed")
    # checked before Ray starts and before the sweeps' folder exists: a FIFO run that does not
    # match is one line, not a started sweep or an empty folder left behind (the storage is not compared)
    reused = {seed: reused_fifo(folder, make_spec(base, tempfile.gettempdir(), f"fifo-{seed}", seed, None, args))
              for seed, folder in zip(seeds, args.fifo_from or [])}
    storage = tempfile.mkdtemp(prefix="bench-sweep-efficiency-")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows, fifo_runs = [], []
    for seed in seeds:
        fifo = None
        for asha in (None, *settings):
            on = f" on {args.rung_metric}" if args.rung_metric and args.rung_metric != SCORE else ""
            label = f"TPE + ASHA {asha[0]}x{asha[1]}{on}" if asha else "random + FIFO"
            name = f"asha{asha[0]}x{asha[1]}-{seed}" if asha else f"fifo-{seed}"
            spec = make_spec(base, storage, name, seed, asha, args)
            if asha is None and seed in reused:
                spec, trials = reused[seed]
                wall = float("nan")
            else:
                wall, trials = timed_sweep(spec, args.data_root)
            summary = summarise(spec, wall, trials, args.data_root)
            if asha is None:
                fifo = summary
                fifo_runs.append((seed, spec, trials))
            rows.append((seed, label, spec, summary, fifo))
            print(f"seed {seed} {label}: {summary}", flush=True)  # partial results survive a stop
    ray.shutdown()

    fifo_spec = rows[0][2]
    print(f"\n{args.spec}: {fifo_spec.num_samples} trials x {fifo_spec.train.epochs} epochs, "
          f"subset {fifo_spec.train.subset or 'all'}, {args.max_concurrent} concurrent, "
          f"{os.cpu_count()} CPUs; metric {fifo_spec.metric} ({fifo_spec.mode}), ranked on {SCORE}\n")
    print("| seed | sweep | trial-epochs | vs FIFO | best selection value | best - FIFO's | winner's test ACC "
          "| - FIFO's | wall s |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    by_setting: dict[str, list[tuple[float, float, float]]] = {}
    for seed, label, _, r, fifo in rows:
        share = r["trial_epochs"] / fifo["trial_epochs"]
        gap, test_gap = r["best"] - fifo["best"], r["test_acc"] - fifo["test_acc"]
        if label != "random + FIFO":
            by_setting.setdefault(label, []).append((share, gap, test_gap))
        print(f"| {seed} | {label} | {r['trial_epochs']} | {share:.0%} | {r['best']:.4f} | {gap:+.4f} | "
              f"{r['test_acc']:.4f} | {test_gap:+.4f} | {'-' if math.isnan(r['wall']) else round(r['wall'])} |")
    for label, values in by_setting.items():
        shares, gaps, test_gaps = zip(*values)
        print(f"\n{label} over {len(shares)} seeds: {statistics.mean(shares):.0%} of FIFO's trial-epochs "
              f"(target <= 35%), best {statistics.mean(gaps):+.4f} vs FIFO's on average "
              f"(target >= -0.01), worst seed {min(gaps):+.4f}; winner's test ACC {statistics.mean(test_gaps):+.4f} "
              "vs FIFO's winner")
    print_replay(fifo_runs, rung_metrics(args.rung_metric))


if __name__ == "__main__":
    main()
