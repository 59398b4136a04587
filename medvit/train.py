"""The one training loop: AdamW, warm-up + cosine, EMA weights, batched on-device augmentation.

The recipe for a 1,080-image training set (RetinaMNIST) where a single validation image is
0.8 % of accuracy: stochastic depth, label smoothing, a short linear warm-up, gradient-norm
clipping, optional mixup, no weight decay on norms and biases, and an exponential moving
average (EMA) of the weights, which is what is validated, selected, checkpointed and tested.

Selection is noise-robust: the epoch is picked on the select metric averaged over the last
``select_window`` epochs (its ``select_score``), not on one epoch's noisy value.

`Trainer` owns everything a run needs to continue after a restart (model, EMA, optimizer,
schedule, random state, best-so-far weights and validation scores), so the Ray trainable can
checkpoint it every epoch and resume from the next one. Selection uses the validation split
only; the test split is evaluated once, by `finish()`, with the weights of the selected epoch.
With ``audit_test`` on, the test split is also evaluated after every epoch, recorded under
``audit_test_*`` and summed up by `finish()` as what choosing the epoch on test would have
reported; no choice reads those numbers.
A non-finite training loss ends the run at once: the last epoch is marked ``diverged`` and
scores the worst possible value, so no searcher or ranking can prefer it.
"""

from __future__ import annotations

import copy
import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from medvit.augment import AugmentConfig, augment_batch, augment_config, for_dataset, tta_flips
from medvit.checkpoint import CHECKPOINT_FILE, Selection, write_selection
from medvit.config import TrainConfig
from medvit.data import MedMNISTData, dataset_info, load_dataset
from medvit.families import MEDVIT
from medvit.interrupt import raise_if_interrupted
from medvit.tasks import ORDINAL
from medvit.losses import loss_for_task
from medvit.metrics import best_decision_rule, decoded_metrics, evaluate, scores_from_logits
from medvit.models import MODELS, create_model
from medvit.selection import AUDIT_PREFIX, WORST_SCORE, audit_key, best_epoch as best_epoch_of, improves

EVAL_BATCH = 512
# torch.compile's mode per device. A 28 px model's step is a thousand small kernels: on an H100
# CUDA graphs ("reduce-overhead") trained MedViT-tiny 3.8x faster than eager, the default mode
# 1.15x (benchmarks/RESULTS.md, the GPU check's step (f)); the whole Trainer 2.2x on an H200
# (step (g)), after about 110 s of compiling a trial. CPUs have no CUDA graphs.
COMPILE_MODE = {"cuda": "reduce-overhead", "cpu": None}
# Channels-last on every device: it trains the MedViT-28 presets 1.3-1.4x faster on an AVX-512
# CPU too (one or two threads; resnet18_28 level), 1.05-1.25x on an AVX2 one, and on an H100 at
# batch 128 it was never slower than contiguous (up to 1.29x faster; tiny at batch 512 was 0.88x).
MEMORY_FORMAT = torch.channels_last
# Training images whose BatchNorm statistics `bn_recompute` measures before each validation.
BN_STATS_IMAGES = 2048


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but no CUDA GPU is visible")
    return torch.device(name)


def environment(device: torch.device) -> dict[str, str | int]:
    """Where a run ran, recorded beside its results. Training is chaotic: the same config and
    seed on another CPU (whose kernels sum in another order) or with another thread count
    differ from the first epoch's loss on and end up as far apart as two seeds (0.005-0.025
    test ACC on RetinaMNIST, reports/recipe/README.md), so only runs of one environment pair."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        cpuinfo = Path("/proc/cpuinfo")
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")] if cpuinfo.is_file() else []
        name = models[0] if models else platform.processor() or platform.machine()
    return {"torch": torch.__version__, "python": platform.python_version(), "device": name,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] to float [-1, 1], the MedMNIST benchmark's normalisation."""
    return images.float().div_(127.5).sub_(1.0)


def batch_inputs(
    images: torch.Tensor, index: torch.Tensor, augment: AugmentConfig | None, generator: torch.Generator | None
) -> torch.Tensor:
    """The model's input batch: the uint8 ``images`` at ``index``, augmented (when ``augment``
    is given), normalised, channels-last."""
    # index_select copies whole images; advanced indexing (images[index]) is 25x slower on a CPU
    batch = images.index_select(0, index)
    if augment is None:
        batch = normalise(batch)
    elif not augment.resamples:
        # sharp knobs move the uint8 pixels (a quarter of the bytes); AugMix is defined on them
        batch = normalise(augment_batch(batch, augment, generator))
    else:
        batch = augment_batch(normalise(batch), augment, generator)
    return batch.contiguous(memory_format=MEMORY_FORMAT)


