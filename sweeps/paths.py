"""Output folders checked before any work starts: a bad one is one line, and no finished
training or sweep is lost to a path that fails only when the results are written."""

from __future__ import annotations

import tempfile
from pathlib import Path


class SweepError(ValueError):
    """The sweep cannot start as asked (its folder is taken, no cluster at the address, a node
    cannot see the storage). Defined here, without Ray, so the CLI can catch it anywhere."""


def check_writable_folder(path: str | Path) -> None:
    """ValueError (one line) unless `path` is a folder, or can be created as one, that this
    process can write into. Probes with a temporary file: permission bits say nothing for
    root, nor for a read-only mount."""
    existing = Path(path)
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ValueError(f"cannot write into {existing} ({exc.strerror})") from None
