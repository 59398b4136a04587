"""What a sweep folder is, read the same way by the launcher (resume) and by analysis (collect).

A sweep folder is ``S/N`` for ``RunConfig(storage_path=S, name=N)``: Ray's
``experiment_state-*.json`` (its JSON parts; nothing is unpickled here), the launcher's
``medsweep_spec.yaml`` and one folder per trial. No Ray import: collecting works on a laptop
that only has the synced folders.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.fs

from medvit.checkpoint import CHECKPOINT_FILE, SELECTION_FILE
from sweeps.paths import bucket_filesystem, local_folder
from sweeps.sweep_files_cache import copy_through_cache

__all__ = ["SPEC_FILE", "STATE_GLOB", "RESULT_FILE", "PARAMS_FILE", "CHECKPOINT_RE", "find_sweep_dirs",
           "check_sweep_dir", "bucket_copy", "download", "fetch_files", "listed_files", "unreadable", "fetched",
           "fetched_file", "local_copy_name", "named_as",
           "readable_copy", "parse_experiment_state", "read_experiment_state", "split_trial_item",
           "read_result_lines", "newest_checkpoint", "newest_state", "state_trial_folders", "trial_id_from_folder"]

SPEC_FILE = "medsweep_spec.yaml"
STATE_GLOB = "experiment_state-*.json"
RESULT_FILE = "result.json"  # a trial folder's reports, one JSON object a line (Ray's JSON logger)
PARAMS_FILE = "params.json"  # a trial folder's sampled config
ERROR_FILE = "error.txt"  # a trial folder's failures, each "Failure # N (occurred at ...)" and Ray's error
_TRIAL_ID_RE = re.compile(r"_([0-9a-f]{5}_\d{5})(?:_|$)")
# How often Ray Tune starts a failed trial again from its newest checkpoint (FailureConfig);
# Ray counts a trial's failures over every resume.
MAX_FAILURES = 2
_FAILURE_RE = re.compile(r"^Failure # (\d+) \(occurred at ", re.MULTILINE)


def failed_for_good(error_text: str, saved_failures: Any) -> bool:
    """Whether a trial whose experiment state says it is running in fact errored: its error file
    records a failure past Ray's retries that the state does not count (``saved_failures``, the
    state's ``num_failures``). Ray 2.60 does not save a trial again when the failure that ends it
    is its worker's death (the kernel's OOM killer, a crash, a lost node): its stop returns early
    for a trial without a live actor, so the state keeps the trial RUNNING with the failures of
    its last start, while error.txt is written first."""
    numbers = [int(number) for number in _FAILURE_RE.findall(error_text)]
    saved = saved_failures if isinstance(saved_failures, int) else 0
    return bool(numbers) and numbers[-1] > max(MAX_FAILURES, saved)


def _is_sweep_dir(p: Path) -> bool:
    return p.is_dir() and any(p.glob(STATE_GLOB))


def check_sweep_dir(location: str | os.PathLike) -> Path:
    """The path if it is a sweep folder, else a one-line ValueError saying what it is instead."""
    p = local_folder(os.fspath(location)) or Path(location)  # a bucket's is read through readable_copy
    if not p.exists():
        raise ValueError(f"{p}: not a sweep folder: the path does not exist")
    if not p.is_dir():
        raise ValueError(f"{p}: not a sweep folder: it is a file (pass the folder S/N of RunConfig(storage_path=S, name=N))")
    if _is_sweep_dir(p):
        return p
    inner = [c.name for c in find_sweep_dirs(p)]
    if inner:
        raise ValueError(f"{p}: not a sweep folder but a storage path holding sweeps {', '.join(inner)}; pass those")
    if (p / PARAMS_FILE).exists() or (p / RESULT_FILE).exists():
        raise ValueError(f"{p}: not a sweep folder but a trial folder; pass its parent {p.parent}")
    raise ValueError(f"{p}: not a sweep folder: no {STATE_GLOB} in it")


def local_copy_name(uri: str) -> str:
    """The name of the temporary folder a bucket's folder is copied into: its own."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


