"""Whole training epochs, images/s: medsweep's Trainer against the usual MedMNIST loop, same run.

The usual loop is what the MedMNIST getting-started code does: the ``medmnist`` dataset class
(``medmnist.RetinaMNIST(split="train", root=..., download=False)``) with torchvision transforms
on each PIL image (``RandomAffine`` / ``RandomCrop(padding)`` / flips of the same kinds and
strengths as the augment preset, then ``ToTensor`` and ``Normalize(0.5, 0.5)``), a
``DataLoader`` (shuffled, 0 or 2 workers, pinned memory on a GPU) and a plain fp32 step that
reads ``loss.item()``. medsweep's path is ``medvit.train.Trainer``: each split on the device
once, batches drawn by index, one ``augment_batch`` call per batch, channels-last, fp32
unless the config's ``precision`` says bf16. Same model, batch, optimizer and training images
on both sides.

Two tables: whole epochs (train step included) per model, and the input pipeline alone (images
to a ready augmented batch on the training device). Methods take turns, one epoch each per
round; each reports its best round, so a busy neighbour on a shared machine skews the ratios
as little as possible. The last line is the one to quote:
``speedup vs usual loop: N.NNx (epoch), N.NNx (pipeline)``, both against the best DataLoader
setting, the epoch figure for the first model (the recommended preset) with the Trainer's
default recipe. A second Trainer row runs the plain step the usual loop runs; ``--compile``
adds a third, the Trainer with ``compile: true``.

    .venv/bin/python benchmarks/bench_epoch.py [--models medvit_28_tiny,resnet18_28]
        [--dataset retinamnist] [--batch 128] [--rounds 2] [--workers 0,2] [--subset N]
        [--augment PRESET] [--device cpu|cuda] [--data-root DIR] [--threads N] [--compile]

On a CPU shared with other busy processes, compare ``--threads 1``: OpenMP threads that wait
for a busy core make small ops many times slower, on both sides alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import medmnist
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import transforms as T

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the GPU check runs this file from a plain checkout

from medvit.augment import AugmentConfig, augment_config  # noqa: E402
from medvit.config import TrainConfig, build_config  # noqa: E402
from medvit.data import dataset_info, load_dataset, resolve_root  # noqa: E402
from medvit.losses import loss_for_task  # noqa: E402
from medvit.models import create_model  # noqa: E402
from medvit.train import Trainer, batch_inputs  # noqa: E402

DEFAULT_MODELS = ("medvit_28_tiny", "resnet18_28")
OURS = "medsweep Trainer"
# The Trainer's recipe does more per step than a plain loop (EMA of the weights, gradient
# clipping, stochastic depth, label smoothing); this row switches those off, so that the gap
# between the two rows is the recipe's cost and the gap to the usual loop is the input path's.
PLAIN_RECIPE = {"ema": 0.0, "grad_clip": 0.0, "drop_path": 0.0, "label_smoothing": 0.0}
OURS_PLAIN = "medsweep Trainer, plain step (no EMA, clipping, drop-path, smoothing)"
OURS_COMPILED = "medsweep Trainer, compile: true (its first epoch compiles)"


def _rot90(p: float) -> T.RandomApply:
    quarter_turns = [T.RandomRotation((angle, angle)) for angle in (90, 180, 270)]
    return T.RandomApply([T.RandomChoice(quarter_turns)], p=p)


def usual_transform(cfg: AugmentConfig, channels: int) -> T.Compose:
    """torchvision transforms of the same kinds and strengths as ``cfg``, on PIL images.

    RandomAffine draws its rotation, shift (as a fraction of the side) and zoom uniformly in
    the same ranges as ``augment_batch``; integer shifts are the usual RandomCrop with padding.
    """
    steps: list = []
    if cfg.augmix:  # torchvision's AugMix on the PIL image, as the official MedViT notebook runs it
        steps.append(T.AugMix(severity=int(cfg.augmix)))
    if cfg.rotation or cfg.crop or cfg.scale:
        steps.append(T.RandomAffine(
            degrees=cfg.rotation,
            translate=(cfg.crop, cfg.crop) if cfg.crop else None,
            scale=(1 - cfg.scale, 1 + cfg.scale) if cfg.scale else None,
            interpolation=T.InterpolationMode.BILINEAR,
        ))
    if cfg.shift:
        steps.append(T.RandomCrop(28, padding=int(cfg.shift), padding_mode="reflect"))
    if cfg.hflip:
        steps.append(T.RandomHorizontalFlip(cfg.hflip))
    if cfg.vflip:
        steps.append(T.RandomVerticalFlip(cfg.vflip))
    if cfg.rot90:
        steps.append(_rot90(cfg.rot90))
    return T.Compose([*steps, T.ToTensor(), T.Normalize([0.5] * channels, [0.5] * channels)])


def usual_loader(flag: str, root: str, cfg: AugmentConfig, batch: int, workers: int,
                 device: torch.device, n_train: int) -> DataLoader:
    info = dataset_info(flag)
    dataset = getattr(medmnist, info.python_class)(
        split="train", root=root, download=False, transform=usual_transform(cfg, info.channels)
    )
    if n_train < len(dataset):
        dataset = Subset(dataset, range(n_train))
    return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                      pin_memory=device.type == "cuda", drop_last=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class UsualLoop:
    """The plain fp32 loop: DataLoader batches to the device, step, ``loss.item()`` per step."""

    def __init__(self, config: TrainConfig, loader: DataLoader, device: torch.device):
        info = dataset_info(config.dataset)
        torch.manual_seed(config.seed)
        self.model = create_model(config.model, in_chans=info.channels, num_classes=info.num_classes).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.loss_fn = loss_for_task(info.task, config.alpha, config.margin)
        self.loader, self.device = loader, device

    def epoch(self) -> float:
        self.model.train()
        n, total = 0, 0.0
        _sync(self.device)
        start = time.perf_counter()
        for images, target in self.loader:
            images = images.to(self.device, non_blocking=True)
            target = target.squeeze(1).long().to(self.device, non_blocking=True)
            loss = self.loss_fn(self.model(images), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(target)
            n += len(target)
        _sync(self.device)
        return n / (time.perf_counter() - start)


class OurEpochs:
    """``Trainer.epochs()``: its ``images_per_s`` counts the training part of each epoch."""

    def __init__(self, config: TrainConfig, data):
        self.epochs = Trainer(config, data).epochs()

    def epoch(self) -> float:
        return next(self.epochs)["images_per_s"]


def our_pipeline(images: torch.Tensor, cfg: AugmentConfig, batch: int, device: torch.device):
    """Trainer's input path alone (`batch_inputs`): uint8 split on the device, index, augment, normalise."""
    images = images.to(device)
    generator = torch.Generator(device=device).manual_seed(0)

    def epoch() -> float:
        _sync(device)
        start = time.perf_counter()
        for index in torch.randperm(len(images), generator=generator, device=device).split(batch):
            batch_inputs(images, index, cfg, generator)
        _sync(device)
        return len(images) / (time.perf_counter() - start)

    return epoch


