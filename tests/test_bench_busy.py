"""benchmarks/bench_busy.py's arms and table (its timings are a benchmark's, not a test's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench_busy

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("policy, expected", [
    ("unset", {}),
    ("passive", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("spin:300", {"GOMP_SPINCOUNT": "300"}),
])
def test_each_arm_sets_only_its_own_wait_setting(monkeypatch, policy, expected):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the caller's own settings never leak into an arm
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")
    env = bench_busy.arm_env(policy)
    assert {key: env[key] for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if key in env} == expected


@pytest.mark.parametrize("policy", ["spin:", "spin:-5", "spin:many", "sleepy"])
def test_an_unknown_policy_is_one_line_before_any_arm_runs(policy):
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_busy", "--policies", f"passive,{policy}"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    message = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and not done.stdout
    assert f"--policies: unknown {policy!r}; allowed: unset, passive, active, or spin:N" in message


def test_the_table_shows_best_and_median_and_ratios_of_the_best():
    runs = {("passive", 2): {0: [2.0, 1.0, 3.0], 1: [4.0, 2.0, 2.5]},
            ("spin:300", 2): {0: [0.5, 0.9, 0.8], 1: [3.0, 5.0, 4.0]}}
    rows = bench_busy.table(runs, [0, 1]).splitlines()
    assert rows[2] == "| 2 | passive | 1.00 | 2.00 | 1.00x | 2.00x | 2.00 | 2.50 | 2.00x | 4.00x |"
    assert rows[3] == "| 2 | spin:300 | 0.50 | 0.80 | 1.00x | 1.00x | 3.00 | 4.00 | 6.00x | 6.00x |"
