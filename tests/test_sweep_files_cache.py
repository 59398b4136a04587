"""sweeps.sweep_files_cache: what `status`, `collect`, `confirm` and `ensemble` read of a sweep in
a bucket is fetched once and copied from this machine after, except the files the bucket lists
otherwise (a running trial's reports, the state) and those written too recently to be told from a
second write in the same second. The bucket is a local folder seen through pyarrow, as
tests/test_bucket_copy.py does; the path against a real S3 server: tests/test_bucket.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.fs
import pytest

from sweeps import folder, sweep_files_cache

URI = "s3://bucket/sweep"
TRIALS = 4


class Counting(pyarrow.fs.LocalFileSystem):
    """The local filesystem, recording the paths read from it."""

    opened: list[str] = []

    def open_input_stream(self, path):
        Counting.opened.append(path)
        return super().open_input_stream(path)


def age(path: Path, seconds: float) -> None:
    """Give ``path`` the time it would have had ``seconds`` ago."""
    then = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(then, then))


@pytest.fixture
def bucket(tmp_path, monkeypatch) -> Path:
    """A sweep of TRIALS finished trials, its files written two minutes ago."""
    root = tmp_path / "bucket" / "sweep"
    files = {"experiment_state-2026.json": "{}", "medsweep_spec.yaml": "name: sweep\n"}
    for trial in range(TRIALS):
        files |= {f"t{trial}/params.json": f'{{"alpha": {trial}}}', f"t{trial}/result.json": f"{trial}\n" * 50,
                  f"t{trial}/events.out.tfevents.1": "not read"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
        age(root / name, 120)
    monkeypatch.setattr(folder, "bucket_filesystem", lambda location: (Counting(), str(root)))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return root


def read() -> tuple[dict[str, str], list[str]]:
    """(every file of readable_copy's copy and its text, the store's paths it read)."""
    Counting.opened = []
    with folder.readable_copy(URI) as copy:
        return {str(p.relative_to(copy)): p.read_text() for p in Path(copy).rglob("*") if p.is_file()}, \
            sorted(Path(path).relative_to(bucket_root()).as_posix() for path in Counting.opened)


def bucket_root() -> Path:
    return Path(folder.bucket_filesystem(URI)[1])


def test_a_second_read_fetches_only_what_the_bucket_lists_otherwise(bucket):
    first, fetched = read()
    assert len(fetched) == 2 + 2 * TRIALS and "t0/events.out.tfevents.1" not in first
    assert read() == (first, [])  # every file from the cache, as it is in the bucket

    (bucket / "t1" / "result.json").write_text("1\n" * 51)  # a running trial's new epoch
    (bucket / "experiment_state-2026.json").write_text('{"a": 1}')
    files, fetched = read()
    assert fetched == ["experiment_state-2026.json", "t1/result.json"]
    assert files == first | {"t1/result.json": "1\n" * 51, "experiment_state-2026.json": '{"a": 1}'}
    # Written just now: not kept, since a second write in the same second of the store's clock could
    # have the same size and time; fetched at every read until it settles, then kept.
    assert read()[1] == ["experiment_state-2026.json", "t1/result.json"]
    age(bucket / "t1" / "result.json", sweep_files_cache.SETTLED_S + 1)
    assert read()[1] == ["experiment_state-2026.json", "t1/result.json"]
    assert read() == (files, ["experiment_state-2026.json"])

    (bucket / "t2" / "params.json").unlink()  # a file the bucket no longer lists is not copied from the cache
    assert "t2/params.json" not in read()[0]


def test_a_kept_file_the_bucket_lists_with_another_size_or_time_is_fetched_again(bucket):
    first, _ = read()
    kept = sweep_files_cache.sweep_files_folder(URI) / "t0" / "result.json"
    assert kept.read_text() == first["t0/result.json"]
    kept.write_text("0\n" * 49)  # cut short: not the size the bucket lists
    assert read() == (first, ["t0/result.json"])
    os.utime(kept, ns=(0, 0))  # the same size, another time
    assert read() == (first, ["t0/result.json"])
    assert read()[1] == []


def test_a_cache_that_cannot_be_written_reads_the_bucket_as_without_one(bucket, tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    first, fetched = read()
    assert read() == (first, fetched) and len(fetched) == 2 + 2 * TRIALS


def test_sweeps_not_read_for_a_month_are_removed_and_the_others_kept(bucket):
    read()
    unread = sweep_files_cache.sweep_files_folder("s3://bucket/older")
    recent = sweep_files_cache.sweep_files_folder("s3://bucket/recent")
    for entry, days in ((unread, sweep_files_cache.UNREAD_DAYS + 1), (recent, sweep_files_cache.UNREAD_DAYS - 1)):
        (entry / "t0").mkdir(parents=True)
        (entry / "t0" / "result.json").write_text("0\n")
        age(entry, days * 86400)
    read()
    assert not unread.exists() and recent.exists()
    assert sweep_files_cache.sweep_files_folder(URI).exists()


def test_a_local_sweep_folder_is_read_where_it_is_and_nothing_is_kept(bucket, tmp_path):
    with folder.readable_copy(str(bucket)) as copy:
        assert copy == str(bucket)
    assert not (tmp_path / "cache").exists()


def test_a_filesystem_without_links_gets_copies_and_empty_files(bucket, monkeypatch):
    (bucket / "t0" / "checkpoint_000002").mkdir()
    (bucket / "t0" / "checkpoint_000002" / "state.pt").write_text("weights")
    first, _ = read()

    def refused(source, target):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", refused)
    assert read() == (first, [])
    assert first["t0/checkpoint_000002/state.pt"] == "" and f"t0/checkpoint_000002/{folder.LISTED_WHOLE}" in first
