"""One driver per sweep folder: a second `medsweep sweep` or `resume` of a folder in use is refused.

Two Tune controllers on one folder each write their own experiment state and trial folders
into it. Two `medsweep sweep` of one 4-trial spec started 2 s apart left 8 trial folders and
two experiment states; the second wrote best_config.yaml, and the first ended "interrupted: 2
of 4 trials ended" (exit 130) though nobody pressed Ctrl-C, having read the other's state as
its own. A `medsweep resume` beside a running 2-trial sweep left 3 trial folders
(benchmarks/RESULTS.md, section 7). The lock is an flock on a file in the folder (on NFS the
kernel maps it to a lock every client sees); the kernel lets it go when its process ends,
however it ends, so a driver killed with SIGKILL leaves nothing to clean up before its
`medsweep resume`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import shlex
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from sweeps.paths import SweepError, local_folder

LOCK_FILE = ".medsweep-driver.lock"
# A bucket (s3://, gs://) has no locks: drivers on this machine share a local file per URI.
URI_LOCKS = Path("~/.cache/medsweep/locks")
# A driver tries its lock this often before it refuses to start: a `status` probe holds it an instant.
LOCK_TRIES = 5
LOCK_RETRY_S = 0.05


def lock_path(directory: str) -> Path:
    local = local_folder(directory)
    if local is not None:
        return local / LOCK_FILE
    return URI_LOCKS.expanduser() / f"{hashlib.sha256(directory.rstrip('/').encode()).hexdigest()[:16]}.lock"


def holder_line() -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"pid {os.getpid()} on {socket.gethostname()} since {started}: {shlex.join(['medsweep', *sys.argv[1:]])}"


@contextlib.contextmanager
def sweep_folder_held(directory: str) -> Iterator[None]:
    """Hold `directory` for this process while the block runs; SweepError (one line, naming the
    holder) if another process holds it. Where the filesystem has no locks, a warning. A block
    that fails takes back the lock file and the folder if this call made them, so a command
    refused for bad input leaves the folder as it found it."""
    path = lock_path(directory)
    made = list(itertools.takewhile(lambda p: not p.exists(), (path, *path.parents)))  # innermost first
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = held_lock_file(path, directory)
    try:
        yield
    except BaseException:
        take_back(made)  # under the lock: no other driver is between its open and its flock
        raise
    finally:
        os.close(fd)


def held_lock_file(path: Path, directory: str) -> int:
    """The lock file's descriptor, flocked, with this process named in it. A file another
    driver's failed start unlinked while this one opened it is opened again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            exclusive_lock(fd)
        except BlockingIOError:
            holder = os.pread(fd, 1000, 0).decode(errors="replace").strip() or "it has not said which yet"
            os.close(fd)
            # A lost machine's NFS lock can outlive it (NFSv3 keeps it until that machine is back);
            # a new file is a new lock.
            elsewhere = " on " in holder and f" on {socket.gethostname()} " not in holder
            lost = f"; if that machine is gone, delete {path} and run the command again" if elsewhere else ""
            raise SweepError(f"sweep_dir: {directory} is in use by another medsweep ({holder}); wait for it to "
                             f"end, or stop it and continue with `medsweep resume {directory}`{lost}") from None
        except OSError as exc:  # a mount without lock support
            warnings.warn(f"sweep_dir: cannot lock {path} ({exc.strerror}); make sure no other medsweep "
                          f"runs a sweep in {directory} at the same time")
            return fd
        if same_file(path, fd):
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder_line().encode(), 0)
            return fd
        os.close(fd)


def exclusive_lock(fd: int) -> None:
    """flock(LOCK_EX) without waiting for a driver, but through `running_driver`'s probes, which
    hold a shared lock for an instant: BlockingIOError only if it stays held."""
    for _ in range(LOCK_TRIES - 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(LOCK_RETRY_S)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def running_driver(directory: str) -> str | None:
    """Who runs a sweep in `directory` (the holder's line), or None when no one does. Reads only:
    a shared lock tried and let go at once (`medsweep status` asks this)."""
    try:
        fd = os.open(lock_path(directory), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 1000, 0).decode(errors="replace").strip() or "a medsweep that has not said which yet"
    except OSError:  # a mount without lock support
        return None
    finally:
        os.close(fd)  # lets the shared lock go
    return None


def same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def take_back(made: list[Path]) -> None:
    """Remove what a failed block's lock made, innermost first; a folder the sweep wrote into stays."""
    for path in made:
        with contextlib.suppress(OSError):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
