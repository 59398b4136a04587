"""benchmarks/gpu_sweep.sh is ready for a GPU: its CPU quick mode (the same code path at tiny
sizes) passes every step, and what it writes agrees with the sweep folders it leaves on disk.

The quick run is slow (five to ten minutes on two busy CPU cores: it starts Ray for five
sweeps and a resume); the argument refusals and the packing arithmetic are fast.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.collect import read_sweep
from benchmarks import gpu_sweep
from benchmarks.device_carry import NEVER
from carry_helpers import blocking
from sweep_helpers import results, trial_dirs

# The quick run is set up by the first slow test: over the 600 s default at a load of 20.
pytestmark = pytest.mark.timeout(1500)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = ["bash", "benchmarks/gpu_sweep.sh"]
OUT_FILES = {"log.txt", "summary.md", "a_tests.json", "b_sweep.json", "c_packing.jsonl", "d_faults.json",
             "e_outputs.json"}


def script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SCRIPT, *args], cwd=REPO, capture_output=True, text=True, timeout=1500, env=env)


@pytest.fixture(scope="module")
def quick(tmp_path_factory, real_root):
    """One quick run of every step on the CPU: (its result, --out, --work)."""
    root = tmp_path_factory.mktemp("gpu_sweep")
    run = script("--device", "cpu", "--quick", "--out", str(root / "out"), "--work", str(root / "work"),
                 "--data-root", str(real_root), env=blocking(root / "site", NEVER))  # as device_carry sweep carries
    return run, root / "out", root / "work"


def read_json(path: Path):
    return json.loads(path.read_text())


@pytest.mark.slow
def test_quick_run_passes_every_check_and_writes_what_a_device_call_returns(quick):
    run, out, _ = quick
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert {p.name for p in out.iterdir()} == OUT_FILES  # 7 files: a device call brings back 8 at most
    summary = (out / "summary.md").read_text()
    assert "FAIL" not in summary and summary.count("| ok |") == 5
    tests = read_json(out / "a_tests.json")
    assert tests["passed"] > 0 and tests["failures"] == tests["errors"] == 0


@pytest.mark.slow
def test_the_sweep_figures_are_the_sweep_on_disk(quick):
    _, out, work = quick
    figures = read_json(out / "b_sweep.json")
    sweep = work / "sweeps" / "b-retinamnist"
    table = read_sweep(sweep).to_pandas()
    assert figures["trials"] == len(table) == 4
    assert set(table["stop_reason"]) <= {"finished", "early_stopped"} and "errored" not in figures["stop_reasons"]
    assert figures["trial_epochs"] == sum(len(results(t)) for t in trial_dirs(sweep))
    assert figures["images_per_s"] == pytest.approx(figures["trial_epochs"] * 128 / figures["wall_s"])
    for trial in figures["per_trial"]:
        assert 0 < trial["overhead_s"] < trial["trial_s"]
        assert trial["overhead_s"] == pytest.approx(trial["trial_s"] - trial["epochs_s"])
    assert 0 < figures["first_trial_started_after_s"] < figures["wall_s"]


@pytest.mark.slow
def test_packing_measured_both_arms_at_each_count(quick):
    _, out, work = quick
    rows = [json.loads(line) for line in (out / "c_packing.jsonl").read_text().splitlines()]
    assert [r["trials"] for r in rows] == [1, 2]
    for row in rows:
        assert row["ray_returncode"] == 0 and row["ray_images_per_s"] > 0 and row["ray_free_images_per_s"] > 0
        trials = trial_dirs(work / "sweeps" / f"c-packing-{row['trials']}")
        assert len(trials) == row["trials"] and all(len(results(t)) == gpu_sweep.QUICK.packing_epochs for t in trials)


@pytest.mark.slow
def test_faults_resume_the_killed_trial_and_redo_nothing_finished(quick):
    _, out, work = quick
    faults = read_json(out / "d_faults.json")
    assert all(faults["checks"].values()), faults["checks"]
    sweep = work / "sweeps" / "d-faults"
    victim = results(sweep / faults["worker_kill"]["trial"])
    restarted = [r for r in victim if r["resumed_from_epoch"] > 0]
    assert restarted and restarted[0]["epoch"] == restarted[0]["resumed_from_epoch"] + 1
    assert len({r["pid"] for r in victim}) >= 2  # a new worker process after the kill
    assert faults["finished_before_driver_kill"]  # something finished was there to keep
    for trial in trial_dirs(sweep):
        assert sorted(r["epoch"] for r in results(trial)) == [1, 2, 3], trial.name
    assert set(read_sweep(sweep).to_pandas()["stop_reason"]) == {"finished"}


@pytest.mark.slow
def test_outputs_of_the_sweep(quick):
    _, out, work = quick
    outputs = read_json(out / "e_outputs.json")
    assert {"report.md", "report.html"} <= set(outputs["report_files"])
    assert (work / "report" / "report.html").stat().st_size > 0 and (work / "results.parquet").is_file()
    assert outputs["scalar_steps"] == outputs["epochs_run"] and all(outputs["epochs_run"].values())


def write_trial(sweep: Path, name: str, start: float, epoch_s: list[float]) -> None:
    """A trial folder whose result.json reports epochs of these lengths from ``start``."""
    trial = sweep / name
    trial.mkdir()
    (trial / "params.json").write_text("{}")
    ends = np.cumsum(epoch_s)
    lines = [{"training_iteration": i, "time_total_s": float(end), "timestamp": int(start + end)}
             for i, end in enumerate(ends, 1)]
    (trial / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_packed_rate_counts_only_the_span_all_trials_trained_together(tmp_path):
    """Two trials of 100 images an epoch, three 10 s epochs each, the second started 5 s later:
    timed epochs (the second and third) span 10-30 s and 15-35 s, together 15-30 s, in which
    they train 150 + 150 images."""
    for name, start in (("t0", 1000.0), ("t1", 1005.0)):
        write_trial(tmp_path, name, start, [10.0, 10.0, 10.0])
    assert gpu_sweep.packed_images_per_s(tmp_path, 100) == pytest.approx(300 / 15, rel=0.05)


@pytest.mark.parametrize("epochs, trained_together", [(3, False), (gpu_sweep.QUICK.packing_epochs, True)])
def test_quick_packing_epochs_outlast_a_late_second_trial(tmp_path, epochs, trained_together):
    """What the quick run met on two busy cores: the second trial started 3.2 s after the first,
    each spent 5 s in its first epoch and 1.2 s in the others. Three epochs never overlap in
    their timed part, so step (c) failed; the quick size's epochs do."""
    for name, start in (("t0", 1000.0), ("t1", 1003.2)):
        write_trial(tmp_path, name, start, [5.0] + [1.2] * (epochs - 1))
    assert (gpu_sweep.packed_images_per_s(tmp_path, 128) is not None) == trained_together


