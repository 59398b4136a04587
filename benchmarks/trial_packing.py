"""Concurrent training processes on one machine, each what ``medsweep train`` runs.

``run_packed(config, count, threads, work)`` starts ``count`` processes of this file; each
builds the config, loads the data and trains with ``medvit.train.Trainer`` exactly as
``medsweep train`` (and a sweep trial) does, with ``threads`` torch threads, as a Ray trial
of that many CPUs would. After ``warmup`` epochs (CUDA context, kernels, allocator) every
process waits for the others, then times its remaining epochs on the wall clock, so the total
images/s is all processes' images over the span in which they trained together. Each also
reports its peak resident memory and, on CUDA, its peak GPU memory.

No Ray here: ``benchmarks/gpu_check.py`` runs this where Ray is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from medvit.config import build_config
from medvit.train import Trainer, load_data

REPO = Path(__file__).resolve().parents[1]

def run_packed(config: dict, count: int, threads: int, work: Path, warmup: int = 1, env: dict | None = None) -> dict:
    """Train ``count`` copies of ``config`` at once (with ``env`` as their environment, if
    given); their combined figures."""
    barrier = Path(tempfile.mkdtemp(dir=work))
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.trial_packing", "--config", json.dumps(config), "--barrier", str(barrier),
                               "--count", str(count), "--threads", str(threads), "--warmup", str(warmup),
                               "--result", str(barrier / f"result-{i}.json")], cwd=REPO, env=env)
             for i in range(count)]
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError(f"trial packing: a process of {count} failed")
    results = [json.loads((barrier / f"result-{i}.json").read_text()) for i in range(count)]
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "total_images_per_s": sum(r["images"] for r in results) / span,
        "train_images_per_s": sum(r["train_images_per_s"] for r in results) / count,
        "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
        "peak_gpu_mib": max(r["peak_gpu_mib"] for r in results),
        "seconds": span,
        # start-up to the barrier: data, CUDA context, the warm-up epochs and any compilation
        "warmup_s": max(r["ready"] - r["launched"] for r in results),
    }


def worker(args: argparse.Namespace) -> None:
    launched = time.time()
    # synthetic files never match medmnist's MD5, by design: one warning per process is noise
    warnings.filterwarnings("ignore", message="MD5 mismatch")
    torch.set_num_threads(args.threads)
    config = build_config(json.loads(args.config))
    trainer = Trainer(config, load_data(config))
    epochs = trainer.epochs()
    for _ in range(args.warmup):
        next(epochs)
    ready = time.time()
    barrier = Path(args.barrier)
    (barrier / f"ready-{os.getpid()}").touch()
    while len(list(barrier.glob("ready-*"))) < args.count:
        time.sleep(0.01)
    start = time.time()
    timed = list(epochs)
    end = time.time()
    on_gpu = trainer.device.type == "cuda"
    Path(args.result).write_text(json.dumps({
        "launched": launched,
        "ready": ready,
        "start": start,
        "end": end,
        "images": len(trainer.labels["train"]) * len(timed),
        "train_images_per_s": sum(m["images_per_s"] for m in timed) / len(timed),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if on_gpu else 0.0,
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="TrainConfig fields as JSON")
    parser.add_argument("--barrier", required=True, help="folder where the processes meet")
    parser.add_argument("--result", required=True, help="JSON file for this process's figures")
    parser.add_argument("--count", type=int, required=True, help="processes that train together")
    parser.add_argument("--threads", type=int, required=True, help="torch threads of this process")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs before the barrier")
    worker(parser.parse_args())
