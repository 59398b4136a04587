"""Training beside busy processes: seconds per epoch alone and beside 1 and 2 CPU burners.

A user's machine is never idle (and Ray's own processes share a node with its trials), so a
training epoch must cost about what sharing the cores explains, not many times more. Each arm
is ``medvit.train.Trainer`` (``medvit_28_tiny`` on a subset of real RetinaMNIST, as
``medsweep train`` runs it) with a number of torch threads and an OpenMP wait policy:

    unset     OMP_WAIT_POLICY not set: libgomp's own default (spin a while, then sleep)
    passive   OMP_WAIT_POLICY=PASSIVE: a waiting thread sleeps at once
    active    OMP_WAIT_POLICY=ACTIVE: a waiting thread spins until there is work
    spin:N    OMP_WAIT_POLICY not set, GOMP_SPINCOUNT=N: spin N rounds, then sleep

The wait policy is read when torch's OpenMP runtime starts, so every arm trains in a fresh
process with its own environment. The busy processes are plain Python busy loops that this
script starts, at normal priority, and kills. Every load level (0, 1, 2 burners) runs every
arm in turn (each round starting with another arm), for ``--rounds`` rounds, and each arm
reports its best and its median round at each level. Ratios use the best (a neighbour that
this script did not start can only make a run slower), against the same arm alone in the same run.

    .venv/bin/python -m benchmarks.bench_busy [--quick] [--threads 1,2] [--policies unset,passive,active,spin:1000]
        [--loads 0,1,2] [--subset 256] [--epochs 2] [--rounds 1] [--data-root DIR]

``--quick`` is 2 threads only, 1 timed epoch, 0 and 1 busy process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POLICIES = {"unset": None, "passive": "PASSIVE", "active": "ACTIVE"}
SPIN = "spin:"  # "spin:N": no policy, GOMP_SPINCOUNT=N (libgomp spins N rounds, then sleeps)
BURNER = "while True: pass"


def policy_error(policy: str) -> str | None:
    """Why ``policy`` names no arm, or None."""
    if policy in POLICIES:
        return None
    if policy.startswith(SPIN) and policy.removeprefix(SPIN).isdigit():
        return None
    return f"unknown {policy!r}; allowed: {', '.join(POLICIES)}, or {SPIN}N (N spins, e.g. {SPIN}1000)"


def arm_env(policy: str) -> dict[str, str]:
    """This process's environment with the arm's OpenMP wait policy (or none)."""
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy.startswith(SPIN):
        env["GOMP_SPINCOUNT"] = policy.removeprefix(SPIN)
    elif POLICIES[policy] is not None:
        env["OMP_WAIT_POLICY"] = POLICIES[policy]
    return env


def run_arm(threads: int, policy: str, args: argparse.Namespace) -> float:
    """Median seconds per timed epoch of one arm, trained in a fresh process."""
    command = [sys.executable, "-m", "benchmarks.bench_busy", "--worker", "--threads", str(threads), "--subset", str(args.subset),
               "--epochs", str(args.epochs)]
    if args.data_root:
        command += ["--data-root", args.data_root]
    done = subprocess.run(command, cwd=REPO, env=arm_env(policy), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_busy: the arm {threads} threads, {policy} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])["seconds_per_epoch"]


def start_burners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(count)]


def stop(burners: list[subprocess.Popen]) -> None:
    for burner in burners:
        burner.kill()
        burner.wait()


def worker(args: argparse.Namespace) -> None:
    """Train one untimed epoch (allocator, first-touch), then ``--epochs`` timed ones."""
    import torch

    from medvit.config import build_config
    from medvit.train import Trainer, load_data

    torch.set_num_threads(args.threads)
    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "epochs": args.epochs + 1,
                           "subset": args.subset, "device": "cpu", "data_root": args.data_root})
    epochs = Trainer(config, load_data(config)).epochs()
    next(epochs)
    seconds = [metrics["epoch_time_s"] for metrics in epochs]
    print(json.dumps({"seconds_per_epoch": statistics.median(seconds)}))


def table(runs: dict[tuple[str, int], dict[int, list[float]]], loads: list[int]) -> str:
    """Seconds per epoch at each load: the best round (what the ratios use: a neighbour this
    script did not start can only slow a run) and the median round; the best as a ratio to the
    same arm alone and to the fastest arm alone with as many threads (on a machine already busy,
    an arm that collapses does so alone too, and only the second ratio shows it)."""
    best = {arm: {n: min(seconds) for n, seconds in by_load.items()} for arm, by_load in runs.items()}
    fastest_alone = {threads: min(by_load[0] for (_, t), by_load in best.items() if t == threads)
                     for _, threads in best}
    header = "| threads | wait policy | " + " | ".join(
        f"{n} busy: s/epoch, best | median | vs alone | vs fastest alone" for n in loads) + " |"
    lines = [header, "|" + "---|" * (2 + 4 * len(loads))]
    for (policy, threads), by_load in best.items():
        cells = [f"{by_load[n]:.2f} | {statistics.median(runs[policy, threads][n]):.2f} | "
                 f"{by_load[n] / by_load[0]:.2f}x | {by_load[n] / fastest_alone[threads]:.2f}x" for n in loads]
        lines.append(f"| {threads} | {policy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 threads, 1 timed epoch, 0 and 1 busy: minutes")
    parser.add_argument("--threads", default="1,2", help="torch threads of the arms")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help=f"wait policies of the arms ({', '.join(POLICIES)}, or {SPIN}N: N spins, then sleep)")
    parser.add_argument("--loads", default="0,1,2", help="numbers of busy processes; 0 is the baseline")
    parser.add_argument("--subset", type=int, default=256, help="images per split")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per arm, after one untimed")
    parser.add_argument("--rounds", type=int, default=1, help="rounds over every load and arm; best and median shown")
    parser.add_argument("--data-root", default=os.environ.get("MEDMNIST_ROOT"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        worker(args)
        return
    if args.quick:
        args.threads, args.epochs, args.loads = "2", 1, "0,1"
    policies = args.policies.split(",")
    problems = [problem for problem in map(policy_error, policies) if problem]
    if problems:
        parser.error(f"--policies: {problems[0]}")
    threads = [int(n) for n in args.threads.split(",")]
    loads = [int(n) for n in args.loads.split(",")]
    if 0 not in loads:
        loads.insert(0, 0)

    runs: dict[tuple[str, int], dict[int, list[float]]] = {(p, t): {n: [] for n in loads}
                                                           for t in threads for p in policies}
    arms = list(runs)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    for round_ in range(args.rounds):
        for load in loads:
            burners = start_burners(load)
            try:
                # Each round starts with another arm, so that no arm always runs first.
                for arm in arms[round_ % len(arms):] + arms[:round_ % len(arms)]:
                    seconds = run_arm(arm[1], arm[0], args)
                    runs[arm][load].append(seconds)
                    print(f"round {round_ + 1}, {load} busy, {arm[1]} threads, {arm[0]}: {seconds:.2f} s/epoch",
                          file=sys.stderr, flush=True)
            finally:
                stop(burners)
    print(f"\nmedvit_28_tiny, RetinaMNIST subset {args.subset}, {args.epochs} timed epochs (median) per arm, "
          f"{args.rounds} round(s); {os.cpu_count()} CPUs, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; {time.perf_counter() - started:.0f} s in all\n")
    print(table(runs, loads))


if __name__ == "__main__":
    main()
