"""What `bn_recompute` costs: whole epochs (training, the recomputation, validation) with it off
and on, the same Trainer config otherwise, in the same run.

`bn_recompute` adds one forward pass in training mode over up to ``BN_STATS_IMAGES`` unaugmented
training images before each validation. Its cost relative to an epoch therefore falls as the
training set grows past that cap: the table gives the seconds it adds and the ratio per
training-set size. The two Trainers take turns, one epoch each per round (the order rotating,
as in bench_epoch), and each keeps its fastest epoch, so that a busy neighbour on a shared
machine skews the ratio as little as possible (time it alone all the same: see the README's
note on two cores).

    .venv/bin/python -m benchmarks.bench_bn_recompute [--dataset pneumoniamnist]
        [--sizes 546,1080,4708] [--model medvit_28_tiny] [--batch 128] [--rounds 3]
        [--device cpu|cuda] [--data-root DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import os

import torch

from benchmarks.bench_epoch import best_of_rounds
from medvit.config import build_config
from medvit.data import load_dataset, resolve_root
from medvit.train import BN_STATS_IMAGES, Trainer


def epoch_seconds(config, data, rounds: int) -> dict[bool, float]:
    """Fastest whole epoch (``epoch_time_s``: training, recomputation, validation) of the
    Trainer with ``bn_recompute`` off and on, taking turns for ``rounds`` epochs each
    (bench_epoch's rounds, on epochs per second)."""
    epochs = {on: Trainer(build_config(config | {"bn_recompute": on, "epochs": rounds}), data).epochs()
              for on in (False, True)}
    rates = best_of_rounds({on: lambda run=run: 1.0 / next(run)["epoch_time_s"] for on, run in epochs.items()},
                           rounds)
    return {on: 1.0 / rate for on, rate in rates.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pneumoniamnist")
    parser.add_argument("--sizes", default="546,1080,4708",
                        help="training-set sizes, comma-separated: the images --subset N draws with seed 0 "
                             "(the whole split where N is not smaller); validation stays whole")
    parser.add_argument("--model", default="medvit_28_tiny")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="epochs per setting, interleaved; the fastest counts")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's, one per core)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes: {args.sizes!r} is not a comma-separated list of image counts")
    if min(sizes) < 1 or args.rounds < 1:
        parser.error("--sizes and --rounds: allowed values are integers >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    root = str(resolve_root(args.data_root))
    full = load_dataset(args.dataset, root=root)
    config = {"dataset": args.dataset, "model": args.model, "batch_size": args.batch,
              "device": args.device, "data_root": root}
    print(f"{args.dataset}, {args.model}, batch {args.batch}, device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"statistics of up to {BN_STATS_IMAGES:,} training images; fastest of {args.rounds} epochs\n")
    print("| training images | validation images | epoch, off (s) | epoch, bn_recompute (s) | added (s) | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        data = full.with_train_subset(size, seed=0)
        seconds = epoch_seconds(config, data, args.rounds)
        print(f"| {len(data.labels['train']):,} | {len(data.labels['val']):,} | {seconds[False]:.2f} | "
              f"{seconds[True]:.2f} | {seconds[True] - seconds[False]:+.2f} | {seconds[True] / seconds[False]:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
