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
from sweeps.launch import process_stat
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
    """SIGTERM to the driver alone (`kill`, Kubernetes) or to the whole process group (SLURM
    signals every process of the job, Ray's own too) stops the sweep through Ray Tune, within
    the grace: exit 143, the resume line, and `medsweep resume` runs the sweep to the end.
    Before Ray's processes started here blocked SIGTERM, the process group's signal took Ray
    down: the driver ended past its grace, or (once in 17 CI runs) with exit 1 and no line."""
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
    assert "did not stop the sweep within" not in last
    assert "SIGTERM received" not in stderr  # Ray's stack dump

    resumed = subprocess.run([sys.executable, "-m", "medsweep", "resume", str(directory)], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert [epochs_run(t) for t in trial_dirs(directory)] == [[1, 2, 3]] * 2
    assert (directory / "best_config.yaml").exists()


# `python -m` this module: a fit that Ray never stops (Tune's stop signal does nothing, as when
# Ray's processes are gone), with the grace cut to 0.5 s.
UNSTOPPED_FIT = """
import signal, sys, time
import sweeps.launch
sweeps.launch.SIGTERM_GRACE_S = 0.5
signal.signal(signal.SIGUSR1, lambda signum, frame: None)
with sweeps.launch.sigterm_stops_the_fit(sys.argv[1]):
    print("fitting", flush=True)
    while True:
        time.sleep(0.1)
"""


def test_a_sweep_that_ray_does_not_stop_ends_past_the_grace_with_the_resume_line(tmp_path):
    """Ray's processes that heed SIGTERM (a joined cluster's, started by `ray start` in the same
    SLURM job) go with the driver's signal, and the driver would wait for the dead Ray for 60 s:
    past SIGTERM_GRACE_S it ends at once, exit 143, with the resume line."""
    (tmp_path / "unstopped_fit.py").write_text(UNSTOPPED_FIT)
    fit = subprocess.Popen([sys.executable, "-m", "unstopped_fit", "/sweeps/retina"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert fit.stdout.readline() == "fitting\n"
    fit.terminate()
    stderr = fit.communicate(timeout=60)[1]
    assert fit.returncode == 143, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        "medsweep: terminated: Ray did not stop the sweep within 0.5 s of SIGTERM (were its processes sent "
        "SIGTERM too?), so it was ended with the state Ray saved; continue with: medsweep resume /sweeps/retina")


# `python -m` this module: SIGTERM twice during a fit whose stop signal is counted.
SIGTERM_TWICE = """
import os, signal, time
import sweeps.launch
stops = []
signal.signal(signal.SIGUSR1, lambda signum, frame: stops.append(signum))
with sweeps.launch.sigterm_stops_the_fit("/sweeps/retina"):
    for _ in range(2):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
print(len(stops))
"""


def test_a_second_sigterm_does_not_stop_the_sweep_again(tmp_path):
    """scancel signals the job's shell and the driver both, and cluster-slurm.sbatch's shell passes
    its signal on: the driver, already stopping, asks Ray Tune once (each ask logs Tune's warning)."""
    (tmp_path / "sigterm_twice.py").write_text(SIGTERM_TWICE)
    run = subprocess.run([sys.executable, "-m", "sigterm_twice"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert (run.returncode, run.stdout) == (0, "1\n"), run.stderr[-2000:]


# `python -m` this module: the second SIGTERM comes while the first one's handler starts its timer.
SIGTERM_IN_THE_HANDLER = """
import os, signal, threading, time
import sweeps.launch


class SignalledAsItStarts(threading.Timer):
    def start(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)  # the second handler runs here, in the first one
        super().start()


sweeps.launch.threading.Timer = SignalledAsItStarts
stops = []
signal.signal(signal.SIGUSR1, lambda signum, frame: stops.append(signum))
with sweeps.launch.sigterm_stops_the_fit("/sweeps/retina"):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
print(len(stops))
"""


def test_a_second_sigterm_while_the_first_is_handled_is_passed_over(tmp_path):
    """Found under SLURM: scancel's SIGTERM and the one the job's shell passes on came so close that
    the second ran inside the first's handler, which started its timer twice (a traceback, exit 1)."""
    (tmp_path / "sigterm_in_the_handler.py").write_text(SIGTERM_IN_THE_HANDLER)
    run = subprocess.run([sys.executable, "-m", "sigterm_in_the_handler"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert (run.returncode, run.stdout) == (0, "1\n"), run.stderr[-2000:]


# `python -m` this module: Ray started as a sweep starts it; its processes' IDs printed, the
# raylet's children (agents, workers) on a line of their own; then the interpreter's exit.
RAY_STARTED_HERE = """
import ray
import sweeps.launch
sweeps.launch.connect(None)
node = ray._private.worker._global_node
print(*(info.process.pid for infos in node.all_processes.values() for info in infos))
print(*sweeps.launch.descendants(node.all_processes["raylet"][0].process.pid), flush=True)
"""


def running(pid: int) -> bool:
    try:
        return process_stat(pid)[0] != "Z"  # a zombie has ended, its parent not yet told
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_the_ray_a_sweep_started_is_gone_when_its_driver_exits(tmp_path):
    """The driver's exit kills the Ray it started with SIGTERM blocked without Ray's 1 s wait for
    each process to heed a SIGTERM it never will: every process of it, the raylet's agents too,
    which outlived a raylet killed at once by about a minute."""
    (tmp_path / "ray_started_here.py").write_text(RAY_STARTED_HERE)
    run = subprocess.run([sys.executable, "-m", "ray_started_here"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    ray_processes, raylet_children = ([int(pid) for pid in line.split()] for line in run.stdout.splitlines())
    assert len(ray_processes) >= 4 and len(raylet_children) >= 2  # GCS, raylet, monitors; the agents
    assert [pid for pid in ray_processes + raylet_children if running(pid)] == []
