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

    .venv/bin/python -m benchmarks.bench_epoch [--models medvit_28_tiny,resnet18_28]
        [--dataset retinamnist] [--batch 128] [--rounds 2] [--workers 0,2] [--subset N]
        [--augment PRESET] [--device cpu|cuda] [--data-root DIR] [--threads N] [--compile]
        [--resize 224 [--resize-mode bilinear] [--quick]] [--pipeline-only] [--step-table [--variants ...]]

``--resize 224`` is the MedViT paper's protocol: the usual loop is then the official MedViT
notebook's (PIL ``Resize(224)``, bilinear as torchvision's default, before the augmentation,
e.g. ``--augment augmix``: torchvision's ``AugMix()``), the Trainer resizes each 28 px batch on
the device after augmenting it (``resize``, ``resize_mode`` bilinear here to match the
notebook; the paper specs use nearest); the pipeline table times both up to the 224 px batch.
``--quick`` is a CPU-sized version: medvit_small, batch 16, 32 images, one round, 0, 2 and 8
workers. ``--pipeline-only`` leaves the epochs out and times the input pipelines alone, which no
model slows: the notebook's per-image PIL path at 224 px against ours on a CPU in minutes. ``--step-table`` times, instead of epochs, the bare training step of ``--table-models``
(medvit_small and medvit_base) in fp32 and bf16, each contiguous or channels-last, and bf16
channels-last with cuDNN's autotuning (``cudnn.benchmark``) or compiled (``VARIANTS``), with the FLOPs of one
step (three forward passes' worth, counted by ``torch.utils.flop_counter.FlopCounterMode``: see
``step_flops``), the model FLOPs utilisation against the device's dense peak (``PEAK_TFLOPS``;
none on a CPU) and the peak memory.

On a CPU shared with other busy processes, compare ``--threads 1``: OpenMP threads that wait
for a busy core make small ops many times slower, on both sides alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from typing import NamedTuple

import medmnist
import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms as T

from medvit.augment import AugmentConfig, augment_config
from medvit.config import TrainConfig, build_config
from medvit.data import dataset_info, load_dataset, resolve_root
from medvit.losses import loss_for_task
from medvit.models import InputResize, create_model
from medvit.train import Trainer, batch_inputs

