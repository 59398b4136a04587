"""MedMNIST 2D data: metadata, local loading with checks, and the one download entry point.

Files follow medmnist's layout: ``<root>/<flag>.npz`` for 28 px and ``<root>/<flag>_<size>.npz``
for 64, 128 and 224 px, each holding ``{train,val,test}_{images,labels}``.

``load_dataset`` reads a file once and returns torch tensors ready for training:

* images: uint8 ``(N, C, H, W)``, contiguous (grayscale files store ``(N, H, W)``, RGB files
  ``(N, H, W, 3)``);
* labels: int64 ``(N,)`` for single-label tasks, float32 ``(N, L)`` for multi-label ChestMNIST.

Integrity: the file's MD5 is compared with ``medmnist.INFO`` once per file and process (keyed by
resolved path, size and mtime). The verdict is also kept in a small JSON cache so the multi-GB
224 px files are not re-hashed by every run. The cache lives at ``~/.cache/medsweep/md5.json``;
the environment variable ``MEDSWEEP_MD5_CACHE`` names another file (an empty value switches the
persistent cache off). A mismatch is a warning, not an error: synthetic test files and locally
re-packed files are legitimate.

Nothing here downloads except ``download_dataset``, which the CLI calls only on request.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import types
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from medvit.interrupt import deferred_interrupt
from medvit.jsonio import write_json

with deferred_interrupt():  # an import of torch cut short can crash the interpreter (medvit/interrupt.py)
    import numpy as np
    import torch

from medvit.tasks import MULTI_LABEL
from medvit.userpath import expand_home

__all__ = [
    "DATASETS",
    "SIZES",
    "SPLITS",
    "DataError",
    "DatasetInfo",
    "MedMNISTData",
    "dataset_info",
    "resolve_root",
    "dataset_path",
    "load_dataset",
    "download_dataset",
    "describe",
]

DATASETS: tuple[str, ...] = (
    "pathmnist",
    "chestmnist",
    "dermamnist",
    "octmnist",
    "pneumoniamnist",
    "retinamnist",
    "breastmnist",
    "bloodmnist",
    "tissuemnist",
    "organamnist",
    "organcmnist",
    "organsmnist",
)
SIZES: tuple[int, ...] = (28, 64, 128, 224)
SPLITS: tuple[str, ...] = ("train", "val", "test")

MD5_CACHE_ENV = "MEDSWEEP_MD5_CACHE"
_HASH_CHUNK = 8 * 1024 * 1024


class DataError(ValueError):
    """A dataset cannot be used as asked: unknown flag or size, missing or malformed file."""


# --------------------------------------------------------------------------------------------
# metadata


@dataclass(frozen=True)
class DatasetInfo:
    flag: str
    python_class: str
    task: str
    num_classes: int  # number of model outputs: labels for multi-label, classes otherwise (2 for binary)
    channels: int
    n_samples: dict[str, int]
    md5: dict[int, str]
    label_names: dict[str, str]

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI_LABEL


_INFO_CACHE: dict[str, DatasetInfo] = {}


@functools.cache
def _medmnist_info() -> types.ModuleType:
    """medmnist's ``info`` module (INFO, DEFAULT_ROOT), run on its own. ``import medmnist``
    also imports its evaluator and with it scikit-learn: 1.3 s in every ``medsweep train`` and
    every sweep trial's process, for metrics medvit.metrics computes itself. Only the download
    imports the package."""
    package = importlib.util.find_spec("medmnist")  # finds the package without running it
    if package is None or package.origin is None:
        raise DataError("medmnist is not installed: pip install 'medmnist>=3.0' (a dependency of medsweep)")
    info = Path(package.origin).with_name("info.py")
    if not info.is_file():  # another medmnist layout: the whole package holds INFO too, only slower
        with deferred_interrupt():  # medmnist's import of torch swallows a Ctrl-C (medvit/interrupt.py)
            import medmnist
        return medmnist
    spec = importlib.util.spec_from_file_location("medmnist.info", info)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_flag(flag: str) -> str:
    if flag not in DATASETS:
        raise DataError(f"unknown dataset {flag!r}; allowed: {', '.join(DATASETS)}")
    return flag


def _check_size(size: int) -> int:
    if isinstance(size, bool) or size not in SIZES:
        raise DataError(f"unsupported image size {size!r}; allowed: {', '.join(map(str, SIZES))}")
    return int(size)


def dataset_info(flag: str) -> DatasetInfo:
    """Metadata of one 2D MedMNIST dataset, taken from ``medmnist.INFO``."""
    _check_flag(flag)
    if flag not in _INFO_CACHE:
        raw = _medmnist_info().INFO[flag]
        md5 = {28: raw["MD5"]}
        for size in SIZES[1:]:
            md5[size] = raw[f"MD5_{size}"]
        _INFO_CACHE[flag] = DatasetInfo(
            flag=flag,
            python_class=raw["python_class"],
            task=raw["task"],
            num_classes=len(raw["label"]),
            channels=int(raw["n_channels"]),
            n_samples={split: int(raw["n_samples"][split]) for split in SPLITS},
            md5=md5,
            label_names=dict(raw["label"]),
        )
    return _INFO_CACHE[flag]


# --------------------------------------------------------------------------------------------
# paths


def _default_root() -> Path:
    # medmnist computes (and creates) its default root when its info module runs: ~/.medmnist
    default = getattr(_medmnist_info(), "DEFAULT_ROOT", None)
    return Path(default) if default else Path("~/.medmnist").expanduser()


def resolve_root(root: str | os.PathLike | None, argument: str = "--data-root") -> Path:
    """The argument, else ``$MEDMNIST_ROOT``, else medmnist's default root (``~/.medmnist``).
    A ``MEDMNIST_ROOT`` set but empty is an error: falling back would hide a broken setup."""
    if root is not None and str(root) != "":
        return _expand(root, argument)
    env = os.environ.get("MEDMNIST_ROOT")
    if env is not None and not env.strip():
        raise DataError("MEDMNIST_ROOT: set but empty; allowed: a folder of MedMNIST .npz files, "
                        "or unset it for the default ~/.medmnist")
    if env:
        return _expand(env, "MEDMNIST_ROOT")
    return _default_root()


def _expand(path: str | os.PathLike, argument: str) -> Path:
    try:
        return expand_home(path)
    except ValueError as exc:
        raise DataError(f"{argument}: {exc}") from None


def dataset_path(flag: str, root: str | os.PathLike | None, size: int = 28) -> Path:
    _check_flag(flag)
    _check_size(size)
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    return resolve_root(root) / name


def _fetch_command(flag: str, root: Path, size: int) -> str:
    cmd = f"medsweep data download --dataset {flag} --data-root {root}"
    return cmd if size == 28 else f"{cmd} --size {size}"


# --------------------------------------------------------------------------------------------
# MD5 verification, cached in-process and on disk

# (resolved path, size in bytes, mtime_ns) -> hex digest
_MD5_MEMO: dict[tuple[str, int, int], str] = {}


def _md5_cache_file() -> Path | None:
    env = os.environ.get(MD5_CACHE_ENV)
    if env is not None:
        return Path(env).expanduser() if env else None
    return Path("~/.cache/medsweep/md5.json").expanduser()


def _read_md5_cache(cache: Path) -> dict:
    try:
        data = json.loads(cache.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_md5_cache(cache: Path, key: str, entry: dict) -> None:
    """Best effort: merge one entry, drop entries of vanished files, replace atomically."""
    try:
        data = _read_md5_cache(cache)
        data[key] = entry
        data = {k: v for k, v in data.items() if os.path.exists(k)}
        write_json(cache, data)
    except Exception:
        pass  # a read-only home or full disk must never break loading


def _hash_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _file_md5(path: Path) -> str:
    """MD5 of ``path``, computed at most once per (path, size, mtime) across runs."""
    real = path.resolve()
    st = real.stat()
    memo_key = (str(real), st.st_size, st.st_mtime_ns)
    if memo_key in _MD5_MEMO:
        return _MD5_MEMO[memo_key]
    cache = _md5_cache_file()
    digest = None
    if cache is not None:
        entry = _read_md5_cache(cache).get(str(real))
        if (
            isinstance(entry, dict)
            and entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns
            and isinstance(entry.get("md5"), str)
        ):
            digest = entry["md5"]
    if digest is None:
        digest = _hash_file(real)
        if cache is not None:
            _write_md5_cache(cache, str(real), {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": digest})
    _MD5_MEMO[memo_key] = digest
    return digest


def _verify_md5(path: Path, expected: str) -> bool:
    actual = _file_md5(path)
    if actual != expected:
        warnings.warn(
            f"MD5 mismatch for {path}: expected {expected}, got {actual} "
            "(not the official MedMNIST file: synthetic, re-packed or corrupted)",
            stacklevel=3,
        )
        return False
    return True


# --------------------------------------------------------------------------------------------
# loading


@dataclass
class MedMNISTData:
    info: DatasetInfo
    images: dict[str, torch.Tensor]  # uint8 (N, C, H, W), contiguous
    labels: dict[str, torch.Tensor]  # int64 (N,) or float32 (N, L) for multi-label
    path: Path | None = field(default=None, compare=False)

    @property
    def size(self) -> int:
        return int(self.images["train"].shape[-1])

    def __len__(self) -> int:
        return sum(int(t.shape[0]) for t in self.images.values())

    def __reduce__(self):
        # Pickled as numpy arrays: Ray's object store then hands them to every trial on a node
        # without a copy (one dataset per node), where pickled tensors are copied per trial.
        arrays = {name: {s: t.numpy() for s, t in getattr(self, name).items()} for name in ("images", "labels")}
        return _from_arrays, (self.info, arrays["images"], arrays["labels"], self.path)

    def subset(self, n_per_split: int | None, seed: int = 0) -> MedMNISTData:
        """A smaller copy with at most ``n_per_split`` random samples per split.

        Deterministic in ``seed``; sample order within a split follows the original file.
        ``None`` keeps everything (still a new object sharing the tensors).
        """
        if n_per_split is None:
            return MedMNISTData(self.info, dict(self.images), dict(self.labels), self.path)
        if isinstance(n_per_split, bool) or not isinstance(n_per_split, int) or n_per_split < 1:
            raise DataError(f"subset: n_per_split must be a positive int or None, got {n_per_split!r}")
        images, labels = {}, {}
        for i, split in enumerate(SPLITS):
            n = int(self.images[split].shape[0])
            if n_per_split >= n:
                images[split], labels[split] = self.images[split], self.labels[split]
                continue
            gen = torch.Generator().manual_seed(int(seed) * len(SPLITS) + i)
            idx = torch.randperm(n, generator=gen)[:n_per_split].sort().values
            images[split] = self.images[split][idx].contiguous()
            labels[split] = self.labels[split][idx].contiguous()
        return MedMNISTData(self.info, images, labels, self.path)

    def with_train_subset(self, n: int | None, seed: int = 0) -> MedMNISTData:
        """A copy with the training split of ``subset(n, seed)`` (what `--subset n` trains on)
        and the whole validation and test splits, so that its test numbers compare with
        full-data runs. ``None`` returns ``self``."""
        if n is None:
            return self
        train = self.subset(n, seed=seed)
        return MedMNISTData(self.info, {**self.images, "train": train.images["train"]},
                            {**self.labels, "train": train.labels["train"]}, self.path)


def _from_arrays(info: DatasetInfo, images: dict, labels: dict, path: Path | None) -> MedMNISTData:
    with warnings.catch_warnings():
        # Object-store arrays are read-only; the trainer never writes into its dataset.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return MedMNISTData(
            info,
            {split: torch.from_numpy(a) for split, a in images.items()},
            {split: torch.from_numpy(a) for split, a in labels.items()},
            path,
        )


def _to_tensors(flag: str, info: DatasetInfo, path: Path, size: int, arrays: dict[str, np.ndarray]):
    images, labels = {}, {}
    for split in SPLITS:
        img, lab = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if img.dtype != np.uint8:
            raise DataError(f"{path}: {split}_images has dtype {img.dtype}; expected uint8")
        if info.channels == 1:
            expected = f"(N, {size}, {size})"
            ok = img.ndim == 3 and img.shape[1:] == (size, size)
        else:
            expected = f"(N, {size}, {size}, {info.channels})"
            ok = img.ndim == 4 and img.shape[1:] == (size, size, info.channels)
        if not ok:
            raise DataError(
                f"{path}: {split}_images has shape {img.shape}; expected {expected} "
                f"for {flag} ({info.channels} channel(s), {size} px)"
            )
        n_labels = info.num_classes if info.multi_label else 1
        if lab.ndim != 2 or lab.shape != (img.shape[0], n_labels):
            raise DataError(
                f"{path}: {split}_labels has shape {lab.shape}; expected ({img.shape[0]}, {n_labels}) for {flag}"
            )
        _check_label_values(path, split, lab)
        if lab.size:
            lo, hi = lab.min(), lab.max()
            top = 1 if info.multi_label else info.num_classes - 1
            if lo < 0 or hi > top:
                raise DataError(f"{path}: {split}_labels range [{lo}, {hi}] outside [0, {top}] for {flag}")
        t = torch.from_numpy(np.ascontiguousarray(img))
        t = t.unsqueeze(1) if info.channels == 1 else t.permute(0, 3, 1, 2)
        images[split] = t.contiguous()
        if info.multi_label:
            labels[split] = torch.from_numpy(lab.astype(np.float32))
        else:
            labels[split] = torch.from_numpy(lab[:, 0].astype(np.int64))
    return images, labels


def _check_label_values(path: Path, split: str, lab: np.ndarray) -> None:
    """Labels are class indices (0/1 per class when multi-label): integers, or floats that hold
    whole numbers; NaN would become a huge negative index, a fraction a silent other class."""
    allowed = "allowed: whole-number class indices"
    if lab.dtype.kind in "iub":
        return
    if lab.dtype.kind != "f":
        raise DataError(f"{path}: {split}_labels have dtype {lab.dtype}; {allowed}")
    if not np.isfinite(lab).all():
        raise DataError(f"{path}: {split}_labels hold NaN or infinity; {allowed}")
    if (lab != np.round(lab)).any():
        raise DataError(f"{path}: {split}_labels hold fractions (e.g. {lab[lab != np.round(lab)][0]:g}); {allowed}")


def load_dataset(flag: str, root: str | os.PathLike | None = None, size: int = 28) -> MedMNISTData:
    """Read ``<root>/<flag>[_<size>].npz`` into tensors, after shape and MD5 checks."""
    info = dataset_info(flag)
    _check_size(size)
    root_path = resolve_root(root)
    path = dataset_path(flag, root_path, size)
    if not path.is_file():
        raise DataError(
            f"{path} not found (root searched: {root_path}); fetch it with: "
            f"{_fetch_command(flag, root_path, size)}"
        )
    _verify_md5(path, info.md5[size])
    keys = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing arrays {', '.join(missing)}; expected {', '.join(keys)}")
            arrays = {k: npz[k] for k in keys}
            not_arrays = [k for k in keys if not isinstance(arrays[k], np.ndarray)]  # a member without .npy's header
            if not_arrays:
                raise DataError(f"{path}: {', '.join(not_arrays)} not NumPy arrays; allowed: a MedMNIST .npz file")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, DataError):
            raise
        msg = " ".join(str(exc).split())
        raise DataError(f"{path}: not a readable MedMNIST .npz file ({type(exc).__name__}: {msg})") from exc
    images, labels = _to_tensors(flag, info, path, size, arrays)
    return MedMNISTData(info=info, images=images, labels=labels, path=path)


def download_dataset(flag: str, root: str | os.PathLike | None = None, size: int = 28) -> Path:
    """Fetch one file with medmnist's own downloader (MD5-checked by it); returns its path.

    medmnist skips the download when a file with the right MD5 is already there.
    """
    info = dataset_info(flag)
    _check_size(size)
    root_path = resolve_root(root)
    created = [p for p in (root_path, *root_path.parents) if not p.exists()]  # deepest first
    root_path.mkdir(parents=True, exist_ok=True)
    with deferred_interrupt():  # medmnist's import of torch swallows a Ctrl-C (medvit/interrupt.py)
        import medmnist
    cls = getattr(medmnist, info.python_class)
    # the class also reads one split after downloading: take the smallest one
    split = min(SPLITS, key=lambda s: info.n_samples[s])
    try:
        cls(split=split, root=str(root_path), size=size, download=True)  # ok-download: only on the user's explicit request
    except RuntimeError as exc:
        for folder in created:  # a failed download leaves no new empty folders behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        msg = " ".join(str(exc).split())
        raise DataError(f"download of {flag} ({size} px) into {root_path} failed: {msg}") from exc
    return dataset_path(flag, root_path, size)


def describe(data: MedMNISTData) -> str:
    """One line for progress output."""
    info = data.info
    kind = "labels" if info.multi_label else "classes"
    counts = "/".join(str(int(data.images[s].shape[0])) for s in SPLITS)
    return (
        f"{info.flag}: {info.task}, {info.num_classes} {kind}, {info.channels} ch, "
        f"{data.size} px, train/val/test {counts}"
    )
