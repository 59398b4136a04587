"""A full storage: finished work is kept and the way on is one line, never a traceback.

Each test mounts a small tmpfs in a private mount namespace (root and `unshare`, as CI has), so
the disk really fills: nothing here fakes a free-space figure."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hand_results import retina_results, write_results
from sweep_helpers import retina_spec

COMMAND = shlex.join([sys.executable, "-m", "medsweep"])


def in_a_small_filesystem(folder: Path, size: str, script: str, env: dict) -> subprocess.CompletedProcess:
    """Run the shell `script` with a tmpfs of `size` mounted on `folder`, seen by no other process."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode:
        pytest.skip("needs root and unshare to mount a small filesystem")
    folder.mkdir(parents=True, exist_ok=True)
    mount = f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))}"
    return subprocess.run(["unshare", "--mount", "sh", "-c", f"{mount} && {script}"], env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture
def env(real_root):
    return {**os.environ, "MEDMNIST_ROOT": str(real_root), "PYTHONUNBUFFERED": "1"}


def test_a_finished_train_run_that_cannot_write_its_metrics_keeps_them_in_the_temporary_folder(env, tmp_path):
    env = {**env, "TMPDIR": str(tmp_path / "tmp")}
    Path(env["TMPDIR"]).mkdir()
    full = tmp_path / "full"
    fill = f"head -c 4097 /dev/zero > {full}/filler"  # the 8 KiB filesystem's two pages taken
    train = (f"{COMMAND} train --dataset retinamnist --model medvit_28_tiny --subset 32 --epochs 1 "
             f"--out {full}/run")
    ran = in_a_small_filesystem(full, "8k", f"{fill} && {train}", env)
    assert ran.returncode == 1, ran.stdout[-2000:] + ran.stderr[-3000:]
    assert "Traceback" not in ran.stderr
    error = ran.stderr.strip().splitlines()[-1]
    assert error.startswith(f"medsweep: error: train: --out: cannot write {full}/run/metrics.json "
                            "(No space left on device); the finished run is kept in "), error
    kept = Path(error.split("is kept in ")[1].split(":")[0])
    assert kept.parent == Path(env["TMPDIR"])
    metrics = json.loads(kept.read_text())
    printed = next(line for line in ran.stdout.splitlines() if line.startswith("selected epoch"))
    assert f"acc {metrics['test']['acc']:.4f}" in printed and len(metrics["history"]) == 1


def test_a_result_file_the_storage_refuses_is_one_line_exit_1(env, tmp_path):
    results = write_results(retina_results(), tmp_path / "results.parquet")
    full = tmp_path / "full"
    fill = f"head -c 4097 /dev/zero > {full}/filler"
    report = f"{COMMAND} report {results} --out {full}/report"
    ran = in_a_small_filesystem(full, "8k", f"{fill} && {report}", env)
    assert ran.returncode == 1, ran.stderr[-3000:]
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsweep: error: ") and "No space left on device" in lines[0]
    assert "then run the command again" in lines[0]


@pytest.mark.slow
def test_a_sweep_stops_with_its_state_saved_before_the_disk_is_full_and_resumes_once_there_is_room(env, tmp_path):
    """Without the stop, the sweep ran into the full disk: every trial errored, Ray's experiment
    state was cut short (no longer JSON) and `medsweep resume` refused the folder."""
    epochs = 3
    spec = retina_spec(tmp_path, "full", num_samples=2, max_concurrent=1, train={"epochs": epochs},
                       scheduler={"type": "fifo"})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    storage, logs = tmp_path / "storage", tmp_path / "logs"
    logs.mkdir()
    script = (  # 40 MiB holds one 18.7 MiB checkpoint of medvit_28_tiny, the state's room, not two
        f"{COMMAND} sweep {spec_file} --storage {storage} > {logs}/sweep.out 2> {logs}/sweep.err; "
        f"echo sweep exit $? > {logs}/codes; mount -o remount,size=300m {storage} && "
        f"{COMMAND} resume {storage}/full > {logs}/resume.out 2> {logs}/resume.err; "
        f"echo resume exit $? >> {logs}/codes; {COMMAND} status {storage}/full > {logs}/status.out")
    in_a_small_filesystem(storage, "40m", script, env)
    codes = (logs / "codes").read_text().split("\n")
    sweep_err = (logs / "sweep.err").read_text()
    assert codes[0] == "sweep exit 130", sweep_err[-3000:]
    assert "the 2 trials, each of which keeps its last (medvit_28_tiny: about 18." in sweep_err  # before Ray
    assert f"medsweep: warning: storage: {storage}/full has " in sweep_err
    assert "stopping the sweep with its state saved" in sweep_err
    assert f"continue with: medsweep resume {storage}/full" in sweep_err
    assert codes[1] == "resume exit 0", (logs / "resume.err").read_text()[-3000:]
    status = (logs / "status.out").read_text()
    assert status.count(" finished ") == 2 and status.count(f" {epochs} ") >= 2, status


def test_a_storage_without_room_for_one_checkpoint_is_refused_before_ray_starts(env, tmp_path):
    spec = retina_spec(tmp_path, "small", num_samples=2, train={"epochs": 1})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    storage = tmp_path / "storage"
    script = f"{COMMAND} sweep {spec_file} --storage {storage} > /dev/null; echo exit $?; ls -A {storage}"
    ran = in_a_small_filesystem(storage, "16m", script, env)
    assert ran.stdout.split() == ["exit", "2"], ran.stdout  # and nothing left in the storage
    (line,) = ran.stderr.strip().splitlines()
    assert line.startswith(f"medsweep: error: storage: {storage}/small has 16.0 MiB free, less than one trial's "
                           "checkpoint (medvit_28_tiny: about 18."), line
    assert line.endswith(" MiB) and 8.0 MiB for the sweep's state; allowed: a storage with room for at least one "
                         "(--storage)"), line


def test_the_checkpoint_estimate_is_within_3_percent_of_a_saved_checkpoint(real_root, tmp_path):
    from medvit.config import build_config
    from medvit.train import Trainer, checkpoint_bytes, load_data

    for ema in (0.99, 0.0):
        config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "ema": ema, "subset": 16,
                               "epochs": 1, "data_root": str(real_root)})
        trainer = Trainer(config, load_data(config))
        list(trainer.epochs())
        saved = trainer.save(tmp_path).stat().st_size
        assert 0.97 < checkpoint_bytes(config, 3, 5) / saved <= 1.0, (ema, saved)