class Trainer:
    def __init__(self, config: TrainConfig, data: MedMNISTData):
        self.config = config
        self.task = data.info.task
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.mix_rng = np.random.default_rng(config.seed)

        # Each split goes to the training device once; batches are drawn by index from there.
        self.images = {split: t.to(self.device) for split, t in data.images.items()}
        self.labels = {split: t.to(self.device) for split, t in data.labels.items()}

        model = build_model(config, data.info.channels, data.info.num_classes)
        self.model = model.to(self.device, memory_format=MEMORY_FORMAT)
        # The EMA copy is what is evaluated; without EMA it is the model itself.
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False) if config.ema > 0 else None
        self.ema_update = WeightEMA(self.ema, self.model) if self.ema is not None else None
        self.forward = torch.compile(self.model, mode=COMPILE_MODE[self.device.type]) if config.compile else self.model
        self.bf16 = config.precision == "bf16"
        self.loss_fn = loss_for_task(self.task, config.alpha, config.margin, config.label_smoothing)
        self.eval_loss_fn = evaluation_loss(config)
        self.augment = for_dataset(augment_config(config.augment), config.dataset)
        # Fused: one kernel for the whole update instead of a dozen multi-tensor passes (on one
        # CPU thread 2.2 ms a step against foreach's 6.3 for medvit_28_tiny).
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, config.weight_decay), lr=config.lr, weight_decay=config.weight_decay,
            fused=True,
        )
        self.steps_per_epoch = train_steps(len(self.labels["train"]), config.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(config.warmup_epochs * self.steps_per_epoch, config.epochs * self.steps_per_epoch)
        )

        self.epoch = 0
        self.step = 0
        self.diverged = False
        self.history: list[float] = []  # the select metric of every epoch, for the trailing mean
        self.best_epoch = 0
        self.best_value: float | None = None
        self.best_metrics: dict[str, float] = {}
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.best_val_scores: torch.Tensor | None = None  # (N_val, C), for ensembles
        self.audit: list[dict[str, float]] = []  # every epoch's test metrics, with audit_test on
        self.audit_scores: np.ndarray | None = None  # the latest audited epoch's test probabilities

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema if self.ema is not None else self.model

    # -- one epoch ---------------------------------------------------------------------

    def _batches(self, split: str, batch_size: int, shuffle: bool) -> list[torch.Tensor]:
        n = len(self.labels[split])
        order = (
            torch.randperm(n, generator=self.generator, device=self.device)
            if shuffle
            else torch.arange(n, device=self.device)
        )
        batches = list(order.split(batch_size))
        if shuffle and len(batches) != train_steps(n, batch_size):
            batches.pop()
        return batches

    def _inputs(self, split: str, index: torch.Tensor) -> torch.Tensor:
        augment = self.augment if split == "train" else None
        return batch_inputs(self.images[split], index, augment, self.generator)

    def _loss(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss; with mixup, the lambda-weighted sum of the losses for both labels
        of the mixed images (the Ordinal Loss has no soft-label form, so this is the one rule)."""
        if self.config.mixup > 0:
            lam = float(self.mix_rng.beta(self.config.mixup, self.config.mixup))
            perm = torch.randperm(len(target), generator=self.generator, device=self.device)
            inputs = lam * inputs + (1.0 - lam) * inputs[perm]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.forward(inputs).float()
        if self.config.mixup > 0:
            return lam * self.loss_fn(logits, target) + (1.0 - lam) * self.loss_fn(logits, target[perm])
        return self.loss_fn(logits, target)

    def train_epoch(self) -> float:
        self.model.train()
        # Summed on the device and read once per epoch: no host sync per step on a GPU.
        total = torch.zeros((), device=self.device)
        count = 0
        for index in self._batches("train", self.config.batch_size, shuffle=True):
            raise_if_interrupted()  # a Ctrl-C that an import swallowed (medvit/interrupt.py)
            target = self.labels["train"][index]
            loss = self._loss(self._inputs("train", index), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            if self.ema_update is not None:
                self.ema_update.update(ema_decay(self.config.ema, self.step))
            total += loss.detach() * len(index)
            count += len(index)
        return total.item() / count

    @torch.no_grad()
    def logits(self, split: str, flip: tuple[int, ...] = ()) -> torch.Tensor:
        """Logits of the evaluated weights on one split, in split order (of the images
        flipped along the dimensions `flip`, when given)."""
        model = self.eval_model.eval()
        logits = []
        for index in self._batches(split, EVAL_BATCH, shuffle=False):
            raise_if_interrupted()
            inputs = self._inputs(split, index)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits.append(model(inputs.flip(flip) if flip else inputs).float())
        return torch.cat(logits)

    def tta_scores(self, split: str) -> np.ndarray:
        """Scores (probabilities) on one split averaged over the flip test-time views."""
        views = [scores_from_logits(self.task, self.logits(split, flip).cpu())
                 for flip in tta_flips(self.config.dataset)]
        return np.mean(views, axis=0)

    def evaluate(self, split: str) -> tuple[dict[str, float], np.ndarray]:
        """Loss and MedMNIST metrics of the evaluated weights on one split, and its scores."""
        logits = self.logits(split)
        target = self.labels[split]
        scores = scores_from_logits(self.task, logits.cpu())
        metrics = {"loss": self.eval_loss_fn(logits, target).item()}
        metrics |= evaluate(self.task, target.cpu().numpy(), scores)
        return metrics, scores

    def epochs(self) -> Iterator[dict[str, float]]:
        """Train the remaining epochs, yielding each epoch's metrics (validation only; with
        ``audit_test`` also the test split's, as ``audit_test_*``, after the selection)."""
        metric = self.config.select_metric
        while self.epoch < self.config.epochs and not self.diverged:
            lr = self.optimizer.param_groups[0]["lr"]
            start = time.perf_counter()
            train_loss = self.train_epoch()
            train_time = time.perf_counter() - start
            self.epoch += 1
            self.diverged = not math.isfinite(train_loss)
            if self.config.bn_recompute:
                self.recompute_bn_stats()
            val, scores = self.evaluate("val")
            if self.diverged:
                score = WORST_SCORE[self.config.select_mode]
            else:
                self.history.append(val[metric.removeprefix("val_")])
                score = float(np.mean(self.history[-self.config.select_window:]))
                if improves(score, self.best_value, self.config.select_mode):
                    self.best_epoch = self.epoch
                    self.best_value = score
                    self.best_metrics = {f"val_{k}": v for k, v in val.items()}
                    self.best_weights = copy.deepcopy(self.eval_model.state_dict())
                    self.best_val_scores = torch.from_numpy(scores)
            audit = self._audit_epoch() if self.config.audit_test else {}
            yield {
                "epoch": self.epoch,
                "train_loss": train_loss if not self.diverged else None,
                "lr": lr,
                "epoch_time_s": time.perf_counter() - start,
                "images_per_s": len(self.labels["train"]) / train_time,
                **{f"val_{k}": v for k, v in val.items()},
                "select_score": score,
                "diverged": self.diverged,
                "best_epoch": self.best_epoch,
                # At the selected epoch, which moves as the scores come in: not a running best.
                "selected_score": self.best_value,
                f"selected_{metric}": self.best_metrics.get(metric),
                **audit,
            }

    def recompute_bn_stats(self) -> None:
        """Give the evaluated weights the BatchNorm statistics of (up to BN_STATS_IMAGES)
        unaugmented training images under those weights. Draws no random numbers and leaves
        training as it was: training reads batch statistics, never the running ones."""
        batches = self._batches("train", self.config.batch_size, shuffle=False)
        limit = max(1, BN_STATS_IMAGES // self.config.batch_size)
        inputs = (batch_inputs(self.images["train"], index, None, None) for index in batches[:limit])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            recompute_bn_stats(self.eval_model, inputs)

    def _audit_epoch(self) -> dict[str, float]:
        """This epoch's test metrics of the evaluated weights, for the audit only. Evaluation
        draws no random numbers, so training goes on exactly as without the audit."""
        test, self.audit_scores = self.evaluate("test")
        record = {f"{AUDIT_PREFIX}{k}": v for k, v in test.items()}
        self.audit.append(record)
        return record

    def test_selection_audit(self) -> dict:
        """What selecting the epoch on test would report, beside the validation-selected
        epoch's test metrics: the epoch with the best raw test value of the select metric's
        kind (test_acc for val_acc, ...), ties to the earliest. A diverged epoch is never a
        candidate, as it is never selected on validation."""
        key = audit_key(self.config.select_metric)
        candidates = self.audit[:len(self.audit) - 1] if self.diverged else self.audit
        _, best_epoch = best_epoch_of(((epoch, record.get(key)) for epoch, record in enumerate(candidates, 1)),
                                      self.config.select_mode) or (None, 0)

        def metrics_at(epoch: int) -> dict[str, float] | None:
            record = self.audit[epoch - 1] if epoch else None
            return {k.removeprefix(AUDIT_PREFIX): v for k, v in record.items()} if record else None

        return {
            "test_selected_on": key.removeprefix("audit_"),
            "val_selected_epoch": self.best_epoch,
            "val_selected": metrics_at(self.best_epoch),
            "test_selected_epoch": best_epoch,
            "test_selected": metrics_at(best_epoch),
        }

    def finish(self) -> dict:
        """Evaluate the test split once with the selected epoch's weights."""
        if self.best_weights is not None:
            self.eval_model.load_state_dict(self.best_weights)
        test, scores = self.evaluate("test")
        if self.task == ORDINAL and self.best_val_scores is not None:
            test |= decoded_metrics(self.labels["val"].cpu().numpy(), self.best_val_scores.numpy(),
                                    self.labels["test"].cpu().numpy(), scores)
        tta = self._tta_metrics() if self.config.tta == "flip" and self.best_weights is not None else {}
        audit = self.test_selection_audit() if self.config.audit_test else None
        # The other choice a paper can make on test: the decision rule (a binary task's threshold,
        # a multi-class task's class offsets; a multi-label task has none), at this epoch.
        rule = best_decision_rule(self.task, self.labels["test"].cpu().numpy(), scores) if audit is not None else None
        if rule is not None:
            audit["decision_on_test"] = rule
        return {
            "selected_epoch": self.best_epoch,
            "select_metric": self.config.select_metric,
            "select_score": self.best_value,
            "diverged": self.diverged,
            "val": {k.removeprefix("val_"): v for k, v in self.best_metrics.items()},
            "test": test,
            # The selected weights' probabilities, in split order: what seed ensembles average.
            "val_scores": self.best_val_scores.numpy() if self.best_val_scores is not None else None,
            "test_scores": scores,
            **tta,
            **({"audit": audit} if audit is not None else {}),
        }

    def _tta_metrics(self) -> dict[str, dict[str, float]]:
        """Validation and test metrics of the selected weights with flip test-time
        augmentation, reported beside the plain ones (selection never sees them)."""
        val_y, test_y = (self.labels[split].cpu().numpy() for split in ("val", "test"))
        val_scores, test_scores = self.tta_scores("val"), self.tta_scores("test")
        test = evaluate(self.task, test_y, test_scores)
        if self.task == ORDINAL:
            test |= decoded_metrics(val_y, val_scores, test_y, test_scores)
        return {"val_tta": evaluate(self.task, val_y, val_scores), "test_tta": test}

    # -- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "config": self.config.model_dump(),
            "epoch": self.epoch,
            "step": self.step,
            "diverged": self.diverged,
            "history": self.history,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "mix_rng": self.mix_rng.bit_generator.state,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "best_metrics": self.best_metrics,
            "best_weights": self.best_weights,
            "best_val_scores": self.best_val_scores,
            "audit": self.audit,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.mix_rng.bit_generator.state = state["mix_rng"]
        for key in ("epoch", "step", "diverged", "history", "best_epoch", "best_value", "best_metrics",
                    "best_weights", "best_val_scores"):
            setattr(self, key, state[key])
        self.audit = state.get("audit", [])  # checkpoints from before the audit hold none

    def save(self, directory: str | Path) -> Path:
        """The checkpoint's ``state.pt`` (returned) and, beside it, its selection file."""
        path = Path(directory) / CHECKPOINT_FILE
        torch.save(self.state_dict(), path)
        scores = self.best_val_scores.numpy() if self.best_val_scores is not None else None
        write_selection(directory, Selection(scores, self.diverged, self.config.model_dump(mode="json")))
        return path

    def restore(self, directory: str | Path) -> None:
        self.load_state_dict(load_state(directory, map_location=self.device))


def evaluation_loss(config: TrainConfig) -> torch.nn.Module:
    """The loss a run reports as ``val_loss`` (and may select on): the training loss without
    label smoothing."""
    return loss_for_task(config.task, config.alpha, config.margin)


def train_steps(n: int, batch_size: int) -> int:
    """Batches in a training epoch: a last batch of one image is dropped, because BatchNorm
    cannot train on a lone sample whose map is 1x1 (stock presets at 28 px)."""
    steps = math.ceil(n / batch_size)
    return steps - 1 if steps > 1 and n % batch_size == 1 else steps


def build_model(config: TrainConfig, in_chans: int, num_classes: int) -> torch.nn.Module:
    extra = {"drop_path": config.drop_path} if MODELS[config.model].family == MEDVIT else {}
    return create_model(config.model, in_chans=in_chans, num_classes=num_classes, img_size=config.img_size,
                        resize=config.resize, resize_mode=config.resize_mode, **extra)


def checkpoint_bytes(config: TrainConfig, in_chans: int, num_classes: int) -> int:
    """About what `Trainer.save` writes for `config` (within 2% below, measured): float32 copies
    of the model, of its EMA when there is one and of the selected epoch's weights, and AdamW's
    two moments. What a sweep's storage must hold per trial (Ray keeps each trial's last)."""
    model = build_model(config, in_chans, num_classes)
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    copies = 3 if config.ema > 0 else 2
    return 4 * (copies * (params + buffers) + 2 * params)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only: decaying norm scales and biases
    pulls them toward 0 and only hurts."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def recompute_bn_stats(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Set every BatchNorm layer's running statistics to the mean over ``batches`` of its batch
    statistics under the current weights (the rest of the model in eval mode: no stochastic
    depth). The running averages otherwise trail weights that move fast: on 546 training
    images (5 steps an epoch) they kept validation at the majority class for 15 epochs while
    the same weights with batch statistics scored 0.85-0.95 validation ACC
    (reports/recipe/README.md)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training, momenta = model.training, [m.momentum for m in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: every batch weighs the same
        norm.train()
    for inputs in batches:
        model(inputs)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor of each step: linear from 1/warmup to 1, then cosine to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def ema_decay(decay: float, step: int) -> float:
    """The EMA decay at an optimizer step: lower early on, so the average is not dominated by
    the random initial weights (a 1,080-image epoch is only 8 steps)."""
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightEMA:
    """ema <- decay * ema + (1 - decay) * model for float tensors; integer buffers copied.

    The two modules' tensors are paired once: gathering them from ``state_dict()`` at every
    step cost 2.1 ms of a 2.8 ms update (medvit_28_tiny, one CPU thread); the update itself is
    two multi-tensor ops. ``load_state_dict`` copies in place, so the pairs stay valid."""

    def __init__(self, ema: torch.nn.Module, model: torch.nn.Module):
        pairs = list(zip(ema.state_dict().values(), model.state_dict().values()))
        self.floats = [list(t) for t in zip(*[(e, m) for e, m in pairs if e.dtype.is_floating_point])]
        self.others = [list(t) for t in zip(*[(e, m) for e, m in pairs if not e.dtype.is_floating_point])]

    @torch.no_grad()
    def update(self, decay: float) -> None:
        torch._foreach_lerp_(*self.floats, 1.0 - decay)
        if self.others:
            torch._foreach_copy_(*self.others)


def load_state(directory: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no {CHECKPOINT_FILE} in {directory}")
    # Tensors, numbers and strings only: never unpickle code from a checkpoint.
    return torch.load(path, map_location=map_location, weights_only=True)


def load_checkpoint_model(directory: str | Path) -> tuple[torch.nn.Module, TrainConfig]:
    """The selected-epoch model of a checkpoint folder and the config that trained it."""
    return model_from_state(load_state(directory))


def model_from_state(state: dict) -> tuple[torch.nn.Module, TrainConfig]:
    """The selected-epoch model of a checkpoint's state and the config that trained it."""
    config = TrainConfig(**state["config"])
    info = dataset_info(config.dataset)
    model = build_model(config, info.channels, info.num_classes)
    model.load_state_dict(state["best_weights"] or state["ema"] or state["model"])
    return model.eval(), config


def run_data(config: TrainConfig, data: MedMNISTData) -> MedMNISTData:
    """The part of ``data`` (the run's dataset at its size) a run trains and evaluates on: at
    most ``config.subset`` images per split, drawn with the run's seed, when it sets one."""
    return data if config.subset is None else data.subset(config.subset, seed=config.seed)


def load_data(config: TrainConfig, root: str | Path | None = None) -> MedMNISTData:
    """The data a run trains on, read from ``root`` (default: the config's ``data_root``)."""
    return run_data(config, load_dataset(config.dataset, root=root or config.data_root, size=config.img_size))


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
        "environment": environment(trainer.device),
        "wall_time_s": time.perf_counter() - start,
        "images_per_s": float(np.mean([m["images_per_s"] for m in history])),
    }
