"""The one training loop: AdamW, cosine schedule, batched on-device augmentation.

`Trainer` owns everything a run needs to continue after a restart (model, optimizer,
scheduler, random state, best-so-far weights), so the Ray trainable can checkpoint it
every epoch and resume from the next one. Selection uses the validation split only; the
test split is evaluated once, by `finish()`, with the weights of the selected epoch.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from medvit.augment import augment_batch, augment_config
from medvit.config import TrainConfig
from medvit.data import MedMNISTData, dataset_info, load_dataset
from medvit.losses import loss_for_task
from medvit.metrics import evaluate, scores_from_logits
from medvit.models import create_model

EVAL_BATCH = 512
CHECKPOINT_FILE = "state.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but no CUDA GPU is visible")
    return torch.device(name)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] to float [-1, 1], the MedMNIST benchmark's normalisation."""
    return images.float().div_(127.5).sub_(1.0)


class Trainer:
    def __init__(self, config: TrainConfig, data: MedMNISTData):
        self.config = config
        self.task = data.info.task
        self.device = resolve_device(config.device)
        self.on_gpu = self.device.type == "cuda"
        torch.manual_seed(config.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)

        # Each split goes to the training device once; batches are drawn by index from there.
        self.images = {split: t.to(self.device) for split, t in data.images.items()}
        self.labels = {split: t.to(self.device) for split, t in data.labels.items()}

        self.model = create_model(
            config.model,
            in_chans=data.info.channels,
            num_classes=data.info.num_classes,
            img_size=config.img_size,
        ).to(self.device)
        self.memory_format = torch.channels_last if self.on_gpu else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.loss_fn = loss_for_task(self.task, config.alpha, config.margin)
        self.augment = augment_config(config.augment)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs)

        self.epoch = 0
        self.best_epoch = 0
        self.best_value: float | None = None
        self.best_metrics: dict[str, float] = {}
        self.best_weights: dict[str, torch.Tensor] | None = None

    # -- one epoch ---------------------------------------------------------------------

    def _batches(self, split: str, batch_size: int, shuffle: bool) -> Iterator[torch.Tensor]:
        n = len(self.labels[split])
        order = (
            torch.randperm(n, generator=self.generator, device=self.device)
            if shuffle
            else torch.arange(n, device=self.device)
        )
        batches = list(order.split(batch_size))
        # BatchNorm cannot train on a lone sample whose map is 1x1 (stock presets at 28 px).
        if shuffle and len(batches) > 1 and len(batches[-1]) == 1:
            batches.pop()
        yield from batches

    def _inputs(self, split: str, index: torch.Tensor) -> torch.Tensor:
        images = normalise(self.images[split][index])
        if split == "train":
            images = augment_batch(images, self.augment, self.generator)
        return images.contiguous(memory_format=self.memory_format)

    def train_epoch(self) -> float:
        self.model.train()
        total, count = 0.0, 0
        for index in self._batches("train", self.config.batch_size, shuffle=True):
            inputs = self._inputs("train", index)
            target = self.labels["train"][index]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.on_gpu):
                logits = self.model(inputs)
            loss = self.loss_fn(logits.float(), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(index)
            count += len(index)
        self.scheduler.step()
        return total / count

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """Loss and MedMNIST metrics of the current weights on one split."""
        self.model.eval()
        logits = []
        for index in self._batches(split, EVAL_BATCH, shuffle=False):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.on_gpu):
                logits.append(self.model(self._inputs(split, index)).float())
        logits = torch.cat(logits)
        target = self.labels[split]
        metrics = {"loss": self.loss_fn(logits, target).item()}
        metrics |= evaluate(self.task, target.cpu().numpy(), scores_from_logits(self.task, logits.cpu()))
        return metrics

    def _is_better(self, value: float) -> bool:
        if self.best_value is None or math.isnan(self.best_value):
            return not math.isnan(value)
        if self.config.select_mode == "max":
            return value > self.best_value
        return value < self.best_value

    def epochs(self) -> Iterator[dict[str, float]]:
        """Train the remaining epochs, yielding each epoch's metrics (validation only)."""
        while self.epoch < self.config.epochs:
            lr = self.optimizer.param_groups[0]["lr"]
            start = time.perf_counter()
            train_loss = self.train_epoch()
            train_time = time.perf_counter() - start
            val = self.evaluate("val")
            self.epoch += 1
            metric = self.config.select_metric
            value = val[metric.removeprefix("val_")]
            if self._is_better(value):
                self.best_epoch = self.epoch
                self.best_value = value
                self.best_metrics = {f"val_{k}": v for k, v in val.items()}
                self.best_weights = copy.deepcopy(self.model.state_dict())
            yield {
                "epoch": self.epoch,
                "train_loss": train_loss,
                "lr": lr,
                "epoch_time_s": time.perf_counter() - start,
                "images_per_s": len(self.labels["train"]) / train_time,
                **{f"val_{k}": v for k, v in val.items()},
                "best_epoch": self.best_epoch,
                f"best_{metric}": self.best_value,
            }

    def finish(self) -> dict:
        """Evaluate the test split once with the selected epoch's weights."""
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        test = self.evaluate("test")
        return {
            "selected_epoch": self.best_epoch,
            "select_metric": self.config.select_metric,
            "val": {k.removeprefix("val_"): v for k, v in self.best_metrics.items()},
            "test": test,
        }

    # -- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "config": self.config.model_dump(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "best_metrics": self.best_metrics,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch = state["epoch"]
        self.best_epoch = state["best_epoch"]
        self.best_value = state["best_value"]
        self.best_metrics = state["best_metrics"]
        self.best_weights = state["best_weights"]

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CHECKPOINT_FILE
        torch.save(self.state_dict(), path)
        return path

    def restore(self, directory: str | Path) -> None:
        self.load_state_dict(torch.load(Path(directory) / CHECKPOINT_FILE, map_location=self.device))


def load_checkpoint_model(directory: str | Path) -> tuple[torch.nn.Module, TrainConfig]:
    """The selected-epoch model of a checkpoint folder and the config that trained it."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no {CHECKPOINT_FILE} in {directory}")
    state = torch.load(path, map_location="cpu")
    config = TrainConfig(**state["config"])
    info = dataset_info(config.dataset)
    model = create_model(config.model, in_chans=info.channels, num_classes=info.num_classes, img_size=config.img_size)
    model.load_state_dict(state["best_weights"] or state["model"])
    return model.eval(), config


def load_data(config: TrainConfig) -> MedMNISTData:
    data = load_dataset(config.dataset, root=config.data_root, size=config.img_size)
    if config.subset is not None:
        data = data.subset(config.subset, seed=config.seed)
    return data


def train(
    config: TrainConfig,
    data: MedMNISTData | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> dict:
    """Train one config to the end and return the selected epoch's val and test metrics."""
    start = time.perf_counter()
    trainer = Trainer(config, data if data is not None else load_data(config))
    history = []
    for metrics in trainer.epochs():
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
    result = trainer.finish()
    return {
        **result,
        "config": config.model_dump(),
        "history": history,
        "wall_time_s": time.perf_counter() - start,
        "images_per_s": float(np.mean([m["images_per_s"] for m in history])),
    }
