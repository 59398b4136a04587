"""benchmarks/gpu_env.sh, which every GPU script sources: on a machine without pydantic and
medmnist it installs the carried wheels into a temporary site for the script's run, and
removes that site when the script ends (with Ray's wheels some 160 MB a run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from carry_helpers import blocking
from test_device_carry import write_wheel

REPO = Path(__file__).resolve().parents[1]


def test_the_carried_wheels_are_installed_for_the_run_and_removed_after_it(tmp_path):
    repo, tmp = tmp_path / "repo", tmp_path / "tmp"
    (repo / ".whl" / "medmnist").mkdir(parents=True)
    (repo / ".whl" / "medmnist" / "retinamnist.npz").write_bytes(b"d")
    write_wheel(repo / ".whl" / "carried-1.0-py3-none-any.whl")
    tmp.mkdir()
    # this Python, except that pydantic and medmnist are not there: the GPU machine's case
    python_path = blocking(tmp_path / "blocked", ("pydantic", "medmnist"))["PYTHONPATH"]
    script = (f'REPO={repo} NAME=test OUT={tmp_path / "out"} DATA_ROOT=""; source {REPO / "benchmarks" / "gpu_env.sh"}; '
              '"$PY" -c "import carried, sys; print(carried.__file__)"')
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp), "PYTHON": sys.executable,
                              "PYTHONPATH": python_path})
    assert run.returncode == 0, run.stderr
    site = Path(run.stdout.strip()).parents[1]
    assert site.parent == tmp and site.name.startswith("medsweep-site.")
    assert not site.exists() and not list(tmp.iterdir())  # gone when the script ended


def test_no_script_that_sources_it_sets_a_trap_of_its_own():
    # bash keeps one EXIT trap: a script's own would replace gpu_env.sh's, and the site would stay
    scripts = [path for path in REPO.glob("*/**/*.sh") if ".venv" not in path.parts
               and "gpu_env.sh" in path.read_text() and path.name != "gpu_env.sh"]
    assert len(scripts) >= 4  # gpu_check, gpu_sweep, gpu_study, gpu_protocol
    assert [path.name for path in scripts if "trap " in path.read_text()] == []


def test_what_is_installed_is_found_without_importing_it(tmp_path):
    # importing medmnist took 5.5 s here, Ray Tune, Optuna and tensorboardX 6.7 s: each GPU script
    # asked so before its first step, and gpu_sweep.sh's refusal of a machine without CUDA took 15.6 s
    (tmp_path / "retinamnist.npz").write_bytes(b"d")
    script = (f'REPO={REPO} NAME=test OUT={tmp_path / "out"} DATA_ROOT={tmp_path}; '
              f'source {REPO / "benchmarks" / "gpu_env.sh"}; importable pydantic medmnist && '
              '! importable pydantic no_such_package_here')
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "PYTHONPROFILEIMPORTTIME": "1"})
    assert run.returncode == 0, run.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "importlib.util" in imported and not imported & {"medmnist", "pydantic", "torch"}
