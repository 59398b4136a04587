"""`bn_recompute`: the evaluated weights get the BatchNorm statistics of the training images
before each validation, and training itself is untouched."""

from __future__ import annotations

import torch

from medvit.config import build_config
from medvit.train import Trainer, recompute_bn_stats


def test_running_statistics_become_the_mean_of_the_batches_statistics():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5))
    model.train()
    batches = [torch.randn(8, 1, 6, 6) * 3 + 2 for _ in range(3)]
    recompute_bn_stats(model, batches)
    norm = model[1]
    with torch.no_grad():
        features = [model[0](batch) for batch in batches]
    expected_mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    expected_var = torch.stack([f.transpose(0, 1).flatten(1).var(dim=1) for f in features]).mean(0)
    torch.testing.assert_close(norm.running_mean, expected_mean)
    torch.testing.assert_close(norm.running_var, expected_var)
    assert norm.momentum == 0.1 and model.training and model[2].training and norm.training
    model.eval()
    recompute_bn_stats(model, batches[:1])
    assert not model.training and not norm.training


def tiny_trainer(data, bn_recompute: bool) -> Trainer:
    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "device": "cpu", "epochs": 2,
                           "batch_size": 16, "subset": 48, "bn_recompute": bn_recompute})
    return Trainer(config, data.subset(48, seed=0))


def test_recompute_leaves_training_alone_and_measures_the_evaluated_weights(retina_data):
    # One after the other: a Trainer seeds torch's global generator, which stochastic depth draws from.
    plain = tiny_trainer(retina_data, False)
    plain_epochs = list(plain.epochs())
    recomputed = tiny_trainer(retina_data, True)
    recomputed_epochs = list(recomputed.epochs())
    assert [e["train_loss"] for e in plain_epochs] == [e["train_loss"] for e in recomputed_epochs]
    assert [e["val_loss"] for e in plain_epochs] != [e["val_loss"] for e in recomputed_epochs]
    ema_norm = next(m for m in recomputed.ema.modules() if isinstance(m, torch.nn.BatchNorm2d))
    measured = ema_norm.running_mean.clone()
    recomputed.recompute_bn_stats()  # the same weights and images: the same statistics
    torch.testing.assert_close(ema_norm.running_mean, measured)
    assert not torch.allclose(measured, next(m for m in plain.ema.modules()
                                             if isinstance(m, torch.nn.BatchNorm2d)).running_mean)
