"""sweeps.checkpoint_cache: a bucket's checkpoint is fetched once and read from this machine
after, fetched anew when the bucket holds another under its name, and the least recently read go
past the size limit. The bucket is a local folder seen through pyarrow, as tests/test_bucket_copy.py
does; the path against a real S3 server: tests/test_bucket.py."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs
import pytest

from sweeps import checkpoint_cache, folder

URI = "s3://bucket/sweep/trial"


class Counting(pyarrow.fs.LocalFileSystem):
    """The local filesystem, counting the files read from it."""

    opened: list[str] = []

    def open_input_stream(self, path):
        Counting.opened.append(path)
        return super().open_input_stream(path)


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    root = tmp_path / "bucket"
    for number, size in ((1, 1000), (2, 3000), (3, 5000)):
        checkpoint = root / f"checkpoint_00000{number}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "state.pt").write_bytes(bytes([number]) * size)
        (checkpoint / "selection.npz").write_bytes(b"s")
    Counting.opened = []

    def filesystem(location):
        return Counting(), str(root) + location.removeprefix(URI)

    monkeypatch.setattr(folder, "bucket_filesystem", filesystem)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(checkpoint_cache.CACHE_GB_ENV, raising=False)
    return root


def read(name: str) -> bytes:
    with checkpoint_cache.cached_checkpoint(f"{URI}/{name}") as local:
        assert Path(local).name == name  # named as the bucket's folder
        return Path(local, "state.pt").read_bytes()


def kept() -> list[str]:
    cache = checkpoint_cache.cache_folder()
    return sorted(p.parent.name for p in cache.glob("*/checkpoint_*/state.pt")) if cache.exists() else []


def test_a_checkpoint_is_fetched_once_then_read_from_the_cache(bucket, capsys):
    assert read("checkpoint_000001") == b"\x01" * 1000
    assert len(Counting.opened) == 2  # state.pt and selection.npz
    assert capsys.readouterr().err == (f"medsweep: fetching {URI}/checkpoint_000001 (0.0 MiB) into "
                                       f"{checkpoint_cache.cache_folder()}\n")
    assert read("checkpoint_000001") == b"\x01" * 1000
    assert len(Counting.opened) == 2
    assert capsys.readouterr().err == ""
    assert kept() == ["checkpoint_000001"]


def test_a_checkpoint_written_again_under_its_name_is_fetched_anew(bucket):
    assert read("checkpoint_000001") == b"\x01" * 1000
    (bucket / "checkpoint_000001" / "state.pt").write_bytes(b"\x07" * 1000)  # same size, newer
    os.utime(bucket / "checkpoint_000001" / "state.pt", (1e9, 1e9))
    assert read("checkpoint_000001") == b"\x07" * 1000
    assert len(Counting.opened) == 4


def test_the_least_recently_read_go_past_the_limit(bucket, monkeypatch):
    monkeypatch.setenv(checkpoint_cache.CACHE_GB_ENV, str(7000 / 2**30))
    read("checkpoint_000001")
    read("checkpoint_000002")
    assert kept() == ["checkpoint_000001", "checkpoint_000002"]
    read("checkpoint_000001")  # read again: now the most recent
    read("checkpoint_000003")  # 5,001 bytes: checkpoint 2 (3,001) goes, 1 (1,001) stays
    assert kept() == ["checkpoint_000001", "checkpoint_000003"]
    opened = len(Counting.opened)
    read("checkpoint_000001")
    assert len(Counting.opened) == opened


def test_one_larger_than_the_limit_or_a_cache_turned_off_is_read_from_a_temporary_copy(bucket, monkeypatch):
    monkeypatch.setenv(checkpoint_cache.CACHE_GB_ENV, str(4000 / 2**30))
    assert read("checkpoint_000003") == b"\x03" * 5000
    monkeypatch.setenv(checkpoint_cache.CACHE_GB_ENV, "0")
    assert read("checkpoint_000001") == b"\x01" * 1000
    assert kept() == []


class Timeless(Counting):
    """A store that lists its files without their times."""

    def get_file_info(self, selector):
        return [pyarrow.fs.FileInfo(info.path, info.type, size=info.size) for info in super().get_file_info(selector)]


def test_a_store_that_lists_no_times_is_read_from_a_temporary_copy(bucket, monkeypatch):
    monkeypatch.setattr(folder, "bucket_filesystem", lambda location: (
        Timeless(), str(bucket) + location.removeprefix(URI)))
    assert read("checkpoint_000001") == b"\x01" * 1000
    assert kept() == []


def test_a_cache_folder_that_cannot_be_written_falls_back_to_a_temporary_copy(bucket, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    assert read("checkpoint_000002") == b"\x02" * 3000
    assert read("checkpoint_000002") == b"\x02" * 3000
    assert len(Counting.opened) == 4


def test_a_fetch_cut_off_is_never_read_and_goes_after_a_day(bucket):
    read("checkpoint_000001")
    partial = checkpoint_cache.cache_folder() / ".partial-killed"
    (partial / "checkpoint_000002").mkdir(parents=True)
    (partial / "checkpoint_000002" / "state.pt").write_bytes(b"\x02")
    assert read("checkpoint_000002") == b"\x02" * 3000
    assert partial.exists()  # it may still be under way
    os.utime(partial, (1e9, 1e9))
    read("checkpoint_000003")
    assert not partial.exists()


def test_errors_are_one_line_naming_the_bucket(bucket, monkeypatch):
    with pytest.raises(ValueError, match=rf"^{URI}/checkpoint_000009: no state.pt there$"):
        with checkpoint_cache.cached_checkpoint(f"{URI}/checkpoint_000009", "no state.pt there"):
            pass
    with pytest.raises(ValueError, match=rf"^{URI}/checkpoint_000001/state.pt: bad$"):
        with checkpoint_cache.cached_checkpoint(f"{URI}/checkpoint_000001") as local:
            raise ValueError(f"{local}/state.pt: bad")
    for bad in ("ten", "-1", "nan"):
        monkeypatch.setenv(checkpoint_cache.CACHE_GB_ENV, bad)
        with pytest.raises(ValueError, match=rf"^MEDSWEEP_CHECKPOINT_CACHE_GB: '{bad}' is not a size in GiB; "
                                             r"allowed: a number, 0 \(keep no checkpoint\) or more \(default 10\)$"):
            read("checkpoint_000001")


def test_a_local_checkpoint_is_read_where_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoint_cache.CACHE_GB_ENV, "ten")  # a bucket's setting: not read
    with checkpoint_cache.cached_checkpoint(tmp_path) as local:
        assert local == str(tmp_path)
