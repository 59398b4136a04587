"""studies/recipe/run_arm.py's small-data options: the training split of `--subset N` with the
whole validation and test splits, and the validation metrics of the trained (not EMA) weights."""

from __future__ import annotations

import torch

from medvit.config import build_config
from medvit.train import Trainer
from studies.recipe import run_arm


def test_train_subset_trains_on_what_subset_draws_and_keeps_val_and_test_whole(retina_data):
    data = run_arm.train_subset(retina_data, 100, seed=3)
    drawn = retina_data.subset(100, seed=3)
    assert torch.equal(data.images["train"], drawn.images["train"])
    assert torch.equal(data.labels["train"], drawn.labels["train"])
    for split in ("val", "test"):
        assert torch.equal(data.images[split], retina_data.images[split])
        assert len(data.labels[split]) > 100
    assert run_arm.train_subset(retina_data, None, seed=3) is retina_data


def test_raw_val_metrics_are_the_trained_weights_and_leave_the_ema_in_place(retina_data):
    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "device": "cpu", "epochs": 1,
                           "batch_size": 16, "ema": 0.9})
    trainer = Trainer(config, run_arm.train_subset(retina_data.subset(64, seed=0), 64, seed=0))
    trainer.train_epoch()
    ema = trainer.ema
    raw = run_arm.raw_val_metrics(trainer)
    assert trainer.ema is ema
    ema_val, _ = trainer.evaluate("val")
    assert set(raw) == {f"raw_val_{k}" for k in ema_val}
    assert raw["raw_val_loss"] != ema_val["loss"]
    trainer.ema = None
    assert trainer.evaluate("val")[0]["loss"] == raw["raw_val_loss"]
