"""How many checkpoints a sweep trial writes under each `checkpoint_every`, from recorded runs.

    python -m studies.recipe.checkpoint_count reports/recipe/*.jsonl.gz [--every 1 5 10 1000]

A trial checkpoints every N-th epoch, its last, and each epoch that becomes its selected one
(`trainables.medvit_trainable.checkpoint_due`); how often the selected epoch moves depends on the
recipe (a 5-epoch trailing mean moves it more often than the best single epoch). The records of
run_arm.py hold every epoch's selected epoch, so this replays the rule over real runs: per
dataset, epoch budget and selection window, the checkpoints per run (mean, min-max) under each N.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np

from studies import run_main
from studies.recipe.records import read_records, record_paths
from trainables.medvit_trainable import checkpoint_due

EVERY = (1, 5, 10, 1000)  # 1000, above any run's epochs: only the last and the newly selected


def checkpoints(epochs: list[dict], every: int) -> int:
    """Checkpoints one recorded run would have written."""
    return sum(checkpoint_due(epoch, every, len(epochs)) for epoch in epochs)


def main(paths: list[str], every: tuple[int, ...] = EVERY) -> None:
    runs = defaultdict(list)
    for record in read_records(paths):
        epochs = record.get("epochs") or []
        if epochs and "best_epoch" in epochs[0]:
            config = record["config"]
            runs[config["dataset"], len(epochs), config.get("select_window")].append(epochs)
    print("| dataset | epochs | select_window | runs | " + " | ".join(f"every {n}" for n in every) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(every))
    for (dataset, length, window), group in sorted(runs.items()):
        cells = []
        for n in every:
            counts = np.array([checkpoints(epochs, n) for epochs in group])
            cells.append(f"{counts.mean():.1f} ({counts.min()}-{counts.max()})")
        print(f"| {dataset} | {length} | {window} | {len(group)} | " + " | ".join(cells) + " |")
    print("\nCheckpoints per run: mean (min-max). N above a run's epochs leaves its last epoch and each newly "
          "selected one.")


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number >= 1, got {text!r}")
    return int(text)


def parse_args(argv: list[str]) -> tuple[list[str], tuple[int, ...]]:
    parser = argparse.ArgumentParser(prog="checkpoint_count.py", description="Checkpoints per run under each "
                                     "checkpoint_every, replayed over run_arm.py's records.")
    parser.add_argument("--every", type=positive, nargs="+", default=list(EVERY), help="values of checkpoint_every")
    args = record_paths(parser, argv)
    return args.records, tuple(args.every)


if __name__ == "__main__":
    run_main("checkpoint_count.py", main, *parse_args(sys.argv[1:]))
