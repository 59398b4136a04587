"""The command line that the two device scripts, ``gpu_check.py`` and ``gpu_sweep.py``, share.
Ray-free: the GPU check imports it where Ray must not be importable."""

from __future__ import annotations

import argparse
from pathlib import Path


def device_parser(description: str, steps: str, default_steps: str) -> argparse.ArgumentParser:
    """``--device``, ``--quick``, ``--out``, ``--data-root`` and ``--steps`` (letters of
    ``steps``, refused in one line otherwise)."""

    def step_letters(text: str) -> str:
        if not text or set(text) - set(steps):
            raise argparse.ArgumentTypeError(f"letters of {steps}, got {text!r}")
        return text

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, same code path")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root", required=True, help="folder holding retinamnist.npz")
    parser.add_argument("--steps", type=step_letters, default=default_steps,
                        help=f"which steps, letters of {steps} (default {default_steps})")
    return parser
