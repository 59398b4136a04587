"""The Makefile's PYTHON (the venv's interpreter) never reaches the recipes' environment, where
the GPU scripts read PYTHON as the Python to run with: `make test PYTHON=python3.11` (as CI
runs it) once made every GPU-script test run under a Python without the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyproject_data import pyproject

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


def supported_pythons() -> list[str]:
    """The minor versions pyproject.toml's requires-python admits, newest first ("3.14", ...)."""
    from packaging.specifiers import SpecifierSet

    admits = SpecifierSet(pyproject()["project"]["requires-python"])
    return [f"3.{minor}" for minor in range(30, 5, -1) if f"3.{minor}.0" in admits]


def test_the_makefile_looks_for_exactly_the_pythons_pyproject_admits():
    import re

    admitted = supported_pythons()
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"for v in ([\d. ]+); do", makefile).group(1).split() == admitted
    newest, oldest = (tuple(map(int, v.split("."))) for v in (admitted[0], admitted[-1]))
    assert f"sys.exit(not {oldest} <= sys.version_info[:2] <= {newest})" in makefile
    assert f"no Python {admitted[-1]} to {admitted[0]} to create" in makefile


def fake_python(path: Path, version: tuple[int, int, int]) -> Path:
    """An interpreter that runs ``-c CODE`` as this one does, but says it is ``version``."""
    path.write_text(f"#!/bin/sh\n[ \"$1\" = -c ] || exit 1\nexec {sys.executable} -c "
                    f"\"import sys; sys.version_info = {version + ('final', 0)}; exec(sys.argv[1])\" \"$2\"\n")
    path.chmod(0o755)
    return path


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
@pytest.mark.parametrize("version, refused", [((3, 15, 2), True), ((3, 9, 18), True), ((3, 10, 14), False),
                                              ((3, 14, 10), False)])
def test_a_python_the_project_cannot_install_on_is_refused_in_one_line(tmp_path, version, refused):
    python = fake_python(tmp_path / "python", version)
    venv = tmp_path / "venv"
    run = subprocess.run(["make", "-s", "--no-print-directory", f"VENV={venv}", f"PYTHON={python}",
                         f"{venv}/bin/.installed"], cwd=REPO, capture_output=True, text=True)
    message = f"make: no Python 3.10 to 3.14 to create {venv} with (PYTHON='{python}' does not run one;"
    assert run.returncode != 0 and not (venv / "bin" / "python").exists()
    # accepted: the recipe goes on to `python -m venv`, which this fake cannot do
    assert (run.stderr.splitlines()[0].startswith(message) and run.returncode == 2) == refused, run.stderr
