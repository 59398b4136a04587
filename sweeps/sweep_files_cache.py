"""A bucket sweep's small files, kept on this machine for the next read.

`medsweep status`, `collect`, `confirm` and `ensemble` read a sweep in a bucket (s3://, gs://)
through a temporary copy of its small files (sweeps.folder.readable_copy): its state, spec and
each trial's config, reports and error, two or three files a trial, each a request or two away. A
finished trial's files never change, and a user watching a sweep runs `status` again and again:
each file fetched is kept in `sweep_files_folder(location)` with the bucket's size and time, and a
later read copies the ones the bucket still lists so from there, fetching only what changed (the
running trials' reports, the state). S3's times are whole seconds, so a file written twice in
one second with one size would look unchanged: a file is kept only when it had been unchanged for
SETTLED_S when it was fetched. A sweep's kept files not read for UNREAD_DAYS are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.fs

from medvit.atomic import atomic_path

__all__ = ["SETTLED_S", "UNREAD_DAYS", "cache_root", "sweep_files_folder", "copy_through_cache"]

SETTLED_S = 60
UNREAD_DAYS = 30


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/medsweep`` (``~/.cache/medsweep`` without it): a cluster's home folder
    often has a quota, so what medsweep keeps can be moved."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "medsweep"


def sweep_files_folder(location: str) -> Path:
    """Where the small files of the bucket's sweep folder ``location`` are kept."""
    return cache_root() / "sweep-files" / hashlib.sha256(location.rstrip("/").encode()).hexdigest()[:32]


def copy_through_cache(location: str, root: str, files: list[pyarrow.fs.FileInfo], into: Path,
                       fetch: Callable[[list[str]], None]) -> None:
    """Put the store's ``files`` (under ``root``) into the folder ``into``, each in its place below
    root: copied from the cache where kept with the size and time the store lists, the others with
    ``fetch`` (which fetches store paths into ``into``) and kept where settled."""
    kept = sweep_files_folder(location)
    now_ns = time.time_ns()
    with contextlib.suppress(OSError):  # read now: kept another UNREAD_DAYS
        os.utime(kept, ns=(now_ns, now_ns))
    relative = {info.path: info.path[len(root) + 1:] for info in files}
    for parent in {(into / path).parent for path in relative.values()}:  # each once: a folder made costs
        parent.mkdir(parents=True, exist_ok=True)  # as much as a file copied (0.7 ms on a cloud disk)
    missing = [info for info in files
               if not _copied_from_cache(kept / relative[info.path], info, into / relative[info.path])]
    fetch([info.path for info in missing])
    for info in missing:
        if info.mtime_ns is not None and now_ns - info.mtime_ns > SETTLED_S * 10**9:
            try:
                _keep(into / relative[info.path], kept / relative[info.path], info.mtime_ns)
            except OSError:  # no room, a read-only home: read from the bucket next time, as without a cache
                break
    _remove_unread(kept.parent)


def _copied_from_cache(cached: Path, info: pyarrow.fs.FileInfo, target: Path) -> bool:
    """Copy ``cached`` to ``target`` if it is the file the store lists (its size and time)."""
    try:
        stat = cached.stat()
        if info.mtime_ns is None or (stat.st_size, stat.st_mtime_ns) != (info.size, info.mtime_ns):
            return False
    except OSError:
        return False
    try:  # a link is 30x faster than a copy; the copy's readers never write to it, and a file kept
        os.link(cached, target)  # again replaces the cache's name, not this file
    except OSError:  # another filesystem, or one without links
        try:
            shutil.copyfile(cached, target)
        except OSError:
            return False
    return True


def _keep(fetched: Path, cached: Path, mtime_ns: int) -> None:
    """Keep the file ``fetched`` as ``cached``, with the store's time; whole or not at all (another
    process reading the cache sees the old file or the new one)."""
    with atomic_path(cached) as partial:
        shutil.copyfile(fetched, partial)
        os.utime(partial, ns=(mtime_ns, mtime_ns))


def _remove_unread(sweeps: Path) -> None:
    """Remove the sweeps whose files were not read for UNREAD_DAYS."""
    oldest = time.time() - UNREAD_DAYS * 86400
    with contextlib.suppress(OSError):
        for entry in sweeps.iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < oldest:
                    shutil.rmtree(entry, ignore_errors=True)
