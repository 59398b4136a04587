"""The Ray-free GPU checks' environment on this machine: what `python -m benchmarks.device_carry`
does not carry for them (Ray and the sweep's other packages) is not importable on the GPU
machine, so their tests run every process with those modules blocked."""

from __future__ import annotations

import os
from pathlib import Path

NOT_CARRIED = ("ray", "optuna", "tensorboardX", "pytorch_grad_cam", "ttach", "jsonschema", "colorlog", "sqlalchemy")


def without_ray_wheels(folder: Path) -> dict[str, str]:
    """The environment for a subprocess in which the NOT_CARRIED modules fail to import: a
    sitecustomize in ``folder`` (created) that every Python started with it runs first."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({NOT_CARRIED!r}))\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