def test_a_full_disk_after_the_fact_says_whether_the_sweep_can_be_resumed(env, tmp_path):
    folder = tmp_path / "sweep"
    check = ("from sweeps.storage_room import check_room; import sys\n"
             "try:\n    check_room(sys.argv[1])\nexcept Exception as exc:\n    print(exc)\n")
    whole = '{"trial_data": [], "runner_data": {}}'
    script = (f"mkdir -p {folder}/t/checkpoint_000000 && head -c 1048576 /dev/zero > {folder}/t/checkpoint_000000/state.pt"
              f" && echo '{whole}' > {folder}/experiment_state-1.json && head -c 8388608 /dev/zero > {folder}/filler;"
              f" {shlex.join([sys.executable, '-c', check, str(folder)])};"
              f" echo '{whole[:9]}' > {folder}/experiment_state-2.json;"
              f" {shlex.join([sys.executable, '-c', check, str(folder)])}")
    ran = in_a_small_filesystem(folder, "10m", script, env)
    resumable, cut_short = ran.stdout.strip().splitlines()
    assert resumable.endswith(f"so trials errored writing their checkpoints; make room, then continue with "
                              f"`medsweep resume {folder}`"), resumable
    assert "Ray's experiment state was cut short: the sweep can be neither resumed nor collected" in cut_short


ROOM_WATCH = """
import signal, sys, types
from sweeps.storage_room import StorageRoom
folder, handler = sys.argv[1], sys.argv[2]
stopped = []
if handler == "tune":
    signal.signal(signal.SIGUSR1, lambda *_: stopped.append(True))  # as Ray Tune's own handler
for path in ("bucket/sweep/trial", f"{folder}/t"):  # a bucket's trial path, then a local one
    trial = types.SimpleNamespace(path=path, status="RUNNING")
    StorageRoom().on_trial_result(1, [trial], trial, {})
print("stopped" if stopped else "alive", flush=True)
"""


@pytest.mark.parametrize("handler", ["tune", "none"])
def test_the_room_watch_stops_through_ray_tunes_signal_only_where_ray_tune_handles_it(env, tmp_path, handler):
    folder = tmp_path / "sweep"
    script = (f"mkdir -p {folder}/t/checkpoint_000000 && head -c 1048576 /dev/zero > {folder}/t/checkpoint_000000/state.pt"
              f" && head -c 2097152 /dev/zero > {folder}/filler && "
              f"{shlex.join([sys.executable, '-c', ROOM_WATCH, str(folder), handler])}")
    ran = in_a_small_filesystem(folder, "10m", script, env)  # 7 MiB free: short of 1 MiB + 8 MiB
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip() == ("stopped" if handler == "tune" else "alive")
    (warning,) = ran.stderr.strip().splitlines()  # the bucket's path was not measured
    assert warning.startswith(f"medsweep: warning: storage: {folder} has 7.0 MiB free, less than the next "
                              "checkpoints of 1 running trial(s) (1.0 MiB each) and 8.0 MiB for the sweep's state; ")
    assert warning.endswith("stopping the sweep with its state saved" if handler == "tune" else
                            "Ray Tune's stop signal is not in place (a fit outside the main thread), so the sweep goes on")
