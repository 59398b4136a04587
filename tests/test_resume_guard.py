"""What the launcher writes beside Ray's state so that `medsweep resume` can refuse a spec edited
since launch, and the per-trial memory request. No Ray started here: both are checked before it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import retina_spec

from sweeps.launch import (FINGERPRINT_FILE, check_unedited, ray_resources, save_spec, spec_fingerprint,
                           sweep_dir)
from sweeps.paths import SweepError
from sweeps.spec import spec_from_dict


def edited(spec, **changes) -> str:
    """The spec file's text after a user's edit."""
    return spec_from_dict({**spec.to_dict(), **changes}, source="edited").to_yaml()


@pytest.fixture
def launched(tmp_path):
    spec = retina_spec(tmp_path, "guarded")
    save_spec(spec)
    return spec


def test_save_spec_writes_a_fingerprint_of_every_field_but_where_it_lives(launched):
    folder = Path(sweep_dir(launched))
    written = json.loads((folder / FINGERPRINT_FILE).read_text())
    assert written == spec_fingerprint((folder / "medsweep_spec.yaml").read_text())
    assert {"dataset", "search", "train", "num_samples"} <= written.keys()
    assert "storage" not in written and "description" not in written
    assert (folder / "medsweep_spec.yaml").exists()


@pytest.mark.parametrize("changes, named", [
    ({"dataset": "pneumoniamnist", "search": {"lr": {"loguniform": [1e-4, 1e-2]}}}, "dataset, search"),
    ({"num_samples": 7}, "num_samples"),
    ({"search": {"lr": {"loguniform": [1e-4, 1e-2]}}}, "search"),
])
def test_an_edited_field_is_named_in_one_line(launched, changes, named):
    with pytest.raises(SweepError) as caught:
        check_unedited(sweep_dir(launched), edited(launched, **changes))
    message = str(caught.value)
    assert message.startswith("sweep_dir: ") and f": {named} edited since the sweep started" in message
    assert "\n" not in message and "medsweep sweep" in message


def test_a_moved_folder_or_new_description_is_not_an_edit(launched, tmp_path):
    check_unedited(sweep_dir(launched), edited(launched, storage=str(tmp_path / "elsewhere"), description="moved"))


def test_how_often_trials_checkpoint_may_change_on_resume(launched):
    # it changes how much a restarted trial redoes, never what a trial computes
    check_unedited(sweep_dir(launched), edited(launched, checkpoint_every=5))


def test_comments_and_layout_are_not_edits_nor_fields_a_newer_medsweep_adds(launched):
    folder = Path(sweep_dir(launched))
    text = (folder / "medsweep_spec.yaml").read_text()
    check_unedited(str(folder), "# tuned by hand\n" + text.replace(": ", ":   "))
    # What an older medsweep wrote lacks a field the running one declares with a default: the
    # file is what was launched, so the parsed spec's new default is no edit.
    older = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("  seed:"))
    assert older != text
    (folder / FINGERPRINT_FILE).write_text(json.dumps(spec_fingerprint(older)))
    check_unedited(str(folder), older)


def test_a_sweep_without_a_fingerprint_resumes_as_before(launched):
    (Path(sweep_dir(launched)) / FINGERPRINT_FILE).unlink()
    check_unedited(sweep_dir(launched), edited(launched, num_samples=7))


@pytest.mark.parametrize("text", ["", "[1, 2]", "{not json"])
def test_a_damaged_fingerprint_is_refused(launched, text):
    (Path(sweep_dir(launched)) / FINGERPRINT_FILE).write_text(text)
    with pytest.raises(SweepError, match=f"sweep_dir: .*{FINGERPRINT_FILE}: not the JSON object"):
        check_unedited(sweep_dir(launched), launched.to_yaml())


def test_memory_is_asked_of_ray_in_bytes_only_when_set(tmp_path):
    plain = retina_spec(tmp_path, "plain")
    assert ray_resources(plain) == {"CPU": plain.resources.cpu, "GPU": plain.resources.gpu}
    big = retina_spec(tmp_path, "big", resources={"cpu": 2, "gpu": 0, "memory_gib": 1.5})
    assert ray_resources(big) == {"CPU": 2, "GPU": 0, "memory": 1.5 * 2**30}


@pytest.mark.parametrize("memory", [-1, float("inf"), float("nan"), 2**64, True])
def test_memory_out_of_bounds_is_refused(tmp_path, memory):
    with pytest.raises(ValueError, match="memory_gib"):
        retina_spec(tmp_path, "bad", resources={"cpu": 1, "gpu": 0, "memory_gib": memory})


@pytest.mark.slow  # Azure's SDK tries every credential source first: about 20 s of waiting
def test_storage_azure_cannot_serve_is_one_line_even_when_its_sdk_runs_helpers(tmp_path, real_root):
    """abfs:// without credentials: Azure's SDK runs `az`, whose own complaint once reached the
    terminal beside medsweep's line."""
    env = {**os.environ, "MEDMNIST_ROOT": str(real_root)}
    done = subprocess.run([sys.executable, "-m", "medsweep", "sweep", "retinamnist-cpu", "--smoke", "--storage",
                           "abfs://container@account.dfs.core.windows.net/x"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("medsweep: error: storage: abfs:// cannot be used on this machine")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert list(tmp_path.iterdir()) == []
