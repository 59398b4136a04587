"""The Makefile's PYTHON (the venv's interpreter) never reaches the recipes' environment, where
the GPU scripts read PYTHON as the Python to run with: `make test PYTHON=python3.11` (as CI
runs it) once made every GPU-script test run under a Python without the project."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
@pytest.mark.parametrize("how", ["environment", "command line"])
def test_python_stays_out_of_the_recipes(tmp_path, how):
    probe = tmp_path / "probe.mk"
    probe.write_text("probe:\n\t@echo \"[$$PYTHON]\"\n")
    env = {**os.environ, "PYTHON": "python-from-env"} if how == "environment" else dict(os.environ)
    args = ["PYTHON=python-from-cli"] if how == "command line" else []
    run = subprocess.run(["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", str(probe), "probe", *args],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