# What `medsweep status`, `collect`, `confirm` and `ensemble` read of a sweep folder in a bucket:
# its state, its spec, each trial's config, reports and error; not checkpoints, pickles or
# TensorBoard files.
STATUS_FILES = ("*.json", "*.yaml", ERROR_FILE)
CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)$")
# readable_copy's mark in each checkpoint it copies (its files empty): the bucket listed it whole.
LISTED_WHOLE = ".medsweep-listed-whole"


@contextlib.contextmanager
def readable_copy(location: str) -> Iterator[str]:
    """The sweep folder to read: a local or NFS one as it is, a bucket's (s3://, gs://) as a
    temporary copy of its STATUS_FILES and of its whole checkpoints with their files empty (so
    that a trial's newest one is known, and what it holds; the bytes are fetched when read),
    read with the credentials Ray wrote them with. The small files are kept on this machine for the
    next read, which fetches only those the bucket lists otherwise (sweeps.sweep_files_cache)."""
    folder = local_folder(location)
    if folder is not None:
        yield str(folder)
        return
    with bucket_copy(location, lambda name: any(fnmatch.fnmatch(name, pattern) for pattern in STATUS_FILES),
                     "not a sweep folder: nothing of a sweep there", keep=True) as (copy, listed):
        files = [PurePosixPath(relative) for relative in listed]
        # A store lists an object once it is whole: a checkpoint whose upload was cut off (its
        # folder made, its state.pt not) has no CHECKPOINT_FILE listed.
        whole = {f.parent for f in files if f.name == CHECKPOINT_FILE and CHECKPOINT_RE.match(f.parent.name)}
        for checkpoint in whole:
            Path(copy, checkpoint).mkdir(parents=True, exist_ok=True)
        empty_files(Path(copy), [f for f in files if f.parent in whole] + [c / LISTED_WHOLE for c in whole])
        yield copy


def empty_files(copy: Path, paths: list[PurePosixPath]) -> None:
    """Make the empty files ``paths`` below ``copy`` (in folders that exist), each a link to one
    beside ``copy`` (in bucket_copy's temporary folder): a file made cost 30 times a link on a
    cloud VM's disk (0.9 ms against 0.03), and a sweep lists thousands."""
    empty = copy.with_name(LISTED_WHOLE)
    empty.touch()
    for relative in paths:
        try:
            os.link(empty, copy / relative)
        except OSError:  # a filesystem without links
            (copy / relative).touch()


# pyarrow reads a whole S3 object (an input stream's ``read()``) in ranged requests of about
# 256 KiB, one after another: 319 for 80 MiB, 18 s against 0.5 s in 16 MiB pieces (moto's S3
# server on loopback, which answers each request in a time that grows with the object; S3 in a
# round trip each).
DOWNLOAD_PIECE = 2**24


# A store answers each request in a round trip (tens of milliseconds to S3), and a sweep's
# small files are two or three a trial: they are fetched this many at a time.
FETCH_THREADS = 8


def download(filesystem: pyarrow.fs.FileSystem, path: str, target: Path) -> None:
    """Copy a store's file into ``target``, in DOWNLOAD_PIECE pieces."""
    with filesystem.open_input_stream(path) as stream, target.open("wb") as out:
        shutil.copyfileobj(stream, out, DOWNLOAD_PIECE)


def unreadable(location: str, exc: OSError) -> ValueError:
    """The one-line error for a bucket that cannot be listed or read (credentials, network)."""
    return ValueError(f"{location}: cannot be read ({' '.join(str(exc).split())})")


def listed_files(location: str) -> tuple[pyarrow.fs.FileSystem, str, list[pyarrow.fs.FileInfo]]:
    """(filesystem, root, every file under a bucket's folder, each a FileInfo with its size and
    time); ``unreadable`` where it cannot be listed."""
    try:
        filesystem, root = bucket_filesystem(location)
        root = root.rstrip("/")
        found = filesystem.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise unreadable(location, exc) from None
    return filesystem, root, [info for info in found if info.type == pyarrow.fs.FileType.File]


