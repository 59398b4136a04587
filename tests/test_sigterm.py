"""SIGTERM, what a job scheduler sends a while before it kills a job (SLURM's scancel and time
limit, Kubernetes' pod deletion) and `kill` sends, ends a command as Ctrl-C does: `medsweep:
terminated`, exit 143; a sweep saves its state and prints the `medsweep resume` line. Before,
`medsweep train` died by the signal with nothing said, and a sweep's driver died inside Ray's
own handler with a stack dump."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from medvit.interrupt import Terminated, deferred_interrupt, raise_if_interrupted, remembered_interrupt
from sweep_helpers import epochs_run, retina_spec, trial_dirs, wait_for


@pytest.fixture
def default_handlers():
    """The handlers a command starts with: Python's SIGINT handler, SIGTERM's default."""
    previous = {signum: signal.signal(signum, handler) for signum, handler in
                ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL))}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def test_sigterm_in_a_command_is_terminated_and_remembered_if_swallowed(default_handlers):
    ran_whole = []
    with pytest.raises(Terminated):
        with remembered_interrupt():
            try:
                with deferred_interrupt():
                    signal.raise_signal(signal.SIGTERM)
                    ran_whole.append(True)
            except KeyboardInterrupt:
                pass  # swallowed, as a bare except in library code does
            raise_if_interrupted()
    assert ran_whole
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    raise_if_interrupted()  # forgotten once the block ends


def test_a_program_that_handles_sigterm_keeps_its_handler(default_handlers):
    received = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    with remembered_interrupt():
        with deferred_interrupt():
            signal.raise_signal(signal.SIGTERM)
            assert received == [signal.SIGTERM]
        raise_if_interrupted()


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [1.0, 4.0])  # in the imports (deferred there), in the epochs
def test_sigterm_during_train_is_exit_143_and_writes_nothing(after_s, real_root, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "medsweep", "train", "--dataset", "retinamnist", "--model", "medvit_28_tiny",
         "--subset", "64", "--epochs", "30", "--out", str(out)],
        env={**os.environ, "MEDMNIST_ROOT": str(real_root)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after_s)
    process.terminate()
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines() == ["medsweep: terminated"], stderr
    assert not (out / "metrics.json").exists()


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
