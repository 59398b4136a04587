"""medvit.atomic: the one writer of whole files, and the writers built on it."""

from __future__ import annotations

import errno
import json
import os

import pytest

from medvit.atomic import atomic_path, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer fails")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_symbolic_link_is_written_through_to_its_target(tmp_path):
    real = tmp_path / "real" / "table.txt"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_text_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert (real.stat().st_mode & 0o777) == 0o644


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard links", "no hard links (FAT, some mounts)"])
def test_a_write_that_must_not_replace_keeps_the_file_there(hard_links, tmp_path, monkeypatch):
    if not hard_links:
        def no_link(source, target):
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    target = tmp_path / "metrics.json"
    write_text_atomic(target, "first", replace=False)
    with pytest.raises(FileExistsError):
        write_text_atomic(target, "second", replace=False)
    assert target.read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    assert (target.stat().st_mode & 0o777) == 0o644


def test_json_parquet_and_npz_writers_leave_no_temporary_behind(tmp_path):
    import numpy as np
    import pyarrow as pa

    from analysis.collect import _write_atomic
    from medvit.jsonio import write_json
    from medvit.synthetic import write_synthetic

    write_json(tmp_path / "out" / "result.json", {"acc": float("nan")})
    _write_atomic(pa.table({"a": [1]}), tmp_path / "out" / "results.parquet")
    path = write_synthetic("breastmnist", tmp_path / "out", size=28, n_per_split=(4, 2, 2), seed=0)
    assert json.loads((tmp_path / "out" / "result.json").read_text()) == {"acc": None}
    assert np.load(path)["train_images"].shape[0] == 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["breastmnist.npz", "result.json", "results.parquet"]
