"""The GPU checks' environment on this machine: what `python -m benchmarks.device_carry` does not
carry for a check is not importable on the GPU machine, so the check's test runs every process
with those modules blocked. The Ray-free checks go without Ray and the sweep's other packages,
the Ray ones without Optuna's database storage."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.device_carry import NEVER

# NEVER's distributions import under their own names.
NOT_CARRIED = ("ray", "optuna", "tensorboardX", "pytorch_grad_cam", "ttach", "jsonschema", "colorlog", *NEVER)


def blocking(folder: Path, modules: tuple[str, ...]) -> dict[str, str]:
    """The environment for a subprocess in which ``modules`` fail to import: a sitecustomize in
    ``folder`` (created) that every Python started with it runs first."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({modules!r}))\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def without_ray_wheels(folder: Path) -> dict[str, str]:
    return blocking(folder, NOT_CARRIED)
