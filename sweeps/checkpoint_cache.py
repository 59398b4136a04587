"""Checkpoints fetched from a bucket (s3://, gs://), kept on this machine for the next read.

`evaluate --force`, `report`'s GradCAM figures, `gradcam` and `ensemble` each load a winner's
checkpoint, a 224 px `medvit_base` one 680 MiB: without a cache every report fetched every
winner again. A fetched checkpoint is kept in `cache_folder()` by what the bucket lists of it (each
file's path, size and time), so a checkpoint Ray wrote again under the same name (a sweep
resumed from an older state) is fetched anew; the least recently read ones are removed past
MEDSWEEP_CHECKPOINT_CACHE_GB (CACHE_GB by default; 0 keeps nothing).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sweeps.folder import fetch_files, fetched, listed_files, local_copy_name, named_as
from sweeps.paths import local_folder
from sweeps.sweep_files_cache import cache_root

__all__ = ["CACHE_GB", "CACHE_GB_ENV", "cache_bytes", "cache_folder", "cached_checkpoint"]

CACHE_GB_ENV = "MEDSWEEP_CHECKPOINT_CACHE_GB"
CACHE_GB = 10.0  # about fifteen 224 px medvit_base checkpoints
_PARTIAL = ".partial-"  # a fetch under way (or cut off), never read as a checkpoint


def cache_bytes() -> int:
    """The cache's size limit in bytes from CACHE_GB_ENV; a one-line ValueError where it is not a
    number of GiB, 0 or more."""
    text = os.environ.get(CACHE_GB_ENV, "").strip()
    try:
        gib = float(text) if text else CACHE_GB
    except ValueError:
        gib = -1.0
    if not (math.isfinite(gib) and gib >= 0):
        raise ValueError(f"{CACHE_GB_ENV}: {text!r} is not a size in GiB; allowed: a number, 0 (keep no "
                         f"checkpoint) or more (default {CACHE_GB:g})")
    return int(gib * 2**30)


def cache_folder() -> Path:
    """``$XDG_CACHE_HOME/medsweep/checkpoints`` (``~/.cache`` without it): a cluster's home folder
    often has a quota that a few checkpoints fill, so the cache can be moved."""
    return cache_root() / "checkpoints"


@contextlib.contextmanager
def cached_checkpoint(location: str | os.PathLike, nothing: str = "nothing there") -> Iterator[str]:
    """A checkpoint folder to read: a local one as it is; a bucket's from the cache, fetched into
    it when the bucket lists it otherwise than when it was kept, or into a temporary folder when it
    cannot be kept (no room, a cache turned off). A ValueError from the body names the bucket's
    folder, not the copy; ``location: nothing`` where the bucket holds no file there."""
    text = os.fspath(location).rstrip("/")
    if local_folder(text) is None:
        limit = cache_bytes()
        kept = _kept(text, limit, nothing) if limit else None
        if kept is not None:
            with named_as(str(kept), text):
                yield str(kept)
            return
    with fetched(text, nothing) as copy:
        yield copy


def _kept(location: str, limit: int, nothing: str) -> Path | None:
    """The cached copy of a bucket's checkpoint folder, fetched first where it is not there; None
    where the cache cannot hold it."""
    filesystem, root, listed = listed_files(location)
    listed.sort(key=lambda info: info.path)
    if not listed:
        raise ValueError(f"{location}: {nothing}")
    size = sum(info.size for info in listed)
    if size > limit or any(info.mtime is None for info in listed):  # a store that lists no times: a
        return None  # checkpoint written again under its name would have the same sizes
    what = [location] + [[info.path[len(root) + 1:], info.size, str(info.mtime)] for info in listed]
    cache = cache_folder()
    entry = cache / hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]
    kept = entry / local_copy_name(root)
    if not kept.is_dir():
        try:
            cache.mkdir(parents=True, exist_ok=True)
            _remove_least_recent(cache, limit - size)
            partial = Path(tempfile.mkdtemp(prefix=_PARTIAL, dir=cache))
            print(f"medsweep: fetching {location} ({size / 2**20:.1f} MiB) into {cache}", file=sys.stderr, flush=True)
            try:
                fetch_files(filesystem, root, [info.path for info in listed], partial / local_copy_name(root))
                with contextlib.suppress(OSError):  # another process kept it first: theirs is read
                    os.rename(partial, entry)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
        except OSError:  # no room, no cache folder, a read cut off: a temporary copy, as without a cache
            return None
    with contextlib.suppress(OSError):  # read now: the last to go (the kernel's own clock is too coarse)
        os.utime(entry, ns=(time.time_ns(), time.time_ns()))
    return kept if kept.is_dir() else None


def _remove_least_recent(cache: Path, room: int) -> None:
    """Remove the least recently read checkpoints until those left take at most ``room`` bytes,
    and fetches cut off (a process killed) more than a day ago."""
    now = time.time()
    entries = sorted(cache.iterdir(), key=lambda path: path.stat().st_mtime, reverse=True)
    total, full = 0, False
    for entry in entries:
        if entry.name.startswith(_PARTIAL):
            if now - entry.stat().st_mtime > 86400:
                shutil.rmtree(entry, ignore_errors=True)
            continue
        size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
        full = full or total + size > room
        if full:  # this one and every one read before it
            shutil.rmtree(entry, ignore_errors=True)
        else:
            total += size
