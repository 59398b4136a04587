"""Trial packing on CPU, and the peak memory of one trial on PathMNIST-sized data.

Packing: the same training run (``medvit.train.Trainer``, as ``medsweep train`` and a sweep
trial run it) laid out three ways on the machine's cores, total images/s of all processes
trained together (``trial_packing.run_packed``, no Ray):

    1 trial  x 1 CPU     one process, 1 torch thread
    2 trials x 1 CPU     two processes at once, 1 thread each (``resources: {cpu: 1}``)
    1 trial  x 2 CPUs    one process, 2 threads (``resources: {cpu: 2}``)

The layouts take turns for ``--rounds`` rounds and each reports its best, so a busy neighbour
skews the ratios as little as possible.

Memory: one trial's peak resident memory (``ru_maxrss``) over one whole epoch of
PathMNIST-sized synthetic data (89,996 / 10,004 / 7,180 images of 3 x 28 x 28, written by
``medvit.synthetic.write_synthetic``): data loading, the training epoch and the validation pass.

    .venv/bin/python benchmarks/bench_packing.py [--rounds 2] [--epochs 2] [--model medvit_28_tiny]
        [--data-root DIR] [--parts packing,memory] [--memory-train N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medvit.data import resolve_root  # noqa: E402
from medvit.synthetic import write_synthetic  # noqa: E402
from trial_packing import run_packed  # noqa: E402  (beside this file)

LAYOUTS = {  # name: (processes, torch threads each)
    "1 trial x 1 CPU": (1, 1),
    "2 trials x 1 CPU": (2, 1),
    "1 trial x 2 CPUs": (1, 2),
}
PATHMNIST_SPLITS = (89_996, 10_004, 7_180)
MEMORY_LIMIT_MIB = 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per process, after a warm-up epoch")
    parser.add_argument("--model", default="medvit_28_tiny")
    parser.add_argument("--dataset", default="retinamnist")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--parts", default="packing,memory", help="which parts to run")
    parser.add_argument("--memory-train", type=int, default=PATHMNIST_SPLITS[0],
                        help="training images of the memory run (default PathMNIST's 89,996)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-packing-") as tmp:
        work = Path(tmp)
        if "packing" in args.parts:
            config = {"dataset": args.dataset, "model": args.model, "epochs": args.epochs + 1, "device": "cpu",
                      "data_root": str(resolve_root(args.data_root))}
            best: dict[str, dict] = {}
            for _ in range(args.rounds):
                for name, (count, threads) in LAYOUTS.items():
                    result = run_packed(config, count, threads, work)
                    if name not in best or result["total_images_per_s"] > best[name]["total_images_per_s"]:
                        best[name] = result
            base = best["1 trial x 1 CPU"]["total_images_per_s"]
            print(f"{args.model} on {args.dataset}, batch 128, {args.epochs} timed epochs per process after a warm-up "
                  f"epoch, best of {args.rounds} rounds; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
            print("| layout | total images/s | vs 1 trial x 1 CPU | per process, training part | peak RSS MiB |")
            print("|---|---:|---:|---:|---:|")
            for name, r in best.items():
                print(f"| {name} | {r['total_images_per_s']:,.0f} | {r['total_images_per_s'] / base:.2f}x | "
                      f"{r['train_images_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} |")

        if "memory" not in args.parts:
            return
        n_train, n_val, n_test = args.memory_train, *PATHMNIST_SPLITS[1:]
        root = work / "pathmnist"
        write_synthetic("pathmnist", root, n_per_split=(n_train, n_val, n_test))
        start = time.perf_counter()
        memory = run_packed({"dataset": "pathmnist", "model": args.model, "epochs": 1, "device": "cpu",
                             "data_root": str(root)}, count=1, threads=1, work=work, warmup=0)
        verdict = "under" if memory["peak_rss_mib"] < MEMORY_LIMIT_MIB else "OVER"
        print(f"\nPeak RSS of one trial, {args.model}, 1 CPU, one epoch of synthetic pathmnist "
              f"({n_train:,} / {n_val:,} / {n_test:,} images): {memory['peak_rss_mib']:,.0f} MiB, {verdict} "
              f"{MEMORY_LIMIT_MIB} MiB ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
