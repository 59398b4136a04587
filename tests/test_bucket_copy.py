"""sweeps.folder.bucket_copy and readable_copy, what status, collect and evaluate read of a bucket
through: the files asked for, in a temporary folder of the bucket folder's name, and every whole
checkpoint listed there (its files empty), whether the store lists folders (GCS, moto) or only the
paths of files (S3 may); and newest_checkpoint, which picks a trial's checkpoint from either. The
whole path against a real S3 server: tests/test_bucket.py."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.fs
import pytest
import torch

from medvit.checkpoint import Selection, write_selection
from sweeps import folder
from sweeps.paths import refuse_uri_options


class FilesOnly:
    """A local folder seen as a store that lists no folders, only files."""

    def __init__(self):
        self.local = pyarrow.fs.LocalFileSystem()

    def get_file_info(self, selector):
        return [info for info in self.local.get_file_info(selector) if info.type == pyarrow.fs.FileType.File]

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "bucket" / "retina"
    for name, text in (("experiment_state-2026.json", "{}"), ("medsweep_spec.yaml", "name: retina\n"),
                       ("t1/params.json", "{}"), ("t1/error.txt", "boom\n"), ("t1/events.out.tfevents.1", "x"),
                       ("t1/checkpoint_000001/state.pt", "weights"), ("t1/checkpoint_000003/state.pt", "weights"),
                       ("t1/checkpoint_000003/selection.npz", "scores"),
                       # an upload cut off: its small file there, its state.pt not
                       ("t1/checkpoint_000004/selection.npz", "scores")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("store", ["lists folders", "lists files only"])
def test_a_bucket_folder_is_copied_with_the_files_asked_for_and_its_whole_checkpoints(sweep, store, monkeypatch):
    filesystem = pyarrow.fs.LocalFileSystem() if store == "lists folders" else FilesOnly()
    monkeypatch.setattr(folder, "bucket_filesystem", lambda location: (filesystem, str(sweep) + "/"))
    with folder.readable_copy("s3://bucket/retina/") as copy:
        files = {str(p.relative_to(copy)): p.stat().st_size for p in Path(copy).rglob("*") if p.is_file()}
        assert Path(copy).name == "retina"
        assert files == {"experiment_state-2026.json": 2, "medsweep_spec.yaml": 13, "t1/error.txt": 5,
                         "t1/params.json": 2, "t1/checkpoint_000001/state.pt": 0, "t1/checkpoint_000003/state.pt": 0,
                         "t1/checkpoint_000003/selection.npz": 0, f"t1/checkpoint_000001/{folder.LISTED_WHOLE}": 0,
                         f"t1/checkpoint_000003/{folder.LISTED_WHOLE}": 0}
        assert folder.newest_checkpoint(Path(copy, "t1")) == Path(copy, "t1", "checkpoint_000003")
    assert not Path(copy).exists()  # removed after
    with folder.bucket_copy("s3://bucket/retina/t1/checkpoint_000003") as (copy, listed):
        assert "t1/checkpoint_000003/state.pt" in listed and "t1/params.json" in listed  # of the monkeypatched root
        assert "t1/checkpoint_000004/selection.npz" in listed  # listed, but no whole checkpoint
        assert Path(copy, "t1/checkpoint_000003/state.pt").read_text() == "weights"


def test_the_newest_checkpoint_is_the_greatest_number_holding_its_file(tmp_path):
    trial = tmp_path / "trial"
    assert folder.newest_checkpoint(trial) is None  # no such folder
    for name in ("checkpoint_000009", "checkpoint_000010", "checkpoint_000100", "checkpoint_x", "other_000200"):
        (trial / name).mkdir(parents=True)
        (trial / name / "state.pt").write_bytes(b"w")
    (trial / "checkpoint_000101").mkdir()  # a save or copy cut off
    assert folder.newest_checkpoint(trial) == trial / "checkpoint_000100"
    (trial / "checkpoint_000101" / "state.pt").write_bytes(b"w")
    assert folder.newest_checkpoint(trial) == trial / "checkpoint_000101"
    (trial / "empty").mkdir()
    assert folder.newest_checkpoint(trial / "empty") is None


def test_a_checkpoint_cut_short_on_a_disk_is_passed_over_for_the_one_before(tmp_path):
    """Ray copies a checkpoint into a local or NFS storage file by file: a node lost mid-copy
    leaves a state.pt or selection.npz cut short (even empty), which torch or numpy cannot read."""
    trial = tmp_path / "trial"
    for number in (1, 2, 3):
        checkpoint = trial / f"checkpoint_00000{number}"
        checkpoint.mkdir(parents=True)
        torch.save({"weights": torch.zeros(4096)}, checkpoint / "state.pt")
        write_selection(checkpoint, Selection(np.zeros((8, 2)), False, {"model": "resnet18"}))
    assert folder.newest_checkpoint(trial) == trial / "checkpoint_000003"
    newest = (trial / "checkpoint_000003" / "state.pt").read_bytes()
    (trial / "checkpoint_000003" / "state.pt").write_bytes(newest[:len(newest) - 1])
    assert folder.newest_checkpoint(trial) == trial / "checkpoint_000002"
    (trial / "checkpoint_000003" / "state.pt").write_bytes(newest)
    (trial / "checkpoint_000003" / "selection.npz").write_bytes(b"")
    assert folder.newest_checkpoint(trial) == trial / "checkpoint_000002"
    (trial / "checkpoint_000003" / "selection.npz").unlink()  # checkpoints written before the file
    assert folder.newest_checkpoint(trial) == trial / "checkpoint_000003"
    for number in (1, 2, 3):  # none whole: the newest, whose reading names what is wrong with it
        (trial / f"checkpoint_00000{number}" / "state.pt").write_bytes(b"not a torch file")
    assert folder.newest_checkpoint(trial) == trial / "checkpoint_000003"


class FarAway(pyarrow.fs.LocalFileSystem):
    """The local filesystem as a store a round trip away, counting the reads under way at once;
    a file named ``broken`` cannot be read."""

    def __init__(self):
        super().__init__()
        self.lock, self.open, self.most = threading.Lock(), 0, 0

    def open_input_stream(self, path):
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        time.sleep(0.02)
        with self.lock:
            self.open -= 1
        if path.endswith("broken"):
            raise OSError("When reading information for key 'broken': AWS Error NETWORK_CONNECTION")
        return super().open_input_stream(path)


def test_a_sweeps_small_files_are_fetched_several_at_a_time(tmp_path, monkeypatch):
    root = tmp_path / "bucket" / "sweep"
    for trial in range(20):
        (root / f"t{trial}").mkdir(parents=True)
        (root / f"t{trial}" / "result.json").write_text(f"{trial}\n")
    store = FarAway()
    monkeypatch.setattr(folder, "bucket_filesystem", lambda location: (store, str(root)))
    with folder.bucket_copy("s3://b/sweep") as (copy, listed):
        assert [Path(copy, f"t{trial}", "result.json").read_text() for trial in range(20)] == [
            f"{trial}\n" for trial in range(20)]
    assert 1 < store.most <= folder.FETCH_THREADS
    (root / "t3" / "broken").write_text("")
    with pytest.raises(ValueError, match=r"^s3://b/sweep: cannot be read \(When reading information for key "
                                         r"'broken': AWS Error NETWORK_CONNECTION\)$"):
        with folder.bucket_copy("s3://b/sweep"):
            pass


def test_nothing_to_copy_or_a_bucket_that_cannot_be_read_is_one_line(sweep, monkeypatch):
    checkpoint = sweep / "t1" / "checkpoint_000001"  # a state.pt only: nothing status or collect reads
    monkeypatch.setattr(folder, "bucket_filesystem", lambda location: (pyarrow.fs.LocalFileSystem(), str(checkpoint)))
    with pytest.raises(ValueError, match=r"^s3://b/c: not a sweep folder: nothing of a sweep there$"):
        with folder.readable_copy("s3://b/c"):
            pass

    def unreachable(location):
        raise OSError("When listing objects under key 'retina' in bucket 'bucket': AWS Error NETWORK_CONNECTION\n"
                      "during ListObjectsV2 operation: curlCode: 6, Couldn't resolve host name")

    monkeypatch.setattr(folder, "bucket_filesystem", unreachable)
    with pytest.raises(ValueError) as raised:
        with folder.bucket_copy("s3://bucket/retina"):
            pass
    assert str(raised.value) == ("s3://bucket/retina: cannot be read (When listing objects under key 'retina' in "
                                 "bucket 'bucket': AWS Error NETWORK_CONNECTION during ListObjectsV2 operation: "
                                 "curlCode: 6, Couldn't resolve host name)")


def test_an_error_about_the_temporary_copy_names_the_bucket_and_keeps_its_type():
    from medvit.config import ConfigError

    for raised, expected in ((ConfigError("config: /tmp/c/best.yaml must hold a mapping"), ConfigError),
                             (json.JSONDecodeError("Expecting value in /tmp/c/best.yaml", "", 0), ValueError)):
        with pytest.raises(expected) as caught:
            with folder.named_as("/tmp/c", "s3://b/sweep"):
                raise raised
        assert "s3://b/sweep/best.yaml" in str(caught.value) and "/tmp/c" not in str(caught.value)
    other = ValueError("nothing about the copy")
    with pytest.raises(ValueError) as caught:
        with folder.named_as("/tmp/c", "s3://b/sweep"):
            raise other
    assert caught.value is other


def test_a_bucket_uri_with_options_is_one_line_and_a_local_path_may_hold_the_characters(tmp_path):
    with pytest.raises(ValueError, match=r"^'s3://b/sweep\?region=eu-west-1': options in a URI are not supported; "
                                         r"allowed: s3://<bucket>/<prefix>, with an S3-compatible store's address"):
        with folder.readable_copy("s3://b/sweep?region=eu-west-1"):
            pass
    local = tmp_path / "run#1?"
    (local / "t1").mkdir(parents=True)
    with folder.readable_copy(str(local)) as copy:
        assert copy == str(local)
    refuse_uri_options(f"file://{local}")
