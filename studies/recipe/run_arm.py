"""Train one recipe arm over several seeds on real data, recording every epoch.

Research tool behind reports/recipe/README.md: besides what `medsweep train` records, it
evaluates the test split after every epoch so that selection rules can be compared after the
fact (how the epoch a rule picks on validation does on test). Those per-epoch test numbers
are never used to select anything.

    python -m studies.recipe.run_arm --arm b --seeds 0 1 2 3 4 --out reports/recipe/b.jsonl
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from medvit.config import build_config
from medvit.train import Trainer, load_data

# (a) the recipe before issue 8 (weight decay on norms and biases cannot be restored: it is gone
# for good); (b) the new defaults. Both the recommended CPU preset, medvit_28_tiny.
OLD = dict(augment="light", ema=0.0, label_smoothing=0.0, drop_path=0.0, warmup_epochs=0, grad_clip=0.0,
           select_window=1, epochs=50)
ARMS = {
    "a": OLD,
    "b": {},
}


def raw_val_metrics(trainer: Trainer) -> dict[str, float]:
    """Validation metrics of the weights being trained (the EMA's lag, measured); evaluation
    draws no random numbers, so training goes on as without it."""
    ema, trainer.ema = trainer.ema, None
    try:
        val, _ = trainer.evaluate("val")
    finally:
        trainer.ema = ema
    return {f"raw_val_{k}": v for k, v in val.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm", required=True, help="a (the old recipe), or any other name for the new defaults")
    parser.add_argument("--label", help="the arm's name in the records (default: --arm)")
    parser.add_argument("--dataset", default="retinamnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", nargs="*", default=[], help="extra field=value (YAML scalars)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-images", type=int,
                        help="train on the N images `--subset N` draws for the seed; validation and test stay whole")
    parser.add_argument("--raw-val", action="store_true",
                        help="also record each epoch's validation metrics of the trained weights, not the EMA's")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    label = args.label or args.arm
    torch.set_num_threads(args.threads)
    import yaml

    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    for seed in args.seeds:
        config = build_config({"dataset": args.dataset, "model": "medvit_28_tiny", "device": "cpu",
                               **ARMS.get(args.arm, {}), **extra, "seed": seed})
        start = time.time()
        trainer = Trainer(config, load_data(config).with_train_subset(args.train_images, seed))
        epochs = []
        for metrics in trainer.epochs():
            test, _ = trainer.evaluate("test")
            epochs.append({**metrics, **{f"test_{k}": v for k, v in test.items()},
                           **(raw_val_metrics(trainer) if args.raw_val else {})})
        result = trainer.finish()
        scores = {k: result.pop(k).tolist() for k in ("val_scores", "test_scores")}
        record = {"arm": label, "seed": seed, "config": config.model_dump(), "result": result, "scores": scores,
                  "epochs": epochs, "wall_s": time.time() - start}
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(label, seed, json.dumps(result["test"]), f"{time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
