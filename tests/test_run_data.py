"""medvit.train.run_data: the one place a run's `subset` is applied; training, the Ray
trainable, evaluation and confirm all read the same images."""

from __future__ import annotations

import torch

from medvit.config import build_config
from medvit.data import load_dataset
from medvit.train import load_data, run_data


def test_training_and_evaluation_read_the_same_subset(real_root):
    from analysis.evaluate import load_eval_data

    config = build_config({"dataset": "retinamnist", "subset": 20, "seed": 3, "data_root": str(real_root)})
    trained, evaluated = load_data(config), load_eval_data(config)
    full = load_dataset("retinamnist", root=real_root)
    for split in ("train", "val", "test"):
        assert len(trained.labels[split]) == 20 < len(full.labels[split])
        assert torch.equal(trained.images[split], evaluated.images[split])
        assert torch.equal(run_data(config, full).images[split], trained.images[split])
    assert run_data(config.model_copy(update={"subset": None}), full) is full