def fetch_files(filesystem: pyarrow.fs.FileSystem, root: str, paths: list[str], into: Path) -> None:
    """Copy the store's files ``paths`` (under ``root``) into the folder ``into``, each in its
    place below root, FETCH_THREADS at a time."""
    def fetch(path: str) -> None:
        target = into / path[len(root) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        download(filesystem, path, target)

    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        list(pool.map(fetch, paths))


@contextlib.contextmanager
def bucket_copy(location: str, wanted=lambda name: True, nothing: str = "nothing there",
                keep: bool = False) -> Iterator[tuple[str, list[str]]]:
    """(a temporary local copy of the files under a bucket's folder whose names ``wanted`` keeps,
    every file listed there as sorted paths relative to it); a ValueError ``location: nothing``
    where no file is kept, or ``location: cannot be read (why)``. With ``keep``, through the
    cache of a sweep's small files (sweeps.sweep_files_cache)."""
    filesystem, root, listed = listed_files(location)
    files = [info for info in listed if wanted(info.base_name)]
    if not files:
        raise ValueError(f"{location}: {nothing}")
    with tempfile.TemporaryDirectory(prefix="medsweep-bucket-") as temporary:
        copy = Path(temporary, local_copy_name(root))
        try:
            if keep:
                copy_through_cache(location, root, files, copy,
                                   lambda paths: fetch_files(filesystem, root, paths, copy))
            else:
                fetch_files(filesystem, root, [info.path for info in files], copy)
        except OSError as exc:
            raise unreadable(location, exc) from None
        yield str(copy), sorted(info.path[len(root) + 1:] for info in listed)


@contextlib.contextmanager
def fetched(location: str | os.PathLike, what: str = "nothing there") -> Iterator[str]:
    """A folder to read, local as it is, a bucket's (s3://, gs://) fetched whole into a temporary
    folder; a ValueError from the body names the bucket's folder, not the copy."""
    text = os.fspath(location)
    if local_folder(text) is not None:
        yield text
        return
    with bucket_copy(text, nothing=what) as (copy, _), named_as(copy, text.rstrip("/")):
        yield copy


@contextlib.contextmanager
def fetched_file(location: str) -> Iterator[str]:
    """A file to read, local as it is, a bucket's (s3://, gs://) copied into a temporary folder;
    a ValueError names the URI where it is not there or cannot be read, and one from the body
    names it for the copy."""
    if local_folder(location) is not None:
        yield location
        return
    with tempfile.TemporaryDirectory(prefix="medsweep-bucket-") as temporary:
        target = Path(temporary, PurePosixPath(location).name)
        try:
            filesystem, path = bucket_filesystem(location)
            download(filesystem, path, target)
        except FileNotFoundError:
            raise ValueError(f"{location}: no such file") from None
        except OSError as exc:
            raise unreadable(location, exc) from None
        with named_as(str(target), location):
            yield str(target)


@contextlib.contextmanager
def named_as(copy: str, location: str) -> Iterator[None]:
    """A ValueError raised inside names ``location`` where it names its temporary ``copy``; of
    the same type where that type is made from a message alone (a ConfigError stays one)."""
    try:
        yield
    except ValueError as exc:
        if copy not in str(exc):
            raise
        message = str(exc).replace(copy, location)
        try:
            renamed = type(exc)(message)
        except TypeError:  # e.g. json.JSONDecodeError, UnicodeDecodeError: more than a message
            renamed = ValueError(message)
        raise renamed from None


def find_sweep_dirs(storage_path: str | os.PathLike) -> list[Path]:
    """Sweep folders directly under a Ray ``storage_path`` (or the path itself if it is one)."""
    p = Path(storage_path)
    if _is_sweep_dir(p):
        return [p]
    if not p.is_dir():
        return []
    return sorted(c for c in p.iterdir() if c.is_dir() and _is_sweep_dir(c))


def parse_experiment_state(text: str, source: str) -> dict[str, Any]:
    """Ray's experiment state as JSON, checked for the parts a restore needs."""
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: corrupted experiment state (not JSON: {exc.msg} at line {exc.lineno})") from None
    if not isinstance(state, dict) or not isinstance(state.get("trial_data"), list) \
            or not isinstance(state.get("runner_data"), dict):
        raise ValueError(f"{source}: corrupted experiment state (no trial_data list or runner_data mapping)")
    return state


# Ray rewrites the experiment state in place after every result, so a reader beside a running
# sweep can catch it half written (25 of 263,571 reads in 25 s of a 2-trial sweep); a file that
# parses on a later read was only being written.
STATE_READ_TRIES = 5
STATE_READ_PAUSE_S = 0.1


def read_experiment_state(path: Path) -> dict[str, Any]:
    """`parse_experiment_state` of the file at `path`, read again while it does not parse."""
    tries = STATE_READ_TRIES
    while True:
        tries -= 1
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"{path}: unreadable experiment state ({exc.strerror})") from None
        try:
            return parse_experiment_state(text, str(path))
        except ValueError:
            if tries == 0:
                raise
        time.sleep(STATE_READ_PAUSE_S)