@pytest.mark.parametrize("cpus, xdist, workers", [(16, True, ["-n", "8"]), (64, True, ["-n", "8"]), (6, True, ["-n", "3"]),
                                                  (2, True, []), (16, False, [])])
def test_the_suite_runs_on_half_the_cpus_where_xdist_is_installed(monkeypatch, cpus, xdist, workers):
    # the GPU machine has 16 CPUs and pytest-xdist; the whole suite in one process would outlast a call
    monkeypatch.setattr(gpu_sweep.os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(gpu_sweep.importlib.util, "find_spec", lambda name: object() if xdist else None)
    assert gpu_sweep.suite_workers() == workers


def test_the_suite_runs_quick_then_slow_tests_and_adds_up_both(tmp_path, monkeypatch):
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in gpu_sweep.REAL_FILES:  # the step checks they are there; these tests read none
        (tmp_path / name).touch()
    (tests / "test_both.py").write_text(
        "import pytest\n"
        "def test_quick(): pass\n"
        "@pytest.mark.slow\n"
        "def test_slow(): pass\n"
        "@pytest.mark.slow\n"
        "def test_slow_fails(): assert False\n"
        "@pytest.mark.slow\n"
        "@pytest.mark.bucket_server\n"
        "def test_needs_a_bucket_server(): assert False\n")
    monkeypatch.setattr(gpu_sweep, "REPO", tmp_path)
    monkeypatch.setattr(gpu_sweep, "NOT_HERE", [])
    monkeypatch.setattr(gpu_sweep, "suite_workers", lambda: [])
    args = argparse.Namespace(data_root=str(tmp_path), quick=True, device="cpu", out=tmp_path, work=tmp_path)
    check = gpu_sweep.Check(args)
    check.size = check.size._replace(tests=(str(tests),))
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nmarkers = ["slow: slow", "bucket_server: bucket server"]\n')
    result = gpu_sweep.suite(check)
    assert "-m not slow and not bucket_server " in result["commands"][0]
    assert "-m slow and not bucket_server " in result["commands"][1]
    assert (result["tests"], result["passed"], result["failures"]) == (3, 2, 1)
    assert result["failed"] == ["tests.test_both::test_slow_fails"] and not result["checks"]["(a) the suite passes"]


@pytest.mark.parametrize("args, message", [
    (["--device", "gpu"], "--device: cuda or cpu, got 'gpu'"),
    (["--steps", "az"], "--steps: letters of abcde, got 'az'"),
    (["--steps", "ce"], "--steps: e reads the sweep of step b; name b too"),
    (["--device"], "--device needs a value"),
    (["--frobnicate"], "unknown argument --frobnicate"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, args, message):
    run = script("--out", str(tmp_path), *args)
    assert run.returncode == 2 and run.stderr.strip() == f"gpu_sweep.sh: {message} (see --help)"
    assert not any(tmp_path.iterdir())  # refused before anything ran


def test_out_is_required():
    run = script("--device", "cpu")
    assert run.returncode == 2 and run.stderr.strip() == "gpu_sweep.sh: --out DIR is required"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_cuda_without_a_gpu_is_one_line(tmp_path, real_root):
    run = script("--steps", "c", "--out", str(tmp_path), "--data-root", str(real_root))
    assert run.returncode == 2
    assert run.stderr.strip() == "gpu_sweep.sh: --device cuda: no CUDA GPU is visible; allowed here: --device cpu"


def test_a_python_without_ray_tune_is_one_line(tmp_path, real_root):
    # this Python without Ray: the GPU machine without .whl
    run = script("--device", "cpu", "--out", str(tmp_path / "out"), "--data-root", str(real_root),
                 env=blocking(tmp_path / "blocked", ("ray",)))
    assert run.returncode == 2
    assert run.stderr.strip() == ("gpu_sweep.sh: Ray Tune, Optuna or tensorboardX is not importable; carry .whl "
                                  "(see --help)")
