"""The one way medsweep writes a file: whole or not at all.

Every result file (``result.json``, ``ensemble.json``, the results and confirm tables, YAML
configs, cached synthetic data) is written to a temporary file beside its target and renamed
over it, so a reader (a report, a resumed sweep, a second process) never sees half a file, and
a failed write leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to: renamed over ``path`` when the block ends
    without an error, removed when it raises. A symbolic link is written through, to its
    target (replacing the link would leave the target stale). With ``replace=False`` a file
    that appeared at ``path`` meanwhile is kept and FileExistsError raised (a hard link cannot
    replace a file, so the check and the write are one step)."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp makes it owner-only
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _link_new(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        # A filesystem without hard links (FAT, some network mounts): checked, then renamed.
        if path.exists():
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp, path)


def write_text_atomic(path: str | os.PathLike, text: str, replace: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path``, whole or not at all; ``replace=False``: never over a
    file that is there (FileExistsError)."""
    with atomic_path(path, replace) as tmp:
        tmp.write_text(text, encoding="utf-8")
