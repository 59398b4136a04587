"""Benchmark: how long a training process imports before its first batch, against torch alone
and against the same process with the packages it no longer imports.

Every `medsweep train` and every sweep trial's worker is a fresh interpreter. It imported
torchvision (for the ResNet baselines), medmnist (for its INFO table; its evaluator brings
scikit-learn) and SciPy (for one rank function): about 3 s on an idle CPU, more than a
smoke trial's epoch. Each arm below is a fresh ``python -c`` timed from spawn to exit, the arms
interleaved round by round so that they see the same load; best of the rounds (median in
brackets), since other processes can only make a run slower.

    .venv/bin/python -m benchmarks.bench_startup [--rounds 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINING = ("import trainables.medvit_trainable, medvit.train\n"
            "from medvit.data import dataset_info\nfrom medvit.models import create_model\n"
            "dataset_info('retinamnist'); create_model('medvit_28_tiny', in_chans=3, num_classes=5)")
ARMS = {
    "import torch (the floor)": "import torch",
    "a training process": TRAINING,
    "the same, with the packages it used to import": f"{TRAINING}\nimport torchvision, medmnist, scipy.stats",
}


def seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds: {args.rounds} is not a number of rounds; allowed: 1 or more")
    samples: dict[str, list[float]] = {name: [] for name in ARMS}
    for _ in range(args.rounds):
        for name, code in ARMS.items():
            samples[name].append(seconds(code))
    best = {name: min(times) for name, times in samples.items()}
    floor, before = best["import torch (the floor)"], best["the same, with the packages it used to import"]
    print(f"python {sys.version.split()[0]}, {args.rounds} round(s); fresh interpreter, spawn to exit; "
          "best (median)")
    print("| process | s | x torch alone | x the old imports |")
    print("|---|---|---|---|")
    for name, times in samples.items():
        median = sorted(times)[len(times) // 2]
        print(f"| {name} | {best[name]:.2f} ({median:.2f}) | {best[name] / floor:.2f}x | {best[name] / before:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
