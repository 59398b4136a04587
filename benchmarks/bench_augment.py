"""Batched ``augment_batch`` vs per-sample torchvision pipelines, same run: an affine preset,
then AugMix.

Usage: python -m benchmarks.bench_augment [--batch 128] [--size 28] [--channels 3]
       [--preset medium] [--seconds 2] [--threads N] [--device cpu|cuda]

Affine table: both sides do the same kind of work (random zoom, rotation, shift and horizontal
flip with independent parameters per image) on float tensors already in memory; the
torchvision v2 pipelines run image by image in a Python loop, as a per-sample Dataset
transform would.

AugMix table: the ``augmix`` preset on a uint8 batch (every image its own chains) against
torchvision's ``AugMix()`` at its defaults (the official MedViT notebook's), image by image on
uint8 tensors (as a Dataset transform would run it, without the notebook's PIL conversions),
v1 and v2; and, for reference, torchvision's AugMix given the whole batch tensor, which is not
the same augmentation (one set of chain operations for the whole batch, per-image weights only).

On a CPU shared with other busy processes, compare ``--threads 1`` with the default: OpenMP
threads that have to wait for a busy core can make every op tens of times slower.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torchvision.transforms import AugMix, v2

from medvit.augment import AUGMENT_PRESETS, augment_batch


def _rate(fn, batch: int, seconds: float, sync) -> float:
    fn()  # warm-up
    sync()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 3:
            return n * batch / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--preset", default="medium", choices=[k for k in AUGMENT_PRESETS if k not in ("off", "augmix")])
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    cfg = AUGMENT_PRESETS[args.preset]
    torch.manual_seed(0)
    images = torch.rand(args.batch, args.channels, args.size, args.size, device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    affine = v2.Compose(
        [
            v2.RandomAffine(
                degrees=cfg.rotation,
                translate=(cfg.crop, cfg.crop),
                scale=(1 - cfg.scale, 1 + cfg.scale),
                interpolation=v2.InterpolationMode.BILINEAR,
            ),
            v2.RandomHorizontalFlip(cfg.hflip),
        ]
    )
    area = (1 - cfg.crop) ** 2 / (1 + cfg.scale) ** 2
    resized_crop = v2.Compose(
        [
            v2.RandomResizedCrop(args.size, scale=(area, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomRotation(cfg.rotation, interpolation=v2.InterpolationMode.BILINEAR),
            v2.RandomHorizontalFlip(cfg.hflip),
        ]
    )

    def per_sample(transform):
        return lambda: torch.stack([transform(img) for img in images])

    rows = [
        ("augment_batch (one grid_sample per batch)", lambda: augment_batch(images, cfg, gen)),
        ("v2 RandomAffine + HFlip, per image", per_sample(affine)),
        ("v2 RandomResizedCrop + Rotation + HFlip, per image", per_sample(resized_crop)),
    ]
    print(
        f"batch {args.batch} x {args.channels}x{args.size}x{args.size}, device {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    _table(f"preset {args.preset!r}, float32 images", rows, args, sync)

    pixels = torch.randint(0, 256, images.shape, dtype=torch.uint8, device=device)
    augmix_v1, augmix_v2 = AugMix(), v2.AugMix()
    augmix_rows = [
        ("augment_batch 'augmix' (per-image chains, batched)", lambda: augment_batch(pixels, "augmix", gen)),
        ("torchvision AugMix(), per image", lambda: torch.stack([augmix_v1(img) for img in pixels])),
        ("torchvision v2.AugMix(), per image", lambda: torch.stack([augmix_v2(img) for img in pixels])),
        ("torchvision AugMix() on the batch (chains shared, not equal)", lambda: augmix_v1(pixels)),
    ]
    _table("AugMix severity 3, uint8 images", augmix_rows, args, sync)


def _table(title: str, rows, args, sync) -> None:
    """Each row's images/s and the first row's speed-up over it."""
    results = [(name, _rate(fn, args.batch, args.seconds, sync)) for name, fn in rows]
    base = results[0][1]
    width = max(len(name) for name, _ in results)
    print(f"\n{title}\n")
    print(f"| {'method'.ljust(width)} | images/s  | augment_batch speed-up |")
    print(f"|{'-' * (width + 2)}|-----------|------------------------|")
    for name, rate in results:
        print(f"| {name.ljust(width)} | {rate:9.0f} | {base / rate:21.1f}x |")


if __name__ == "__main__":
    main()
