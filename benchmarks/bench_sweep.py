"""What Ray Tune costs and what ASHA saves, on real RetinaMNIST.

Runs the same small random-search sweep three ways in one run and prints a table:
  plain    the trials' configs trained one after another with `medvit.train.train` (no Ray)
  ray fifo the sweep on a local Ray, every trial to the end
  ray asha the sweep with ASHA early stopping
Overhead = sweep wall time against the sum of the trials' own training time.

    .venv/bin/python -m benchmarks.bench_sweep [--trials 6] [--epochs 4] [--subset 256]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import ray
import torch

from medvit.config import build_config
from medvit.data import load_dataset
from medvit.train import train
from sweeps.folder import PARAMS_FILE, RESULT_FILE, read_result_lines
from sweeps.launch import run_sweep, sweep_dir
from sweeps.space import trial_config
from sweeps.spec import load_spec, spec_from_dict


def make_spec(storage: str, name: str, trials: int, epochs: int, subset: int, scheduler: dict):
    data = load_spec("retinamnist").to_dict()
    data.update(name=name, storage=storage, num_samples=trials, max_concurrent=2,
                searcher={"type": "random", "seed": 0}, scheduler=scheduler,
                resources={"cpu": 1, "gpu": 0})
    data["train"].update(epochs=epochs, subset=subset, batch_size=64)
    data["search"]["model"] = {"choice": ["medvit_28_tiny"]}
    return spec_from_dict(data, "bench")


def trial_records(directory: Path) -> list[tuple[dict, list[dict]]]:
    records = []
    for trial in sorted(p for p in directory.iterdir() if (p / RESULT_FILE).exists()):
        records.append((json.loads((trial / PARAMS_FILE).read_text()), read_result_lines(trial / RESULT_FILE)))
    return records


def timed_sweep(spec, root: str) -> tuple[float, list[tuple[dict, list[dict]]]]:
    start = time.perf_counter()
    run_sweep(spec, data_root=root)
    return time.perf_counter() - start, trial_records(Path(sweep_dir(spec)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--subset", type=int, default=256)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    storage = tempfile.mkdtemp(prefix="bench-sweep-")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)

    fifo = make_spec(storage, "fifo", args.trials, args.epochs, args.subset, {"type": "fifo"})
    fifo_wall, fifo_trials = timed_sweep(fifo, args.data_root)
    asha = make_spec(storage, "asha", args.trials, args.epochs, args.subset,
                     {"type": "asha", "max_t": args.epochs, "grace_period": 1, "reduction_factor": 2})
    asha_wall, asha_trials = timed_sweep(asha, args.data_root)
    ray.shutdown()

    torch.set_num_threads(1)  # as each Ray trial runs: one CPU
    data = load_dataset("retinamnist", root=args.data_root)
    start = time.perf_counter()
    plain_train = 0.0
    for params, _ in fifo_trials:
        result = train(build_config(trial_config(fifo, params)), data.subset(args.subset, seed=0))
        plain_train += sum(m["epoch_time_s"] for m in result["history"])
    plain_wall = time.perf_counter() - start

    def train_time(trials):
        return sum(r["epoch_time_s"] for _, lines in trials for r in lines)

    def trial_epochs(trials):
        return sum(len(lines) for _, lines in trials)

    rows = [
        ("plain (sequential, no Ray)", plain_wall, plain_train, args.trials * args.epochs),
        ("ray fifo (2 concurrent)", fifo_wall, train_time(fifo_trials), trial_epochs(fifo_trials)),
        ("ray asha (2 concurrent)", asha_wall, train_time(asha_trials), trial_epochs(asha_trials)),
    ]
    print(f"\n{args.trials} trials x {args.epochs} epochs, medvit_28_tiny, {args.subset} images/split, 2 CPUs")
    print(f"{'run':<28} {'wall s':>8} {'train s':>8} {'wall/plain':>10} {'trial-epochs':>12} {'per-trial overhead s':>20}")
    for name, wall, trained, epochs in rows:
        concurrency = 1 if name.startswith("plain") else 2
        overhead = (wall - trained / concurrency) / args.trials
        print(f"{name:<28} {wall:>8.1f} {trained:>8.1f} {wall / plain_wall:>10.2f} {epochs:>12} {overhead:>20.2f}")
    saved = args.trials * args.epochs - trial_epochs(asha_trials)
    print(f"ASHA saved {saved} of {args.trials * args.epochs} trial-epochs "
          f"({saved / (args.trials * args.epochs):.0%}); wall {asha_wall / fifo_wall:.2f}x of FIFO")


if __name__ == "__main__":
    main()
