"""Why validation sits at the majority class early in a 546-image run: the trained weights
(seed 0, today's defaults, medvit_28_tiny, PneumoniaMNIST) evaluated each epoch with their
BatchNorm running statistics (what validation uses) and with batch statistics (BatchNorm in
training mode over validation batches of 128, the rest in eval mode), and on the training
images (unaugmented) with running statistics. Output: reports/recipe/bn-diagnostic.txt.

    python -m studies.recipe.bn_diagnostic > reports/recipe/bn-diagnostic.txt
"""

from __future__ import annotations

import copy

import torch

from medvit.config import build_config
from medvit.metrics import evaluate, scores_from_logits
from medvit.train import Trainer, batch_inputs, load_data
from studies import run_main

EPOCHS_SHOWN = 12


def metrics(trainer: Trainer, model: torch.nn.Module, split: str, bn_batch_stats: bool) -> tuple:
    """(ACC, AUC, mean predicted probability of the positive class) of ``model`` on ``split``."""
    model = copy.deepcopy(model).eval()
    if bn_batch_stats:
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.train()
    with torch.no_grad():
        logits = torch.cat([model(batch_inputs(trainer.images[split], i, None, None))  # never augmented
                            for i in trainer._batches(split, 128, shuffle=False)])
    scores = scores_from_logits(trainer.task, logits)
    result = evaluate(trainer.task, trainer.labels[split].numpy(), scores)
    return round(result["acc"], 3), round(result["auc"], 3), round(float(scores[:, 1].mean()), 3)


def main() -> None:
    torch.set_num_threads(1)
    config = build_config({"dataset": "pneumoniamnist", "model": "medvit_28_tiny", "device": "cpu", "seed": 0})
    trainer = Trainer(config, load_data(config).with_train_subset(546, 0))
    print("epoch step train_loss | val (ACC, AUC, mean p) running stats | val batch stats | train running stats")
    for epoch in range(EPOCHS_SHOWN):
        loss = trainer.train_epoch()
        print(epoch + 1, trainer.step, round(loss, 3),
              "|", metrics(trainer, trainer.model, "val", False), "|", metrics(trainer, trainer.model, "val", True),
              "|", metrics(trainer, trainer.model, "train", False), flush=True)


if __name__ == "__main__":
    run_main("bn_diagnostic.py", main)
