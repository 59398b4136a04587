"""SIGTERM, what a job scheduler sends a while before it kills a job (SLURM's scancel and time
limit, Kubernetes' pod deletion) and `kill` sends, stops a sweep as Ctrl-C does: its state
saved, `medsweep: terminated` with the `medsweep resume` line, exit 143. Before, the driver died
inside Ray's own handler with a stack dump and no resume line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from medvit.interrupt import remembered_interrupt
from sweep_helpers import epochs_run, retina_spec, trial_dirs, wait_for


def test_a_command_leaves_sigterm_its_default_outside_a_sweep():
    """Python runs a signal handler only between bytecodes: a handled SIGTERM waits for a call
    blocked in C code (a bucket read retrying for minutes) to return. Only a sweep has state to
    save, so only its fit handles SIGTERM."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with remembered_interrupt():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


# `python -m` this module: `medsweep` with the driver's grace after SIGTERM cut to 3 s.
SHORT_GRACE = """
import sys
import sweeps.launch
sweeps.launch.SIGTERM_GRACE_S = 3
from medsweep.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("whom", ["driver", "process group"])
def test_sigterm_stops_a_sweep_with_its_state_saved(whom, real_root, tmp_path):
    """SIGTERM to the driver alone (`kill`, Kubernetes) stops the sweep through Ray Tune; to the
    whole process group (SLURM signals every process of the job, Ray's own too) the driver
    saves the state, finds Ray gone and, past its grace, ends. Either way: exit 143, the resume
    line, and `medsweep resume` runs the sweep to the end."""
    spec = retina_spec(tmp_path, "retina-sigterm", num_samples=2, max_concurrent=1,
                       scheduler={"type": "fifo"}, train={"epochs": 3})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    (tmp_path / "short_grace.py").write_text(SHORT_GRACE)
    directory = tmp_path / "retina-sigterm"
    env = {**os.environ, "MEDMNIST_ROOT": str(real_root), "PYTHONUNBUFFERED": "1"}
    # Its own session: the process group signalled below holds only what this sweep started.
    sweep = subprocess.Popen([sys.executable, "-m", "short_grace", "sweep", str(spec_file)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: directory.exists() and any(epochs_run(t) for t in trial_dirs(directory)), 300, "a first epoch")
    if whom == "driver":
        sweep.terminate()
    else:
        os.killpg(sweep.pid, signal.SIGTERM)
    stderr = sweep.communicate(timeout=120)[1]
    assert sweep.returncode == 143, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("medsweep: terminated: ") and last.endswith(f"continue with: medsweep resume {directory}")
    gave_up = "did not stop the sweep within 3 s" in last
    assert gave_up == (whom == "process group"), last
    assert "SIGTERM received" not in stderr  # Ray's stack dump

    resumed = subprocess.run([sys.executable, "-m", "medsweep", "resume", str(directory)], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert [epochs_run(t) for t in trial_dirs(directory)] == [[1, 2, 3]] * 2
    assert (directory / "best_config.yaml").exists()
