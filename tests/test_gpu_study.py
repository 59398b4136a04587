"""studies/recipe/gpu_study.sh, the recipe study run as parallel run_arm.py processes: its CPU
quick mode, the same code path, trains every job it lists, leaves one record per run, brings the
folder back as one bundle, and a second call trains only the runs without a record."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from carry_helpers import without_ray_wheels

REPO = Path(__file__).resolve().parents[1]


def study(out: Path, real_root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = without_ray_wheels(out.parent / f"{out.name}-site")  # as carried by device_carry study
    return subprocess.run(["bash", "studies/recipe/gpu_study.sh", "--device", "cpu", "--quick", "--jobs", "2",
                           "--data-root", str(real_root), "--out", str(out), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_every_listed_run_trains_and_leaves_its_record(tmp_path, real_root):
    bundle = tmp_path.parent / f"{tmp_path.name}.tgz"  # outside the study's folder, as $OUT/study.tgz
    run = study(tmp_path, real_root, "--bundle", str(bundle))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    # The quick study's rows carry no extra fields: a job line ending in a blank made xargs
    # join it to the next, so one process got every seed's words as arguments and failed.
    jobs = (tmp_path / "jobs.txt").read_text().splitlines()
    assert jobs == ["a a 0", "a a 1", "b b 0", "b b 1"]
    records = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert sorted((r["arm"], r["seed"]) for r in records) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert {r["config"]["device"] for r in records} == {"cpu"}
    old = next(r for r in records if r["arm"] == "a")["config"]
    assert old["ema"] == 0.0 and old["select_window"] == 1  # arm a is the old recipe
    assert all(len(r["scores"]["val_scores"]) == r["config"]["subset"] for r in records)
    with tarfile.open(bundle) as tar:  # what a device call brings back: the whole folder
        assert {f"./runs/{label}-{seed}.jsonl" for label in "ab" for seed in "01"} | {"./all.jsonl"} <= set(tar.getnames())

    # the same command again, as a second call on a warm machine: every run kept, none trained
    before = {path.name: path.read_bytes() for path in (tmp_path / "runs").glob("*.jsonl")}
    again = study(tmp_path, real_root, "--bundle", str(bundle))
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(line for line in again.stdout.splitlines() if line.startswith("kept")) == [
        "kept a 0", "kept a 1", "kept b 0", "kept b 1"]
    assert {path.name: path.read_bytes() for path in (tmp_path / "runs").glob("*.jsonl")} == before
    assert len((tmp_path / "all.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_labels_pick_arms(tmp_path, real_root):
    run = study(tmp_path, real_root, "--labels", "b")
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "jobs.txt").read_text().splitlines() == ["b b 0", "b b 1"]


def test_needs_out():
    run = subprocess.run(["bash", "studies/recipe/gpu_study.sh", "--device", "cpu"], cwd=REPO, capture_output=True,
                         text=True)
    assert run.returncode == 2 and "--out DIR is required" in run.stderr


def test_missing_data_is_one_line(tmp_path):
    run = subprocess.run(["bash", "studies/recipe/gpu_study.sh", "--device", "cpu", "--quick", "--out", str(tmp_path),
                          "--data-root", str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == f"gpu_study.sh: no retinamnist.npz in {tmp_path / 'nowhere'}; give --data-root or set MEDMNIST_ROOT"


def test_a_bundle_inside_the_study_folder_is_refused(tmp_path, real_root):
    # tar would read the bundle it is writing
    run = subprocess.run(["bash", "studies/recipe/gpu_study.sh", "--device", "cpu", "--quick", "--out", str(tmp_path),
                          "--data-root", str(real_root), "--bundle", str(tmp_path / "b.tgz")],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == f"gpu_study.sh: --bundle must be outside --out, got '{tmp_path / 'b.tgz'}'"


@pytest.mark.parametrize("args, message", [
    (["--device", "gpu"], "gpu_study.sh: --device must be cuda or cpu, got 'gpu'"),
    (["--jobs", "0"], "gpu_study.sh: --jobs must be a positive integer, got '0'"),
    (["--labels", "z"], "gpu_study.sh: --labels names no arm of the study (arms: a,b)"),
    (["--bundle"], "gpu_study.sh: --bundle needs a value (see --help)"),  # was bash's "$2: unbound variable"
])
def test_bad_options_are_one_line(tmp_path, args, message):
    # refused before the data is looked for: this data root does not exist
    run = subprocess.run(["bash", "studies/recipe/gpu_study.sh", "--quick", "--out", str(tmp_path),
                          "--data-root", str(tmp_path / "nowhere"), *args], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.strip() == message
