"""Output folders checked before any work starts: a bad one is one line, and no finished
training or sweep is lost to a path that fails only when the results are written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


# The longest file or folder name Linux filesystems (ext4, xfs, NFS) take, in bytes.
NAME_MAX = 255


class SweepError(ValueError):
    """The sweep cannot start as asked (its folder is taken, no cluster at the address, a node
    cannot see the storage). Defined here, without Ray, so the CLI can catch it anywhere."""


class StorageError(Exception):
    """A result could not be written (a full disk, a quota, a mount gone read-only): one line
    that says where finished work is and how to go on, exit code 1."""


# pyarrow's GCS client retries a failing request for minutes (15 by default: without credentials,
# or off the network, `medsweep resume gs://...` waited past 90 s); medsweep's own reads and writes
# of a bucket give up after this many seconds.
GCS_RETRY_S = 30


def refuse_uri_options(uri: str) -> None:
    """A one-line ValueError for a bucket URI with options (``?region=...``): medsweep joins a
    sweep's files under it, and options would land in the middle of each path. A local path may
    hold either character."""
    if local_folder(uri) is None and ("?" in uri or "#" in uri):
        scheme = uri.partition("://")[0]
        raise ValueError(f"{uri!r}: options in a URI are not supported; allowed: {scheme}://<bucket>/<prefix>, "
                         "with an S3-compatible store's address (MinIO, Ceph) in AWS_ENDPOINT_URL and its region "
                         "in AWS_REGION on every node")


def bucket_filesystem(location: str):
    """pyarrow's filesystem and path for a path or URI (s3://, gs://, ...), with GCS's retries
    capped at GCS_RETRY_S; a URI with options is refused (refuse_uri_options)."""
    import datetime

    import pyarrow.fs

    refuse_uri_options(location)
    filesystem, path = pyarrow.fs.FileSystem.from_uri(location)
    if isinstance(filesystem, pyarrow.fs.GcsFileSystem):
        filesystem = pyarrow.fs.GcsFileSystem(retry_time_limit=datetime.timedelta(seconds=GCS_RETRY_S))
    return filesystem, path


def local_folder(directory: str) -> Path | None:
    """The local (or NFS) path of a sweep folder given as a path or a ``file://`` URI; None for a
    bucket or any other URI."""
    scheme, uri, path = directory.partition("://")
    if uri and scheme.lower() != "file":
        return None
    return Path(path if uri else directory)


def check_writable_folder(path: str | Path) -> None:
    """ValueError (one line) unless `path` is a folder, or can be created as one, that this
    process can write into. Probes with a temporary file: permission bits say nothing for
    root, nor for a read-only mount."""
    path = Path(path)
    too_long = [part for part in path.parts if len(os.fsencode(part)) > NAME_MAX]
    if too_long:
        raise ValueError(f"a name of {len(os.fsencode(too_long[0]))} bytes ({too_long[0][:40]}...); "
                         f"allowed: names of at most {NAME_MAX} bytes")
    existing = path
    while not existing.exists():  # follows links: a dangling link or a loop does not exist
        if existing.is_symlink():
            raise ValueError(f"{existing} is a symbolic link that leads nowhere (dangling, or a loop)")
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ValueError(f"cannot write into {existing} ({exc.strerror})") from None