DEFAULT_MODELS = ("medvit_28_tiny", "resnet18_28")
OURS = "medsweep Trainer"
# The Trainer's recipe does more per step than a plain loop (EMA of the weights, gradient
# clipping, stochastic depth, label smoothing); this row switches those off, so that the gap
# between the two rows is the recipe's cost and the gap to the usual loop is the input path's.
PLAIN_RECIPE = {"ema": 0.0, "grad_clip": 0.0, "drop_path": 0.0, "label_smoothing": 0.0}
OURS_PLAIN = "medsweep Trainer, plain step (no EMA, clipping, drop-path, smoothing)"
OURS_COMPILED = "medsweep Trainer, compile: true (its first epoch compiles)"
# --quick (with --resize): a 224 px MedViT step takes seconds per image on a CPU
QUICK = {"models": "medvit_small", "batch": 16, "subset": 32, "rounds": 1, "workers": "0,2,8"}
# Dense peak TFLOP/s by device name (SXM parts; bf16 and TF32 on the tensor cores, fp32 without
# them), for the model FLOPs utilisation: achieved FLOP/s over the peak of the step's precision.
PEAK_TFLOPS = {"H200": {"bf16": 989.0, "tf32": 494.7, "fp32": 67.0}, "H100": {"bf16": 989.0, "tf32": 494.7, "fp32": 67.0},
               "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}}


class Variant(NamedTuple):
    """One --step-table row's way of running the same step."""
    precision: str
    channels_last: bool
    compiled: bool = False
    # cuDNN times its algorithms for each new shape and keeps the fastest, instead of picking one
    # by heuristics: MedViT's grouped and depthwise convolutions at 224 px are where it may matter
    cudnn_benchmark: bool = False


VARIANTS = {"fp32": Variant("fp32", False), "fp32-cl": Variant("fp32", True), "bf16": Variant("bf16", False),
            "bf16-cl": Variant("bf16", True), "bf16-cl-cudnn": Variant("bf16", True, cudnn_benchmark=True),
            "bf16-cl-compile": Variant("bf16", True, compiled=True)}


def _rot90(p: float) -> T.RandomApply:
    quarter_turns = [T.RandomRotation((angle, angle)) for angle in (90, 180, 270)]
    return T.RandomApply([T.RandomChoice(quarter_turns)], p=p)


def usual_transform(cfg: AugmentConfig, channels: int, resize: int | None = None) -> T.Compose:
    """torchvision transforms of the same kinds and strengths as ``cfg``, on PIL images.

    RandomAffine draws its rotation, shift (as a fraction of the side) and zoom uniformly in
    the same ranges as ``augment_batch``; integer shifts are the usual RandomCrop with padding.
    With ``resize``, the official MedViT notebook's ``Resize`` (bilinear) comes first and the
    augmentation works on the resized image.
    """
    steps: list = [T.Resize(resize, interpolation=T.InterpolationMode.BILINEAR)] if resize else []
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
        steps.append(T.RandomCrop(resize or 28, padding=int(cfg.shift), padding_mode="reflect"))
    if cfg.hflip:
        steps.append(T.RandomHorizontalFlip(cfg.hflip))
    if cfg.vflip:
        steps.append(T.RandomVerticalFlip(cfg.vflip))
    if cfg.rot90:
        steps.append(_rot90(cfg.rot90))
    return T.Compose([*steps, T.ToTensor(), T.Normalize([0.5] * channels, [0.5] * channels)])


def usual_loader(flag: str, root: str, cfg: AugmentConfig, batch: int, workers: int,
                 device: torch.device, n_train: int, resize: int | None = None) -> DataLoader:
    info = dataset_info(flag)
    dataset = getattr(medmnist, info.python_class)(
        split="train", root=root, download=False, transform=usual_transform(cfg, info.channels, resize)
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
        # built as the Trainer's is: for the resized side (any, not only MedMNIST's sizes), its
        # resize hook a no-op here, where the loader already resized
        self.model = create_model(config.model, in_chans=info.channels, num_classes=info.num_classes,
                                  img_size=config.img_size, resize=config.resize,
                                  resize_mode=config.resize_mode).to(device)
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


def our_pipeline(images: torch.Tensor, cfg: AugmentConfig, batch: int, device: torch.device,
                 resize: InputResize | None = None):
    """Trainer's input path alone (`batch_inputs`): uint8 split on the device, index, augment,
    normalise; with ``resize``, the model's resize hook too (the batch the model's layers see)."""
    images = images.to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    to_size = resize or (lambda module, args: args)

    def epoch() -> float:
        _sync(device)
        start = time.perf_counter()
        for index in torch.randperm(len(images), generator=generator, device=device).split(batch):
            to_size(None, (batch_inputs(images, index, cfg, generator),))
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


def step_flops(model: torch.nn.Module, inputs: torch.Tensor) -> int:
    """FLOPs of one training step: three times the forward pass's, as FlopCounterMode counts
    them (matrix products and convolutions; element-wise work and the optimizer are not
    counted), the usual convention of model FLOPs utilisation. Not the backward pass's own
    count: torch's formula for a grouped convolution's backward ignores the groups (here a
    depthwise 3x3 convolution's backward counted 65x its forward, a dense one's 2x), and
    MedViT is made of grouped and depthwise convolutions (medvit_small at 224 px: 11.6 GFLOP
    forward, 120 counted backward)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(inputs)
    return 3 * counter.get_total_flops()


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's dense peak FLOP/s at ``precision`` from PEAK_TFLOPS; None if not listed (CPUs).
    fp32 counts against the TF32 tensor cores' peak while cuDNN may run fp32 convolutions on
    them (``torch.backends.cudnn.allow_tf32``, on by default): against plain fp32's 67 TFLOP/s
    medvit_base's fp32 step read 57.6% on an H200, a utilisation of units it hardly used."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peak = next((peaks for key, peaks in PEAK_TFLOPS.items() if key in name), None)
    if precision == "fp32" and torch.backends.cudnn.allow_tf32:
        precision = "tf32"
    return peak[precision] * 1e12 if peak else None


def peak_memory_gib(device: torch.device) -> float:
    """GPU: the most memory torch allocated since the last reset; CPU: the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def step_rows(model_name: str, variants: list[str], batch: int, resize: int | None, dataset: str,
              device: torch.device, steps: int) -> list[dict]:
    """The bare training step (AdamW, the task's loss) of one model on random 28 px inputs,
    resized by the model's hook as in the Trainer: images/s, FLOPs and utilisation per variant."""
    info = dataset_info(dataset)
    inputs = torch.randn(batch, info.channels, 28, 28, device=device)
    target = torch.randint(0, info.num_classes, (batch,), device=device)
    loss_fn = loss_for_task(info.task, 0.0, 0.1)
    flops, rows, autotuning = None, [], torch.backends.cudnn.benchmark
    for variant in variants:
        precision, channels_last, compiled, cudnn_benchmark = VARIANTS[variant]
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.manual_seed(0)
        model = create_model(model_name, in_chans=info.channels, num_classes=info.num_classes, resize=resize).to(device)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        model, x = model.to(memory_format=layout), inputs.contiguous(memory_format=layout)
        if flops is None:  # the same in every variant: counted once, eager
            flops = step_flops(model, x)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        forward = torch.compile(model) if compiled else model

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = loss_fn(forward(x), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(3 if compiled else 1):  # warm-up (compilation, allocator, cuDNN's search)
            step()
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        seconds = (time.perf_counter() - start) / steps
        peak = peak_flops(device, precision)
        rows.append({"model": model_name, "variant": variant, "images_per_s": batch / seconds,
                     "step_gflop": flops / 1e9, "tflop_per_s": flops / seconds / 1e12,
                     "mfu": flops / seconds / peak if peak else None, "memory_gib": peak_memory_gib(device)})
    torch.backends.cudnn.benchmark = autotuning  # process-wide: what runs next gets it back as it was
    return rows


def step_table(rows: list[dict], device: torch.device, batch: int, resize: int | None) -> str:
    memory = "peak GiB allocated" if device.type == "cuda" else "process peak RSS, GiB"
    lines = [f"### One training step at {resize or 28} px, batch {batch}", "",
             f"| model | variant | images/s | GFLOP per step | TFLOP/s | MFU | {memory} |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        lines.append(f"| {r['model']} | {r['variant']} | {r['images_per_s']:,.1f} | {r['step_gflop']:,.1f} | "
                     f"{r['tflop_per_s']:.3g} | {mfu} | {r['memory_gib']:.2f} |")
    return "\n".join(lines)


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
    parser.add_argument("--resize", type=int, default=None,
                        help="the MedViT paper's protocol: the usual loop resizes each PIL image to N px "
                             "first, the Trainer each batch on the device (its `resize`)")
    parser.add_argument("--resize-mode", default="bilinear", choices=["nearest", "bilinear"],
                        help="the Trainer's resize_mode (default bilinear: the notebook's Resize)")
    parser.add_argument("--quick", action="store_true",
                        help="CPU-sized: " + ", ".join(f"--{k} {v}" for k, v in QUICK.items()))
    parser.add_argument("--pipeline-only", action="store_true",
                        help="only the input-pipeline table: no model trains (at 224 px on a CPU, minutes not hours)")
    parser.add_argument("--step-table", action="store_true",
                        help="instead of epochs: the bare step of --table-models per --variants, FLOPs and MFU")
    parser.add_argument("--table-models", default="medvit_small,medvit_base")
    parser.add_argument("--variants", default=None,
                        help=f"of {', '.join(VARIANTS)} (default: all on cuda, fp32,fp32-cl on cpu)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per --step-table row")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    if args.resize is not None and args.resize < 8:
        parser.error(f"--resize: {args.resize} is not a side in px; allowed: an integer >= 8")
    if args.compile and args.rounds < 2:
        parser.error("--compile: needs --rounds 2 or more (the first epoch compiles and is not a timing)")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    if args.step_table:
        variants = (args.variants or ",".join(VARIANTS if device.type == "cuda" else ("fp32", "fp32-cl"))).split(",")
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            parser.error(f"--variants: unknown {', '.join(unknown)}; allowed: {', '.join(VARIANTS)}")
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        peaks = {precision: peak_flops(device, precision) for precision in ("fp32", "bf16")}
        print(f"{args.dataset}'s shape, device {device} ({name}), torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; MFU against dense peak TFLOP/s "
              + (", ".join(f"{k} {v / 1e12:g}" for k, v in peaks.items()) if peaks["fp32"] else "(none listed)")
              + (" (fp32: TF32's, as cuDNN runs fp32 convolutions in TF32)" if torch.backends.cudnn.allow_tf32 else "")
              + "\n")
        rows = [row for model in args.table_models.split(",")
                for row in step_rows(model, variants, args.batch, args.resize, args.dataset, device, args.steps)]
        print(step_table(rows, device, args.batch, args.resize))
        return
    root = str(resolve_root(args.data_root))
    cfg = augment_config(args.augment)
    data = load_dataset(args.dataset, root=root)
    n_train = min(len(data.labels["train"]), args.subset or len(data.labels["train"]))
    if n_train < len(data.labels["train"]):
        data = data.subset(n_train, seed=0)  # the other splits shrink too: validation is not timed
    workers = [int(w) for w in args.workers.split(",")]
    loaders = {f"usual, DataLoader {w} workers": usual_loader(args.dataset, root, cfg, args.batch, w, device, n_train,
                                                              args.resize)
               for w in workers}

    print(f"{args.dataset}, {n_train} training images, batch {args.batch}, augment {args.augment!r}, "
          f"{f'resize {args.resize} (usual: PIL bilinear first; Trainer: {args.resize_mode} on the device), ' if args.resize else ''}"
          f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; best of {args.rounds} rounds\n")

    epoch_rows, first_speedup = [], None
    for model in [] if args.pipeline_only else args.models.split(","):
        config = build_config({"dataset": args.dataset, "model": model, "batch_size": args.batch,
                               "augment": args.augment, "epochs": args.rounds, "device": args.device,
                               "data_root": root, "resize": args.resize, "resize_mode": args.resize_mode})
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

    resize = InputResize(args.resize, args.resize_mode) if args.resize else None
    pipelines = {OURS: our_pipeline(data.images["train"], cfg, args.batch, device, resize)}
    pipelines |= {name: usual_pipeline(loader, device) for name, loader in loaders.items()}
    # an input-pipeline epoch takes milliseconds: more rounds, so one scheduler hiccup on a shared
    # machine does not decide the ratio (both sides get the same rounds)
    best = best_of_rounds(pipelines, max(args.rounds, 10))
    usual = max(rate for name, rate in best.items() if name != OURS)
    print(table(f"Input pipeline alone (images to a ready augmented batch at {args.resize or 28} px)",
                [("-", name, rate, rate / usual) for name, rate in best.items()]) + "\n")
    epoch = f"{first_speedup:.2f}x (epoch), " if first_speedup is not None else ""
    print(f"speedup vs usual loop: {epoch}{best[OURS] / usual:.2f}x (pipeline)")


if __name__ == "__main__":
    main()
