"""Training throughput of the 28 px models on CPU (forward + backward + AdamW step).

    .venv/bin/python -m benchmarks.bench_models [--batch 128] [--steps 5] [--rounds 3] [--models a,b]

Inputs are random 3-channel 28 px images with 5 classes (RetinaMNIST's shape), in the
Trainer's memory layout (channels-last); torch uses one thread per core. The models take
turns, ``steps`` timed steps each per round, and each reports its best round, so that a noisy
neighbour on a shared machine skews the ratios (all against resnet18_28, measured in the same
run) as little as possible.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from medvit.models import count_parameters, create_model
from medvit.train import MEMORY_FORMAT

# resnet50_28 is ~5x slower than resnet18_28 here; add it with --models when wanted
DEFAULT_MODELS = ("medvit_28_tiny", "medvit_28_small", "medvit_28_base", "resnet18_28")
BASELINE = "resnet18_28"


class TrainStep:
    def __init__(self, name: str, batch: int):
        torch.manual_seed(0)
        model = create_model(name, in_chans=3, num_classes=5, img_size=28)
        self.model = model.to(memory_format=MEMORY_FORMAT).train()  # the layout the Trainer trains in
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.x = torch.randn(batch, 3, 28, 28).contiguous(memory_format=MEMORY_FORMAT)
        self.y = torch.randint(0, 5, (batch,))

    def __call__(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(self.x), self.y).backward()
        self.opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    names = args.models.split(",")
    if BASELINE not in names:
        names.append(BASELINE)
    steps = {name: TrainStep(name, args.batch) for name in names}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    best = dict.fromkeys(names, 0.0)
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            best[name] = max(best[name], args.batch * args.steps / (time.perf_counter() - start))

    base = best[BASELINE]
    print(f"CPU, {torch.get_num_threads()} threads, batch {args.batch}, 28 px, "
          f"best of {args.rounds} rounds x {args.steps} steps")
    print(f"{'model':<18}{'params (M)':>11}{'images/s':>11}{'vs ' + BASELINE:>17}")
    for name in names:
        params = count_parameters(steps[name].model)
        print(f"{name:<18}{params / 1e6:>11.2f}{best[name]:>11.0f}{best[name] / base:>17.2f}")


if __name__ == "__main__":
    main()