def split_trial_item(item: Any) -> tuple[dict | None, dict | None]:
    """One item of Ray's trial_data as (metadata, runtime state); None for a part not JSON."""
    def load(x: Any) -> dict | None:
        if isinstance(x, dict):
            return x
        if isinstance(x, str):
            try:
                v = json.loads(x)
            except json.JSONDecodeError:
                return None
            return v if isinstance(v, dict) else None
        return None

    if isinstance(item, (list, tuple)):
        return load(item[0]) if item else None, load(item[1]) if len(item) > 1 else None
    return load(item), None


def newest_state(sweep_dir: Path) -> Path | None:
    """The experiment state file Ray restores: the greatest name (a timestamp), not the newest
    mtime, which a copy made without keeping times (`cp -r`, a bucket sync) scrambles."""
    return max(sweep_dir.glob(STATE_GLOB), key=lambda f: f.name, default=None)


def state_trial_folders(sweep_dir: Path) -> set[str]:
    """The trial folders the newest experiment state lists: those a resume continues in place.
    Ray saves the state at most every few seconds, so a trial started since is started anew in a
    folder of its own by a resume after the driver is killed (its first folder left behind)."""
    state = newest_state(Path(sweep_dir))
    if state is None:
        return set()
    items = (split_trial_item(item)[0] for item in read_experiment_state(state)["trial_data"])
    return {meta["relative_logdir"] for meta in items if meta and meta.get("relative_logdir")}


def newest_checkpoint(trial_dir: Path) -> Path | None:
    """A trial folder's newest whole checkpoint: of its ``checkpoint_NNNNNN`` folders holding a
    CHECKPOINT_FILE (one without: a save, copy or upload cut off before it), the greatest number
    whose files are whole; where none is, the greatest (reading it then says what is wrong)."""
    try:
        entries = list(os.scandir(trial_dir))
    except OSError:
        return None
    numbered = sorted(((int(m.group(1)), Path(entry.path)) for entry in entries
                       if (m := CHECKPOINT_RE.match(entry.name)) and Path(entry.path, CHECKPOINT_FILE).is_file()),
                      reverse=True)
    return next((path for _, path in numbered if _whole(path)), numbered[0][1] if numbered else None)


def _whole(checkpoint: Path) -> bool:
    """Whether a checkpoint's files end as they were written. A copy onto a local or NFS disk cut
    off mid-file (a node lost while Ray copied it into storage) leaves a file cut short; torch's
    state.pt and numpy's selection.npz are zip files, whose directory is the last thing written.
    A bucket lists an object only once it is whole (readable_copy's mark)."""
    if (checkpoint / LISTED_WHOLE).exists():
        return True
    return all(zipfile.is_zipfile(path) for path in (checkpoint / CHECKPOINT_FILE, checkpoint / SELECTION_FILE)
               if path.exists())


def read_result_lines(path: Path) -> list[dict[str, Any]]:
    """A trial's ``result.json`` reports (none when there is no file). Ray writes each whole
    line at once, so only a last line without its newline (the trial still writing, a sync in
    progress) may be cut short and is skipped; any other line that is not a JSON object means
    the file is corrupted (a one-line ValueError)."""
    if not path.exists():
        return []
    out = []
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if isinstance(record, dict):
            out.append(record)
        elif number < len(lines):
            raise ValueError(f"{path}: corrupted result (line {number} is not a JSON object)")
    return out


def trial_id_from_folder(folder: Path) -> str | None:
    """The trial id of a trial folder: its first report's, else its name's (None if neither)."""
    try:
        first = read_result_lines(folder / RESULT_FILE)[:1]
    except (OSError, ValueError):
        first = []
    if first and first[0].get("trial_id"):
        return str(first[0]["trial_id"])
    match = _TRIAL_ID_RE.search(folder.name)
    return match.group(1) if match else None
