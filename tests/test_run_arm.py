"""studies/recipe/run_arm.py's small-data option: the validation metrics of the trained (not EMA)
weights (its training split of `--subset N` is `MedMNISTData.with_train_subset`, tested in test_data)."""

from __future__ import annotations

import torch

from medvit.config import build_config
from medvit.train import Trainer
from studies.recipe import run_arm


def test_raw_val_metrics_are_the_trained_weights_and_leave_the_ema_in_place(retina_data):
    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "device": "cpu", "epochs": 1,
                           "batch_size": 16, "ema": 0.9})
    trainer = Trainer(config, retina_data.subset(64, seed=0))
    trainer.train_epoch()
    ema = trainer.ema
    raw = run_arm.raw_val_metrics(trainer)
    assert trainer.ema is ema
    ema_val, _ = trainer.evaluate("val")
    assert set(raw) == {f"raw_val_{k}" for k in ema_val}
    assert raw["raw_val_loss"] != ema_val["loss"]
    trainer.ema = None
    assert trainer.evaluate("val")[0]["loss"] == raw["raw_val_loss"]


def test_small_data_table_reads_when_validation_leaves_the_majority_and_pairs_seeds():
    from studies.recipe import small_data

    epochs = [{"epoch": 1, "val_acc": 0.75, "raw_val_acc": 0.75}, {"epoch": 2, "val_acc": 0.75, "raw_val_acc": 0.9},
              {"epoch": 3, "val_acc": 0.8, "raw_val_acc": 0.9}]
    assert small_data.leaves_majority(epochs, "val_acc", 0.75) == "3"
    assert small_data.leaves_majority(epochs, "raw_val_acc", 0.75) == "2"
    assert small_data.leaves_majority(epochs[:2], "val_acc", 0.75) == "never"
    base = [{"seed": s, "result": {"test": {"acc": a}}} for s, a in ((0, 0.8), (1, 0.9))]
    arm = [{"seed": s, "result": {"test": {"acc": a}}} for s, a in ((1, 0.95), (0, 0.9), (7, 0.1))]
    assert small_data.paired(arm, base, "acc") == "0.075 +- 0.035"
    assert small_data.paired(base, base, "acc") == "-"