def usual_pipeline(loader: DataLoader, device: torch.device):
    def epoch() -> float:
        n = 0
        _sync(device)
        start = time.perf_counter()
        for images, target in loader:
            images.to(device, non_blocking=True)
            target.to(device, non_blocking=True)
            n += len(target)
        _sync(device)
        return n / (time.perf_counter() - start)

    return epoch


def best_of_rounds(methods: dict, rounds: int) -> dict[str, float]:
    """Each method runs one epoch per round, in turn; its best round counts. The order rotates
    by one each round: a fixed order gave the slot right after the 2-worker DataLoader (whose
    worker processes are still exiting on a 2-core machine) to the same method every round."""
    best = dict.fromkeys(methods, 0.0)
    names = list(methods)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            best[name] = max(best[name], methods[name]())
    return best


def table(title: str, rows: list[tuple[str, str, float, float]]) -> str:
    lines = [f"### {title}", "", "| model | method | images/s | vs best usual |", "|---|---|---:|---:|"]
    lines += [f"| {model} | {method} | {rate:,.0f} | {ratio:.2f}x |" for model, method, rate, ratio in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--dataset", default="retinamnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="epochs per method, interleaved; best counts")
    parser.add_argument("--workers", default="0,2", help="DataLoader worker counts of the usual loop")
    parser.add_argument("--subset", type=int, default=None, help="at most this many training images")
    parser.add_argument("--augment", default=TrainConfig.model_fields["augment"].default,
                        help="augment preset on both sides (default: TrainConfig's)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the training process (default: torch's, one per core)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the Trainer with compile: true (needs --rounds 2 or more: the first compiles)")
    args = parser.parse_args(argv)
    if args.compile and args.rounds < 2:
        parser.error("--compile: needs --rounds 2 or more (the first epoch compiles and is not a timing)")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    root = str(resolve_root(args.data_root))
    cfg = augment_config(args.augment)
    data = load_dataset(args.dataset, root=root)
    n_train = min(len(data.labels["train"]), args.subset or len(data.labels["train"]))
    if n_train < len(data.labels["train"]):
        data = data.subset(n_train, seed=0)  # the other splits shrink too: validation is not timed
    workers = [int(w) for w in args.workers.split(",")]
    loaders = {f"usual, DataLoader {w} workers": usual_loader(args.dataset, root, cfg, args.batch, w, device, n_train)
               for w in workers}

    print(f"{args.dataset}, {n_train} training images, batch {args.batch}, augment {args.augment!r}, "
          f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; best of {args.rounds} rounds\n")

    epoch_rows, first_speedup = [], None
    for model in args.models.split(","):
        config = build_config({"dataset": args.dataset, "model": model, "batch_size": args.batch,
                               "augment": args.augment, "epochs": args.rounds, "device": args.device,
                               "data_root": root})
        plain = build_config(config.model_dump() | PLAIN_RECIPE)
        methods = {OURS: OurEpochs(config, data).epoch, OURS_PLAIN: OurEpochs(plain, data).epoch}
        if args.compile:
            methods[OURS_COMPILED] = OurEpochs(build_config(config.model_dump() | {"compile": True}), data).epoch
        methods |= {name: UsualLoop(config, loader, device).epoch for name, loader in loaders.items()}
        best = best_of_rounds(methods, args.rounds)
        usual = max(rate for name, rate in best.items() if not name.startswith(OURS))
        epoch_rows += [(model, name, rate, rate / usual) for name, rate in best.items()]
        if first_speedup is None:
            first_speedup = best[OURS] / usual
        print(table(f"Whole training epochs: {model}", [r for r in epoch_rows if r[0] == model]) + "\n", flush=True)

    pipelines = {OURS: our_pipeline(data.images["train"], cfg, args.batch, device)}
    pipelines |= {name: usual_pipeline(loader, device) for name, loader in loaders.items()}
    # an input-pipeline epoch takes milliseconds: more rounds, so one scheduler hiccup on a shared
    # machine does not decide the ratio (both sides get the same rounds)
    best = best_of_rounds(pipelines, max(args.rounds, 10))
    usual = max(rate for name, rate in best.items() if name != OURS)
    print(table("Input pipeline alone (images to a ready augmented batch)",
                [("-", name, rate, rate / usual) for name, rate in best.items()]) + "\n")
    print(f"speedup vs usual loop: {first_speedup:.2f}x (epoch), {best[OURS] / usual:.2f}x (pipeline)")


if __name__ == "__main__":
    main()
