"""What `medsweep ensemble` reads to choose its members: each trial's `selection.npz` against its
whole `state.pt` (how checkpoints written before the selection file are read), on the same
checkpoints, in the same run.

The trials are made, not trained: one Trainer of the given model saved into each trial folder
(with made-up validation probabilities, so every trial is a candidate), as `Trainer.save` writes a
sweep trial's checkpoint; the second sweep is a copy without the selection files. The table gives
the bytes a choice reads per trial (what a bucket sweep fetches) and the seconds of
`analysis.ensemble.sweep_candidates` over the sweep, fastest of the rounds, taking turns
(validation whole; 64 training images, which no checkpoint holds).

    .venv/bin/python -m benchmarks.bench_ensemble_choice [--model medvit_base] [--resize 224]
        [--trials 4] [--rounds 3] [--dataset retinamnist] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from analysis.ensemble import sweep_candidates
from medvit.checkpoint import CHECKPOINT_FILE, SELECTION_FILE
from medvit.config import build_config
from medvit.data import dataset_info, load_dataset, resolve_root
from medvit.train import Trainer

STATE = "experiment_state-2026-12-07_00-00-00.json"


def make_sweep(folder: Path, trainer: Trainer, trials: int) -> None:
    """A sweep folder of ``trials`` finished trials, each one checkpoint of ``trainer``."""
    folder.mkdir(parents=True)
    (folder / STATE).write_text(json.dumps({"trial_data": [], "runner_data": {}}))
    classes = dataset_info(trainer.config.dataset).num_classes
    for index in range(trials):
        trainer.best_val_scores = torch.softmax(torch.randn(len(trainer.labels["val"]), classes), 1)
        trainer.best_weights = trainer.model.state_dict()
        trial = folder / f"train_medvit_bench_{index:05d}_{index}"
        (trial / "checkpoint_000000").mkdir(parents=True)
        trainer.save(trial / "checkpoint_000000")
        (trial / "result.json").write_text(json.dumps({"trial_id": f"bench_{index:05d}", "epoch": 1}) + "\n")


def fastest_passes(sweeps: dict[str, Path], rounds: int, trials: int) -> dict[str, float]:
    """Fastest `sweep_candidates` pass over each sweep, the sweeps taking turns each round after
    an untimed one (the first pass pays lazy imports)."""
    best = dict.fromkeys(sweeps, float("inf"))
    for folder in sweeps.values():
        sweep_candidates(folder)
    for _ in range(rounds):
        for name, folder in sweeps.items():
            start = time.perf_counter()
            found = sweep_candidates(folder)
            best[name] = min(best[name], time.perf_counter() - start)
            if len(found) != trials:
                raise SystemExit(f"{folder}: {len(found)} candidates, expected {trials}")
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="medvit_base")
    parser.add_argument("--resize", type=int, default=224, help="0: the stored 28 px")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dataset", default="retinamnist")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    if min(args.trials, args.rounds) < 1:
        parser.error("--trials and --rounds: allowed values are integers >= 1")

    data = load_dataset(args.dataset, root=str(resolve_root(args.data_root))).with_train_subset(64, seed=0)
    config = build_config({"dataset": args.dataset, "model": args.model, "epochs": 1, "device": "cpu",
                           **({"resize": args.resize} if args.resize else {})})
    trainer = Trainer(config, data)
    with tempfile.TemporaryDirectory(prefix="medsweep-bench-ensemble-") as work:
        sweeps = {SELECTION_FILE: Path(work, "selection"), CHECKPOINT_FILE: Path(work, "state")}
        make_sweep(sweeps[SELECTION_FILE], trainer, args.trials)
        shutil.copytree(sweeps[SELECTION_FILE], sweeps[CHECKPOINT_FILE])
        for path in sweeps[CHECKPOINT_FILE].glob(f"*/checkpoint_*/{SELECTION_FILE}"):
            path.unlink()
        checkpoint = next(sweeps[SELECTION_FILE].glob("*/checkpoint_*"))
        sizes = {name: (checkpoint / name).stat().st_size for name in sweeps}
        seconds = fastest_passes(sweeps, args.rounds, args.trials)

    print(f"{args.dataset} ({len(data.labels['val'])} validation images), {args.model}"
          f"{f' at {args.resize} px' if args.resize else ''}, {args.trials} trials; fastest of {args.rounds} "
          f"passes of sweep_candidates, taking turns; torch {torch.__version__}\n")
    print("| chosen from | bytes read per trial | s per pass | ratio |")
    print("|---|---:|---:|---:|")
    for name in (CHECKPOINT_FILE, SELECTION_FILE):
        print(f"| {name} | {sizes[name]:,} | {seconds[name]:.4f} | "
              f"{seconds[CHECKPOINT_FILE] / seconds[name]:.1f}x |")


if __name__ == "__main__":
    main()
