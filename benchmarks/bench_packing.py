"""Trial packing on CPU, and the peak memory of one trial on PathMNIST-sized data.

Packing: the same training run (``medvit.train.Trainer``, as ``medsweep train`` and a sweep
trial run it) laid out three ways on the machine's cores, total images/s of all processes
trained together (``trial_packing.run_packed``, no Ray):

    1 trial  x 1 CPU     one process, 1 torch thread
    2 trials x 1 CPU     two processes at once, 1 thread each (``resources: {cpu: 1}``)
    1 trial  x 2 CPUs    one process, 2 threads (``resources: {cpu: 2}``)

The layouts take turns for ``--rounds`` rounds and each reports its best, so a busy neighbour
skews the ratios as little as possible.

Memory: one trial's peak resident memory (VmHWM) after each stage (imports, data loading,
Trainer, a validation pass, one training epoch) on PathMNIST-sized synthetic data (89,996 /
10,004 / 7,180 images of 3 x 28 x 28, written by ``medvit.synthetic.write_synthetic``). The
epoch takes minutes on one core; ``--memory-seconds`` stops it early and reports the peak so far.

    .venv/bin/python -m benchmarks.bench_packing [--rounds 2] [--epochs 2] [--model medvit_28_tiny]
        [--data-root DIR] [--parts packing,memory] [--memory-train N] [--memory-seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

from benchmarks.trial_packing import run_packed
from medvit.config import build_config
from medvit.data import resolve_root
from medvit.synthetic import write_synthetic
from medvit.train import Trainer, load_data

REPO = Path(__file__).resolve().parents[1]

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
    parser.add_argument("--memory-seconds", type=float, default=1800,
                        help="stop the memory run's training epoch after this long")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.model)
        return

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
        splits = (args.memory_train, *PATHMNIST_SPLITS[1:])
        write_synthetic("pathmnist", work / "pathmnist", n_per_split=splits)
        stages = memory_stages(work / "pathmnist", args.model, args.memory_seconds)
        print(f"\nPeak resident memory of one trial ({args.model}, 1 CPU, synthetic pathmnist "
              f"{' / '.join(f'{n:,}' for n in splits)} images), after each stage:\n")
        print("| stage | peak RSS MiB | RSS now MiB | s since start |")
        print("|---|---:|---:|---:|")
        for stage in stages:
            print(f"| {stage['stage']} | {stage['peak']:,.0f} | {stage['now']:,.0f} | {stage['seconds']:.0f} |")
        peak = max(stage["peak"] for stage in stages)
        print(f"\npeak {peak:,.0f} MiB: {'under' if peak < MEMORY_LIMIT_MIB else 'OVER'} {MEMORY_LIMIT_MIB} MiB")


def memory_stages(root: Path, model: str, limit_s: float) -> list[dict]:
    """Run one trial in a child that reports its peak RSS after each stage; past ``limit_s``
    the child is stopped and the last row is the peak sampled so far, mid-epoch."""
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_packing", "--memory-child", str(root), "--model", model],
                             stdout=subprocess.PIPE, text=True, cwd=REPO)
    stages, start = [], time.perf_counter()
    reader = threading.Thread(target=lambda: stages.extend(json.loads(line) for line in child.stdout), daemon=True)
    reader.start()
    try:
        child.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        peak, now = _status_mib(child.pid)
        child.kill()
        child.wait()
        stages.append({"stage": f"training epoch, stopped at the {limit_s:.0f} s limit", "peak": peak, "now": now,
                       "seconds": time.perf_counter() - start})
    reader.join(timeout=5)
    return sorted(stages, key=lambda stage: stage["seconds"])


def _status_mib(pid: int | str = "self") -> tuple[float, float]:
    """(peak, current) resident memory of a process in MiB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def memory_child(root: str, model: str) -> None:
    start = time.perf_counter()

    def report(stage: str) -> None:
        peak, now = _status_mib()
        print(json.dumps({"stage": stage, "peak": peak, "now": now, "seconds": time.perf_counter() - start}), flush=True)

    warnings.filterwarnings("ignore", message="MD5 mismatch")  # synthetic data, by design
    torch.set_num_threads(1)
    report("import torch and medvit")
    config = build_config({"dataset": "pathmnist", "model": model, "epochs": 1, "device": "cpu", "data_root": root})
    data = load_data(config)
    report("load_data")
    trainer = Trainer(config, data)
    report("Trainer built")
    trainer.evaluate("val")
    report("validation pass")
    next(trainer.epochs())
    report("one training epoch and its validation")

if __name__ == "__main__":
    main()
