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
from collections.abc import Callable
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


def rounds_argument(description: str, argv: list[str] | None, default: int) -> int:
    """--rounds from the command line: how many times each arm runs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=default)
    rounds = parser.parse_args(argv).rounds
    if rounds < 1:
        parser.error(f"--rounds: {rounds} is not a number of rounds; allowed: 1 or more")
    return rounds


def interleaved(arms: dict[str, str], timed: Callable[[str], float], rounds: int) -> dict[str, list[float]]:
    """Each arm's seconds per round, the arms taken in turn within a round so that they see the same load."""
    samples: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, code in arms.items():
            samples[name].append(timed(code))
    return samples


def best_and_median(times: list[float]) -> str:
    return f"{min(times):.2f} ({sorted(times)[len(times) // 2]:.2f})"


def main(argv: list[str] | None = None) -> int:
    rounds = rounds_argument(__doc__.splitlines()[0], argv, default=5)
    samples = interleaved(ARMS, seconds, rounds)
    best = {name: min(times) for name, times in samples.items()}
    floor, before = best["import torch (the floor)"], best["the same, with the packages it used to import"]
    print(f"python {sys.version.split()[0]}, {rounds} round(s); fresh interpreter, spawn to exit; best (median)")
    print("| process | s | x torch alone | x the old imports |")
    print("|---|---|---|---|")
    for name, times in samples.items():
        print(f"| {name} | {best_and_median(times)} | {best[name] / floor:.2f}x | {best[name] / before:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
