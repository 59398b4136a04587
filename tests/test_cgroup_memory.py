"""sweeps/cgroup_memory.py: the memory limit of a job's cgroup, which `ray start` is told under
SLURM (Ray reads only the root cgroup's file). Real cgroups: tests/test_slurm.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.cgroup_memory import memory_limit, ray_start_options

GIB = 2**30
MACHINE = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
UNLIMITED_V1 = "9223372036854771712"


def write(root: Path, path: str, name: str, value: str) -> None:
    folder = root / path.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(value + "\n")


def test_v1_the_smallest_limit_of_the_cgroup_and_its_parents(tmp_path):
    # SLURM's layout: the limit on the job's cgroup, none on the step's or the task's
    job = "/slurm_a/uid_0/job_7"
    for path, value in [("/", UNLIMITED_V1), ("/slurm_a", UNLIMITED_V1), (job, str(4 * GIB)),
                        (f"{job}/step_0", UNLIMITED_V1), (f"{job}/step_0/task_0", UNLIMITED_V1)]:
        write(tmp_path / "memory", path, "memory.limit_in_bytes", value)
    cgroups = "6:freezer:/slurm_a/uid_0/job_7/step_0\n4:memory:/slurm_a/uid_0/job_7/step_0/task_0\n0::/\n"
    assert memory_limit(cgroups, tmp_path) == 4 * GIB


def test_v2_memory_max_where_a_parent_sets_it(tmp_path):
    write(tmp_path, "/system.slice/slurmstepd.scope/job_7", "memory.max", str(3 * GIB))
    write(tmp_path, "/system.slice/slurmstepd.scope/job_7/step_0", "memory.max", "max")
    assert memory_limit("0::/system.slice/slurmstepd.scope/job_7/step_0\n", tmp_path) == 3 * GIB


@pytest.mark.parametrize("cgroups", ["4:memory:/\n0::/\n", "3:cpuset:/x\n", "1:name=systemd:/\n"])
def test_no_limit_below_the_machine_is_none_and_no_options(tmp_path, cgroups):
    write(tmp_path / "memory", "/", "memory.limit_in_bytes", UNLIMITED_V1)
    write(tmp_path / "memory", "/x", "memory.limit_in_bytes", str(MACHINE))  # the machine's own size: no limit
    assert memory_limit(cgroups, tmp_path) is None
    assert ray_start_options(None) == []


def test_the_options_split_the_limit_as_ray_does():
    assert ray_start_options(10 * GIB) == [f"--memory={7 * GIB}", f"--object-store-memory={3 * GIB}"]


def test_the_command_prints_options_for_this_process_or_nothing():
    run = subprocess.run([sys.executable, "-m", "sweeps.cgroup_memory"], capture_output=True, text=True, check=True)
    expected = ray_start_options(memory_limit(Path("/proc/self/cgroup").read_text()))
    assert run.stdout == " ".join(expected) + "\n" and run.stderr == ""
