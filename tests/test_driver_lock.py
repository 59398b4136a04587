"""One driver per sweep folder (sweeps/driver_lock.py): a second `medsweep sweep` or `resume` of a
folder in use ends in one line, exit 2, and leaves the running sweep whole."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweep_helpers import retina_spec, trial_dirs, wait_for
from sweeps import driver_lock
from sweeps.driver_lock import running_driver, sweep_folder_held
from sweeps.paths import SweepError

COMMAND = [sys.executable, "-m", "medsweep"]
HOLD = "from sweeps.driver_lock import sweep_folder_held; import socket, sys, time\n" \
       "if len(sys.argv) > 2:\n    socket.gethostname = lambda: sys.argv[2]\n" \
       "with sweep_folder_held(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n"


@pytest.fixture
def holder():
    """Start a process that holds a folder (as a running `medsweep sweep` does); killed at the end."""
    started = []

    def hold(directory: str, *host: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLD, directory, *host], stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


def test_a_held_folder_is_refused_naming_its_holder_and_is_free_once_the_holder_is_killed(holder, tmp_path):
    directory = str(tmp_path / "sweep")
    process = holder(directory)
    with pytest.raises(SweepError) as refused:
        with sweep_folder_held(directory):
            pass
    message = str(refused.value)
    assert f"{directory} is in use by another medsweep (pid {process.pid} on " in message
    assert f"medsweep resume {directory}" in message and "\n" not in message
    assert "delete" not in message  # this machine's kernel lets a dead holder's lock go
    process.kill()  # SIGKILL: nothing of the holder's runs to let the lock go
    process.wait()
    with sweep_folder_held(directory):
        assert Path(directory, driver_lock.LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on ")


def test_a_holder_on_another_machine_is_named_with_the_way_out_if_that_machine_is_gone(holder, tmp_path):
    directory = str(tmp_path / "sweep")
    holder(directory, "lost-head-node")
    with pytest.raises(SweepError) as refused:
        with sweep_folder_held(directory):
            pass
    assert " on lost-head-node since " in str(refused.value)
    assert str(refused.value).endswith(f"; if that machine is gone, delete {directory}/{driver_lock.LOCK_FILE} and "
                                       "run the command again")


def test_running_driver_names_the_holder_only_while_it_holds(holder, tmp_path):
    directory = str(tmp_path / "sweep")
    assert running_driver(directory) is None  # no lock file yet
    process = holder(directory)
    assert running_driver(directory).startswith(f"pid {process.pid} on ")
    process.kill()
    process.wait()
    assert running_driver(directory) is None


PROBE = "from sweeps.driver_lock import running_driver; import sys\n" \
        "print('probing', flush=True)\nwhile True:\n    running_driver(sys.argv[1])\n"


def test_status_probes_in_a_loop_never_keep_a_driver_from_starting(tmp_path):
    """A probe holds a shared lock for an instant; a driver starting then tries again, not refuses."""
    directory = str(tmp_path / "sweep")
    with sweep_folder_held(directory):
        pass
    probe = subprocess.Popen([sys.executable, "-c", PROBE, directory], stdout=subprocess.PIPE, text=True)
    try:
        assert probe.stdout.readline().strip() == "probing"
        for _ in range(300):
            with sweep_folder_held(directory):
                pass
    finally:
        probe.kill()
        probe.wait()


def test_a_bucket_uri_is_held_through_a_local_file_of_its_own(holder, tmp_path, monkeypatch):
    monkeypatch.setattr(driver_lock, "URI_LOCKS", tmp_path / "locks")
    assert driver_lock.lock_path("s3://bucket/sweeps/a") == driver_lock.lock_path("s3://bucket/sweeps/a/")
    assert driver_lock.lock_path("s3://bucket/sweeps/a") != driver_lock.lock_path("s3://bucket/sweeps/b")
    assert driver_lock.lock_path(f"file://{tmp_path}/a") == tmp_path / "a" / driver_lock.LOCK_FILE
    with sweep_folder_held("s3://bucket/sweeps/a"), sweep_folder_held("s3://bucket/sweeps/b"):
        with pytest.raises(SweepError, match="s3://bucket/sweeps/a is in use by another medsweep"):
            with sweep_folder_held("s3://bucket/sweeps/a"):
                pass


def test_a_failed_block_takes_back_the_folders_and_the_file_its_lock_made(tmp_path):
    storage = tmp_path / "new-storage"
    with pytest.raises(RuntimeError), sweep_folder_held(str(storage / "sweep")):
        raise RuntimeError("Ray would not start")
    assert not storage.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "kept.txt").write_text("a finished result")
    with pytest.raises(RuntimeError), sweep_folder_held(str(existing)):
        raise RuntimeError("no data")
    assert [p.name for p in existing.iterdir()] == ["kept.txt"]
    with sweep_folder_held(str(existing)):
        (existing / "trial").mkdir()
    assert (existing / driver_lock.LOCK_FILE).is_file()  # a sweep that ran keeps its lock file


def test_a_lock_file_unlinked_between_open_and_flock_is_opened_again(tmp_path, monkeypatch):
    """Another driver's failed start takes back the file this one has just opened: a lock on that
    unlinked file would exclude no one."""
    directory = tmp_path / "sweep"
    directory.mkdir()
    lock = directory / driver_lock.LOCK_FILE
    opened, real_open = [], os.open

    def open_then_lose_it(path, flags, mode=0o777):
        fd = real_open(path, flags, mode)
        if not opened:
            os.unlink(path)
        opened.append(fd)
        return fd

    monkeypatch.setattr(driver_lock.os, "open", open_then_lose_it)
    with sweep_folder_held(str(directory)):
        assert len(opened) == 2 and os.fstat(opened[1]).st_ino == os.stat(lock).st_ino


def test_medsweep_sweep_into_a_held_folder_is_one_line_and_starts_nothing(holder, real_root, tmp_path):
    spec = retina_spec(tmp_path, "held", num_samples=1, train={"epochs": 1})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    process = holder(str(tmp_path / "held"))
    env = {**os.environ, "MEDMNIST_ROOT": str(real_root)}
    refused = subprocess.run([*COMMAND, "sweep", str(spec_file)], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr[-2000:]
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"medsweep: error: sweep_dir: {tmp_path / 'held'} is in use by another medsweep (pid {process.pid} on "), lines
    assert sorted(p.name for p in (tmp_path / "held").iterdir()) == [driver_lock.LOCK_FILE]


# Enough that the first sweep still runs while the other two commands start (some 5 s).
EPOCHS = 20


@pytest.mark.slow
def test_a_second_sweep_or_a_resume_beside_a_running_sweep_is_refused_and_the_sweep_stays_whole(real_root, tmp_path):
    """What a resume beside a running 2-trial sweep did before the lock: 3 trial folders, two
    experiment states, and the sweep ending "interrupted" though nobody pressed Ctrl-C."""
    trials = 2
    spec = retina_spec(tmp_path, "busy", num_samples=trials, max_concurrent=1, train={"epochs": EPOCHS},
                       scheduler={"type": "fifo"})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    directory = tmp_path / "busy"
    env = {**os.environ, "MEDMNIST_ROOT": str(real_root)}
    first = subprocess.Popen([*COMMAND, "sweep", str(spec_file)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: directory.is_dir() and len(trial_dirs(directory)) >= 1, 300, "the first trial's folder")
        assert first.poll() is None, "the first sweep ended before the others could start beside it"
        others = [subprocess.Popen([*COMMAND, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for argv in (["sweep", str(spec_file)], ["resume", str(directory)])]
        status = subprocess.run([*COMMAND, "status", str(directory)], env=env, capture_output=True, text=True,
                                timeout=120)
        assert status.stdout.strip().splitlines()[-1].startswith(f"driver running: pid {first.pid} on "), status
        for other in others:
            stdout, stderr = other.communicate(timeout=120)
            assert other.returncode == 2, stdout[-2000:] + stderr[-2000:]
            assert len(stderr.strip().splitlines()) == 1, stderr
            assert f"is in use by another medsweep (pid {first.pid} on " in stderr
        output = first.communicate(timeout=600)[0]
    finally:
        first.kill()
    assert first.returncode == 0, output[-3000:]
    status = subprocess.run([*COMMAND, "status", str(directory)], env=env, capture_output=True, text=True, timeout=120)
    assert status.stdout.strip().splitlines()[-1] == "driver none", status
    assert len(trial_dirs(directory)) == trials
    assert len(list(directory.glob("experiment_state-*.json"))) == 1
    assert (directory / "best_config.yaml").is_file()


def test_a_resume_beside_a_running_driver_names_it_even_while_the_state_is_half_written(holder, tmp_path):
    """Ray rewrites its experiment state in place: a resume that read it before the lock could
    call a running sweep's folder corrupted instead of naming the driver that runs it."""
    from sweeps.launch import resume_sweep, save_spec, sweep_dir

    spec = retina_spec(tmp_path, "live")
    directory = sweep_dir(spec)
    save_spec(spec)
    (Path(directory) / "tuner.pkl").write_bytes(b"never unpickled here")
    (Path(directory) / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": [')  # mid-rewrite
    process = holder(directory)
    with pytest.raises(SweepError, match=f"is in use by another medsweep \\(pid {process.pid} on "):
        resume_sweep(directory)
