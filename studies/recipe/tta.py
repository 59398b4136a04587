"""Flip test-time augmentation against the plain prediction, paired, on every finished trial
of a sweep folder: the selected weights of each trial, tested with and without the views.

Research tool behind reports/recipe/README.md. Selection never sees these numbers (the
trials were selected on validation without views); this only measures what the views add.

    python -m studies.recipe.tta /tmp/sweeps/retinamnist-recipe
"""

from __future__ import annotations

import argparse
import statistics

import torch

from analysis.ensemble import sweep_candidates
from analysis.evaluate import load_checkpoint, load_eval_data
from medvit.metrics import decoded_metrics, evaluate, scores_from_logits
from medvit.tasks import ORDINAL
from medvit.train import Trainer
from studies import run_main

METRICS = ("acc", "auc", "qwk", "qwk_decoded")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("--data-root")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for candidate in sweep_candidates(args.sweep_dir):
        model, config = load_checkpoint(candidate.checkpoint)
        data = load_eval_data(config, args.data_root)
        trainer = Trainer(config.model_copy(update={"device": "cpu"}), data)
        trainer.eval_model.load_state_dict(model.state_dict())
        y_val, y_test = (data.labels[split].numpy() for split in ("val", "test"))
        plain_val = scores_from_logits(config.task, trainer.logits("val").cpu())
        plain_test = scores_from_logits(config.task, trainer.logits("test").cpu())
        row = {"trial": candidate.trial_id}
        for name, val_scores, test_scores in (("plain", plain_val, plain_test),
                                              ("flip", trainer.tta_scores("val"), trainer.tta_scores("test"))):
            metrics = evaluate(config.task, y_test, test_scores)
            if config.task == ORDINAL:
                metrics |= decoded_metrics(y_val, val_scores, y_test, test_scores)
            row |= {f"{name}_{k}": metrics[k] for k in METRICS if k in metrics}
        rows.append(row)
        print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    print(f"\n{len(rows)} trials of {args.sweep_dir}, test split; flip minus plain, mean ± std over trials:\n")
    print("| metric | plain | flip TTA | flip - plain | trials improved |")
    print("|---|---|---|---|---|")
    for k in METRICS:
        if f"plain_{k}" not in rows[0]:
            continue
        plain, flip = [r[f"plain_{k}"] for r in rows], [r[f"flip_{k}"] for r in rows]
        diff = [f - p for f, p in zip(flip, plain)]
        print(f"| {k} | {statistics.mean(plain):.3f} ± {statistics.stdev(plain):.3f} | "
              f"{statistics.mean(flip):.3f} ± {statistics.stdev(flip):.3f} | "
              f"{statistics.mean(diff):+.3f} ± {statistics.stdev(diff):.3f} | "
              f"{sum(d > 0 for d in diff)} of {len(diff)} |")


if __name__ == "__main__":
    run_main("tta.py", main)
