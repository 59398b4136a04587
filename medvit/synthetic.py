"""Small synthetic MedMNIST files for tests and smoke runs (no download needed).

``write_synthetic`` writes ``<root>/<flag>.npz`` (``<flag>_<size>.npz`` above 28 px) in the same
format as the official files: keys ``{train,val,test}_{images,labels}``, uint8 images
``(N, S, S)`` (grayscale) or ``(N, S, S, 3)`` (RGB) as ``medmnist.INFO`` says, and uint8 labels
``(N, 1)`` (``(N, 14)`` of 0/1 for ChestMNIST), like the real files.

The labels can be learned from the pixels, so a smoke run shows a falling loss:

* single-label tasks: a soft blob near the centre whose brightness grows with the class index
  (monotone, so ordinal RetinaMNIST grades are ordered too), on a noisy dark background;
* multi-label: the image is cut into a 4x4 grid of cells; cell ``l`` is bright when label ``l``
  is on.

Every class (every label, both on and off) appears in each split when the split is large
enough. The MD5 of such a file never matches ``medmnist.INFO``: loading it warns, by design.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from medvit.atomic import atomic_path
from medvit.data import SPLITS, DataError, dataset_info, dataset_path

__all__ = ["write_synthetic"]


def _single_labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    # balanced cycle 0..k-1, shuffled: every class present as soon as n >= k
    return rng.permutation(np.arange(n) % k).astype(np.uint8)


def _multi_labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    y = (rng.random((n, k)) < 0.3).astype(np.uint8)
    for label in range(k):
        pos, neg = label % n, n - 1 - (label % n)
        y[pos, label] = 1
        if neg != pos:
            y[neg, label] = 0
    return y[rng.permutation(n)]


def _single_images(rng: np.random.Generator, labels: np.ndarray, k: int, size: int, channels: int) -> np.ndarray:
    n = labels.shape[0]
    coords = (np.arange(size) + 0.5) / size - 0.5  # pixel centres in [-0.5, 0.5)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    centre = rng.uniform(-0.12, 0.12, size=(n, 2))
    radius = rng.uniform(0.18, 0.26, size=(n, 1, 1))
    d2 = (yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2
    blob = np.exp(-d2 / (2 * radius**2))  # (n, S, S) in (0, 1]
    level = 60.0 + 180.0 * labels.astype(np.float64) / max(k - 1, 1)  # class -> peak brightness
    base = 20.0 + level[:, None, None] * blob
    if channels == 1:
        img = base + rng.normal(0.0, 12.0, size=base.shape)
    else:
        tint = np.array([1.0, 0.8, 0.9])  # a pinkish cast, as in stained tissue
        img = base[..., None] * tint + rng.normal(0.0, 12.0, size=base.shape + (3,))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _multi_images(rng: np.random.Generator, labels: np.ndarray, size: int, channels: int) -> np.ndarray:
    n, k = labels.shape
    grid = 4  # 16 cells for up to 16 labels
    cell = np.minimum(np.arange(size) * grid // size, grid - 1)
    cell_index = cell[:, None] * grid + cell[None, :]  # (S, S) -> which cell a pixel belongs to
    on = np.zeros((n, grid * grid), dtype=np.float64)
    on[:, :k] = labels
    img = 30.0 + 170.0 * on[:, cell_index] + rng.normal(0.0, 15.0, size=(n, size, size))
    if channels == 3:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_synthetic(
    flag: str,
    root: str | os.PathLike,
    size: int = 28,
    n_per_split: tuple[int, int, int] = (64, 16, 16),
    seed: int = 0,
) -> Path:
    """Write a synthetic file for ``flag`` under ``root`` and return its path."""
    info = dataset_info(flag)
    path = dataset_path(flag, Path(root), size)  # also validates the size
    counts = tuple(n_per_split)
    if len(counts) != len(SPLITS) or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in counts):
        raise DataError(f"n_per_split must be three positive ints (train, val, test), got {n_per_split!r}")
    arrays: dict[str, np.ndarray] = {}
    for i, (split, n) in enumerate(zip(SPLITS, counts)):
        rng = np.random.default_rng([int(seed), zlib.crc32(flag.encode()), size, i])
        if info.multi_label:
            labels = _multi_labels(rng, n, info.num_classes)
            images = _multi_images(rng, labels, size, info.channels)
        else:
            y = _single_labels(rng, n, info.num_classes)
            images = _single_images(rng, y, info.num_classes, size, info.channels)
            labels = y[:, None]
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels
    # a concurrent reader never sees half a file
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path
