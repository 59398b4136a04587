"""Ctrl-C at any moment of `medsweep train`: exit 130, one line, no metrics.json. The first
seconds are the imports, where medmnist's bare `except` used to swallow the interrupt and the
run went on to write its metrics; a torch import cut short could crash the interpreter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("after_s", [1.0, 2.0, 2.5, 4.0])
def test_ctrl_c_during_train_start_is_exit_130_and_writes_nothing(after_s, real_root, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "MEDMNIST_ROOT": str(real_root)}
    process = subprocess.Popen(
        [sys.executable, "-m", "medsweep", "train", "--dataset", "retinamnist", "--model", "medvit_28_tiny",
         "--subset", "64", "--epochs", "30", "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after_s)
    process.send_signal(signal.SIGINT)  # what a user's Ctrl-C sends
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["medsweep: interrupted"], stderr
    assert not (out / "metrics.json").exists()
