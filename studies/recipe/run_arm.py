"""Train one recipe arm over several seeds on real data, recording every epoch.

Research tool behind reports/recipe/README.md: besides what `medsweep train` records, it
evaluates the test split after every epoch so that selection rules can be compared after the
fact (how the epoch a rule picks on validation does on test). Those per-epoch test numbers
are never used to select anything.

    python -m studies.recipe.run_arm --arm b --seeds 0 1 2 3 4 --out reports/recipe/b.jsonl.gz
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import yaml

from medvit.config import build_config
from medvit.data import dataset_info
from medvit.metrics import best_decision_rule
from medvit.tasks import MULTI_LABEL
from medvit.train import Trainer, environment, load_data
from studies import run_main
from studies.recipe.records import open_text, record_line

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


def recomputed_bn_metrics(trainer: Trainer, splits: tuple[str, ...] = ("val", "test")) -> dict[str, float]:
    """Metrics of the evaluated weights with the BatchNorm statistics `bn_recompute` would give
    them, on ``splits``, as ``bn_<split>_*``; the running statistics are put back afterwards,
    so one run yields both readouts (recomputing draws no random numbers: training goes on
    as without it)."""
    model = trainer.eval_model
    saved = {name: buffer.clone() for name, buffer in model.named_buffers()}
    try:
        trainer.recompute_bn_stats()
        return {f"bn_{split}_{k}": v for split in splits for k, v in trainer.evaluate(split)[0].items()}
    finally:
        buffers = dict(model.named_buffers())
        for name, value in saved.items():
            buffers[name].copy_(value)


def record_run(config, data, label: str, raw_val: bool = False, bn_readout: bool = False, **extra) -> dict:
    """Train ``config`` on ``data``, evaluating the test split after every epoch with the ACC
    of the decision rule chosen on it too (``test_rule_acc``, :func:`medvit.metrics.best_decision_rule`;
    seconds an epoch on test splits of tens of thousands of images) and, when asked, the
    trained weights' validation metrics and the recomputed-BatchNorm readout: the JSON record
    that the summaries read."""
    start = time.perf_counter()
    trainer = Trainer(config, data)
    epochs = []
    for metrics in trainer.epochs():
        test, scores = trainer.evaluate("test")
        epochs.append({**metrics, **{f"test_{k}": v for k, v in test.items()}, **rule_on_test(trainer, scores),
                       **(raw_val_metrics(trainer) if raw_val else {}),
                       **(recomputed_bn_metrics(trainer) if bn_readout else {})})
    return finished_record(trainer, label, epochs, start, **extra)


def rule_on_test(trainer: Trainer, scores) -> dict:
    """``{"test_rule_acc": ...}``: the test ACC with the decision rule chosen on this epoch's test
    probabilities ``scores``, what choosing the epoch and the rule on test together would claim
    (summarize.py's "both"); empty for a task with no one rule (multi-label)."""
    rule = best_decision_rule(trainer.task, trainer.labels["test"].cpu().numpy(), scores)
    return {"test_rule_acc": rule["acc"]} if rule else {}


def finished_record(trainer: Trainer, label: str, epochs: list[dict], start: float, **extra) -> dict:
    """The record of a run whose epochs ``trainer`` has trained (``epochs`` with test_* metrics,
    ``start`` from ``time.perf_counter``): its selected result, its scores, where it ran."""
    result = trainer.finish()
    scores = {k: result.pop(k).tolist() for k in ("val_scores", "test_scores")}
    return {"arm": label, "seed": trainer.config.seed, **extra, "config": trainer.config.model_dump(),
            "result": result, "scores": scores, "epochs": epochs, "environment": environment(trainer.device),
            "wall_s": time.perf_counter() - start}


def predictions(scores: dict[str, list]) -> dict[str, list[int]]:
    """``{"val": [...], "test": [...]}``: each image's predicted class (the most probable) from a
    single-label record's ``scores``, as ``evaluate`` scores its ACC."""
    return {split: np.argmax(np.asarray(scores[f"{split}_scores"]), axis=1).tolist() for split in ("val", "test")}


def append_record(path: str, record: dict) -> None:
    with open_text(path, "a") as f:
        f.write(record_line(record))
    print(record["arm"], record["seed"], json.dumps(record["result"]["test"]), f"{record['wall_s']:.0f}s", flush=True)


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
    parser.add_argument("--predictions-only", action="store_true",
                        help="keep each run's predicted class per validation and test image (what resampling "
                             "the images needs) instead of its probabilities (about 85%% of a gzipped record, "
                             "which only seed ensembles and the decision rule chosen on test at the selected "
                             "epoch read): for studies of many runs, which the device carry must hold")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    label = args.label or args.arm
    torch.set_num_threads(args.threads)
    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.predictions_only and dataset_info(args.dataset).task == MULTI_LABEL:
        parser.error(f"--predictions-only: {args.dataset} is multi-label, with no one class an image; "
                     "allowed: a single-label dataset")
    for seed in args.seeds:
        config = build_config({"dataset": args.dataset, "model": "medvit_28_tiny", "device": "cpu",
                               **ARMS.get(args.arm, {}), **extra, "seed": seed})
        data = load_data(config).with_train_subset(args.train_images, seed)
        # the subset is no field of the config: the record says it, or it reads as a whole-data run
        subset = {"train_images": args.train_images} if args.train_images else {}
        record = record_run(config, data, label, raw_val=args.raw_val, **subset)
        if args.predictions_only:
            record["predictions"] = predictions(record.pop("scores"))
        append_record(args.out, record)


if __name__ == "__main__":
    run_main("run_arm.py", main)
