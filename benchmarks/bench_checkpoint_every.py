"""What `checkpoint_every` buys a sweep trial whose checkpoint is large beside its epoch.

The paper specs' `medvit_base` writes a 680.5 MiB checkpoint; on a GPU an epoch of a small
dataset may take less time than writing it. This CPU cannot train that epoch at 224 px, so the
benchmark makes the same ratio here: the paper RetinaMNIST spec's `medvit_base` with its
checkpoint of the same size, on few images at a small `resize`, so that an epoch takes about as
long as a checkpoint. Each arm is one `medsweep sweep` of one trial (FIFO, the CLI in a fresh
process, as a user runs it) with `checkpoint_every` 1 (the baseline) or N; arms take turns
(the order rotates each round). Per arm, from the trial's own reports: the checkpoints it wrote,
Ray's time for the trial (`time_total_s`: epochs, checkpoints, reports), the epochs' own time
(training and validation) and what is left, per epoch; the best round of each, and the trial's
time as a ratio to every epoch's.

    .venv/bin/python -m benchmarks.bench_checkpoint_every [--every 1,10] [--epochs 20]
        [--subset 64] [--resize 32] [--rounds 2] [--data-root DIR]
    .venv/bin/python -m benchmarks.bench_checkpoint_every --quick     # medvit_28_tiny, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sweeps.spec import load_spec, spec_from_dict

BASE_SPEC = "paper/retinamnist"


def arm_spec(every: int, args: argparse.Namespace, storage: Path, name: str) -> str:
    """The paper RetinaMNIST spec as one CPU trial of ``args.model`` that checkpoints every
    ``every`` epochs."""
    data = load_spec(BASE_SPEC).to_dict()
    data["train"].update(epochs=args.epochs, subset=args.subset, batch_size=args.batch, resize=args.resize)
    data.update(name=name, storage=str(storage), checkpoint_every=every, num_samples=1, max_concurrent=1,
                search={"model": {"choice": [args.model]}}, searcher={"type": "random", "seed": 0},
                scheduler={"type": "fifo"}, resources={"cpu": 1, "gpu": 0})
    return spec_from_dict(data, f"{BASE_SPEC} (checkpoint_every {every})").to_yaml()


def run_arm(every: int, args: argparse.Namespace, work: Path, name: str) -> dict[str, float]:
    spec_file = work / f"{name}.yaml"
    spec_file.write_text(arm_spec(every, args, work, name))
    env = {**os.environ, "MEDMNIST_ROOT": args.data_root} if args.data_root else None
    done = subprocess.run([sys.executable, "-m", "medsweep", "sweep", str(spec_file)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = ((done.stderr or done.stdout).strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench_checkpoint_every: the sweep of checkpoint_every {every} failed "
                         f"(exit {done.returncode}): {last}")
    (result,) = (work / name).glob("*/result.json")
    reports = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
    epochs = sum(r["epoch_time_s"] for r in reports)
    return {"checkpoints": sum(bool(r.get("checkpoint_dir_name")) for r in reports),
            "trial_s": reports[-1]["time_total_s"], "epochs_s": epochs, "epochs": len(reports)}


def table(best: dict[int, dict[str, float]]) -> str:
    base = best[min(best)]["trial_s"]
    lines = ["| checkpoint_every | checkpoints | trial s (Ray) | epochs s | outside the epochs, s per epoch | "
             f"trial vs checkpoint_every {min(best)} |",
             "|---:|---:|---:|---:|---:|---:|"]
    for every, run in sorted(best.items()):
        outside = (run["trial_s"] - run["epochs_s"]) / run["epochs"]
        lines.append(f"| {every} | {run['checkpoints']} | {run['trial_s']:.1f} | {run['epochs_s']:.1f} | "
                     f"{outside:.2f} | {run['trial_s'] / base:.2f}x |")
    return "\n".join(lines)


def every_list(text: str) -> list[int]:
    values = text.split(",")
    if not all(v.isdigit() and int(v) >= 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers >= 1")
    return sorted({int(v) for v in values})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="medvit_28_tiny at 28 px, 4 epochs, every 1 and 2: seconds")
    parser.add_argument("--every", type=every_list, default=[1, 10], help="checkpoint_every of the arms; the "
                        "smallest is the baseline")
    parser.add_argument("--model", default="medvit_base")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--subset", type=int, default=64, help="images per split")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--resize", type=int, default=32, help="the side the model sees")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the arms; each arm's best is shown")
    parser.add_argument("--data-root", default=os.environ.get("MEDMNIST_ROOT"))
    args = parser.parse_args()
    if args.quick:
        args.model, args.resize, args.epochs, args.subset, args.every, args.rounds = "medvit_28_tiny", 28, 4, 32, [1, 2], 1
    best: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-every-") as work:
        for round_ in range(args.rounds):
            shift = round_ % len(args.every)
            for every in args.every[shift:] + args.every[:shift]:
                run = run_arm(every, args, Path(work), f"every-{every}-round-{round_ + 1}")
                print(f"round {round_ + 1}, checkpoint_every {every}: {run['checkpoints']} checkpoints, trial "
                      f"{run['trial_s']:.1f} s, epochs {run['epochs_s']:.1f} s", flush=True)
                if every not in best or run["trial_s"] < best[every]["trial_s"]:
                    best[every] = run
    print(f"\n{args.model} at {args.resize} px, {args.subset} images per split, batch {args.batch}, {args.epochs} "
          f"epochs, one CPU trial ({BASE_SPEC}'s recipe); best of {args.rounds} round(s); load average "
          f"{os.getloadavg()[0]:.1f} at the end\n")
    print(table(best))


if __name__ == "__main__":
    main()
