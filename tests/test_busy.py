"""Training on a CPU that other processes share: the processes the project starts (the
`medsweep` command, a sweep trial's Ray worker) run torch's OpenMP with the passive wait policy
unless the user chose one. Why, in figures: benchmarks/bench_busy.py (no timing here).

What is checked is the policy in effect, not the environment variable: libgomp prints the
settings it parsed when it loads (``OMP_DISPLAY_ENV=VERBOSE``), and only a spin count of 0
means passive (unset, it also says PASSIVE, but spins 300,000 rounds first).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from medvit.openmp import set_default_wait_policy
from sweep_helpers import retina_spec

REPO = Path(__file__).resolve().parents[1]
SETTING = re.compile(r"^\s*(OMP_WAIT_POLICY|GOMP_SPINCOUNT) = '(\w+)'", re.MULTILINE)
PASSIVE = {("OMP_WAIT_POLICY", "PASSIVE"), ("GOMP_SPINCOUNT", "0")}


def openmp_env(**settings: str) -> dict[str, str]:
    """This environment without any wait policy of the user's, with libgomp's report turned on."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**env, "OMP_DISPLAY_ENV": "VERBOSE", **settings}


def wait_settings(text: str) -> set[tuple[str, str]]:
    return set(SETTING.findall(text))


def medsweep_train(out: Path, env: dict[str, str], data_root: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "medsweep", "train", "--dataset", "retinamnist", "--model", "medvit_28_tiny",
               "--epochs", "1", "--subset", "32", "--device", "cpu", "--data-root", str(data_root), "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_medsweep_trains_with_the_passive_wait_policy(tmp_path, real_root):
    done = medsweep_train(tmp_path / "run", openmp_env(), real_root)
    assert wait_settings(done.stderr) == PASSIVE


def test_a_wait_policy_the_user_set_wins(tmp_path, real_root):
    # One thread: no team whose waits spin, so ACTIVE cannot slow this run on a shared CPU
    # (with two, 1.7-3.2x the passive run's time at load 9-11); libgomp reports the policy it parsed all the same.
    done = medsweep_train(tmp_path / "run", openmp_env(OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="1"), real_root)
    settings = wait_settings(done.stderr)
    assert ("OMP_WAIT_POLICY", "ACTIVE") in settings and not settings & PASSIVE


@pytest.mark.parametrize("mine", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}])
def test_a_policy_or_spin_count_of_the_users_is_left_as_it_is(monkeypatch, mine):
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in mine.items():
        monkeypatch.setenv(key, value)
    set_default_wait_policy()
    assert {key: os.environ.get(key) for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if key in os.environ} == mine


def test_libgomps_own_spin_count_is_one_line_away(tmp_path, real_root):
    """On a machine of one's own with nothing else running, libgomp's default trains faster
    (benchmarks/RESULTS.md 8): GOMP_SPINCOUNT=300000 brings it back."""
    done = medsweep_train(tmp_path / "run", openmp_env(GOMP_SPINCOUNT="300000", OMP_NUM_THREADS="1"), real_root)
    assert ("GOMP_SPINCOUNT", "300000") in wait_settings(done.stderr)


SWEEP_FROM_PYTHON = """
import sys
from sweeps.launch import run_sweep
from sweeps.spec import load_spec
run_sweep(load_spec(sys.argv[1]), data_root=sys.argv[2])
"""


@pytest.mark.slow  # starts Ray
def test_a_sweep_trial_worker_waits_passively(tmp_path, real_root):
    """A sweep started from Python, not the CLI, leaves the driver's (and so the local Ray
    cluster's) environment alone: the trial's worker must set the policy itself."""
    spec = retina_spec(tmp_path, "busy", num_samples=1, max_concurrent=1, searcher={"type": "random", "seed": 0},
                       scheduler={"type": "fifo"}, train={"epochs": 1, "subset": 32},
                       search={"lr": {"loguniform": [1.0e-4, 1.0e-3]}})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        done = subprocess.run([sys.executable, "-c", SWEEP_FROM_PYTHON, str(spec_file), str(real_root)], cwd=REPO,
                              env=openmp_env(RAY_TMPDIR=str(ray_tmp)), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert ("GOMP_SPINCOUNT", "300000") in wait_settings(done.stderr), "the driver should keep libgomp's default"
        # Workers write their stderr, libgomp's report included, to the session's log folder;
        # the trial's worker is among those that loaded torch.
        reports = [wait_settings(log.read_text()) for log in ray_tmp.glob("ray/session_*/logs/worker-*.err")]
        loaded = [settings for settings in reports if settings]
        assert loaded and all(settings == PASSIVE for settings in loaded)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
