"""Faults as tests, on real Ray and real RetinaMNIST: the driver killed with SIGKILL mid-sweep
and resumed, a copy of the sweep folder made with `cp -r` (times not kept), a trial whose
loss turns NaN, storage that cannot be written. Each sweep runs in its own process session,
and only that session's processes are killed afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from analysis.collect import collect, read_sweep
from medvit.train import CHECKPOINT_FILE
from medvit.yamlio import load_yaml
from sweeps.folder import state_trial_folders
from sweep_helpers import epochs_run, leftover_checkpoint, results, retina_spec, trial_dirs, wait_for

pytestmark = pytest.mark.slow

EPOCHS = 3
COMMAND = [sys.executable, "-m", "medsweep"]


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """The CLI in a new session: Ray's processes join it, so the session can be ended whole."""
    return subprocess.Popen([*COMMAND, *args], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def end_session(process: subprocess.Popen) -> None:
    """SIGKILL what is left of a session this test started (Ray agents ignore SIGTERM)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(args: list[str], env: dict, log: Path, timeout: float = 600) -> int:
    process = start(args, env, log)
    try:
        return process.wait(timeout=timeout)
    finally:
        end_session(process)


def recomputed_epochs(trial: Path) -> int:
    """Epochs a trial reported more than once: work redone after a fault."""
    epochs = epochs_run(trial)
    return len(epochs) - len(set(epochs))


def summary(sweep: Path) -> list[tuple]:
    df = read_sweep(sweep).to_pandas().sort_values("trial_id")
    return list(df[["trial_id", "stop_reason", "epochs_run", "best_epoch", "best_value"]].itertuples(index=False))


@pytest.fixture(scope="module")
def env(real_root) -> dict:
    return {**os.environ, "MEDMNIST_ROOT": str(real_root), "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, env):
    """A 3-trial sweep whose driver gets SIGKILL while the second trial runs, then resumed."""
    root = tmp_path_factory.mktemp("killed")
    spec = retina_spec(root, "killed", num_samples=3, max_concurrent=1, searcher={"type": "random", "seed": 0},
                       scheduler={"type": "fifo"}, train={"epochs": EPOCHS},
                       search={"lr": {"loguniform": [1.0e-4, 3.0e-3]}})
    spec_file = root / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    sweep = root / "killed"
    driver = start(["sweep", str(spec_file)], env, root / "sweep.log")
    try:
        def second_trial_started():  # and both in Ray's saved state, which a resume continues
            trials = trial_dirs(sweep) if sweep.exists() else []
            runs = [epochs_run(t) for t in trials]
            return sum(len(r) == EPOCHS for r in runs) >= 1 and any(0 < len(r) < EPOCHS for r in runs) \
                and {t.name for t in trials} <= state_trial_folders(sweep)

        wait_for(second_trial_started, 400, "one finished trial and one mid-trial")
        os.kill(driver.pid, signal.SIGKILL)  # the driver only: its Ray processes are orphaned
        driver.wait(timeout=30)
    finally:
        end_session(driver)
    finished = {t.name: (t / "result.json").read_bytes() for t in trial_dirs(sweep) if len(epochs_run(t)) == EPOCHS}
    # The resumed trials' temporary folder, holding what a trial SIGKILLed mid-checkpoint leaves
    # (the folder of a process that is gone); Ray keeps its own short socket paths under /tmp.
    scratch = root / "tmp"
    scratch.mkdir()
    orphan = leftover_checkpoint(scratch)
    code = run(["resume", str(sweep)], {**env, "TMPDIR": str(scratch), "RAY_TMPDIR": "/tmp"}, root / "resume.log")
    assert code == 0, (root / "resume.log").read_text()[-3000:]
    assert not orphan.exists(), "the resumed trials left a killed trial's checkpoint folder"
    return sweep, finished


def test_a_killed_driver_resumes_to_the_end_without_redoing_finished_work(killed_and_resumed, tmp_path):
    sweep, finished = killed_and_resumed
    trials = trial_dirs(sweep)
    assert len(trials) == 3
    for name, before in finished.items():
        assert (sweep / name / "result.json").read_bytes() == before, f"{name} was run again"
    recomputed = {t.name: recomputed_epochs(t) for t in trials}
    print(f"\nkill -9 of the driver: trial-epochs recomputed per trial {sorted(recomputed.values())}")
    assert all(n <= 1 for n in recomputed.values())
    assert all(sorted(set(epochs_run(t))) == list(range(1, EPOCHS + 1)) for t in trials)
    table = collect(sweep, tmp_path / "results.parquet").to_pandas()
    assert len(table) == 3 and table["trial_id"].is_unique
    assert set(table["stop_reason"]) == {"finished"}


def test_a_copy_without_times_reads_and_resumes_in_place(killed_and_resumed, tmp_path, env):
    sweep, _ = killed_and_resumed
    states = sorted(sweep.glob("experiment_state-*.json"))
    assert len(states) >= 2  # the first run's and the resume's
    copy = tmp_path / "copied"
    subprocess.run(["cp", "-r", str(sweep), str(copy)], check=True)  # no -p: every mtime is new
    stale = copy / states[0].name
    os.utime(stale, (time.time() + 60, time.time() + 60))  # the stale state now looks newest
    assert summary(copy) == summary(sweep)

    original_best = (sweep / "best_config.yaml").read_bytes()
    (copy / "best_config.yaml").unlink()
    assert run(["resume", str(copy)], env, tmp_path / "resume.log") == 0
    assert (copy / "best_config.yaml").read_bytes() == original_best
    assert (sweep / "best_config.yaml").read_bytes() == original_best
    assert summary(copy) == summary(sweep)


def test_a_killed_worker_redoes_only_the_epochs_since_its_newest_checkpoint(tmp_path, env):
    """`checkpoint_every`: a trial checkpoints only at its every-Nth, newly selected and last
    epochs. Its worker, SIGKILLed after an epoch it did not checkpoint, is restarted by Ray from
    the newest checkpoint: it redoes the epochs since (the same numbers: the checkpoint holds
    the random state), `collect` reads each epoch once, and the checkpoint the trial ends with
    holds the epoch its reports select."""
    # A learning rate too small to move the weights: the selected epoch stops moving after the
    # first epochs, so the trial checkpoints none of the many after them until its last, and the
    # kill lands among those however far Ray's driver lags behind the worker's reports.
    epochs = 16
    spec = retina_spec(tmp_path, "sparse", num_samples=1, max_concurrent=1, checkpoint_every=100,
                       searcher={"type": "random", "seed": 0}, scheduler={"type": "fifo"},
                       train={"epochs": epochs, "select_window": 1, "subset": 256},
                       search={"lr": {"choice": [1.0e-7]}})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    sweep = tmp_path / "sparse"

    def unsaved_report():
        """The first report without a checkpoint of an epoch from the third on."""
        reports = [r for t in (trial_dirs(sweep) if sweep.exists() else []) for r in results(t)]
        return next((r for r in reports if not r.get("checkpoint_dir_name") and r["epoch"] >= 3), None)

    driver = start(["sweep", str(spec_file)], env, tmp_path / "sweep.log")
    try:
        deadline = time.monotonic() + 400
        while (unsaved := unsaved_report()) is None:
            assert time.monotonic() < deadline and driver.poll() is None, "no epoch went without a checkpoint"
            time.sleep(0.05)
        os.kill(unsaved["pid"], signal.SIGKILL)
        assert driver.wait(timeout=400) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    finally:
        end_session(driver)

    (trial,) = trial_dirs(sweep)
    reports = results(trial)
    first_run = [r for r in reports if r["pid"] == unsaved["pid"]]
    rerun = reports[len(first_run):]
    saved = [r["epoch"] for r in first_run if r.get("checkpoint_dir_name")]
    assert saved == [r["epoch"] for r in first_run if r["best_epoch"] == r["epoch"]]  # improvements only
    assert saved[-1] < unsaved["epoch"] <= first_run[-1]["epoch"] < epochs
    assert [r["epoch"] for r in rerun] == list(range(saved[-1] + 1, epochs + 1))
    assert {r["resumed_from_epoch"] for r in rerun} == {saved[-1]}
    for before in first_run[saved[-1]:]:
        again = next(r for r in rerun if r["epoch"] == before["epoch"])
        assert (again["val_loss"], again["best_epoch"]) == (before["val_loss"], before["best_epoch"])

    (row,) = collect(sweep, tmp_path / "results.parquet").to_pylist()
    assert (row["epochs_run"], row["stop_reason"]) == (epochs, "finished")
    state = torch.load(Path(row["checkpoint_path"]) / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    assert state["best_epoch"] == row["best_epoch"] == reports[-1]["best_epoch"]


def test_a_diverging_trial_is_marked_and_never_wins(tmp_path, env, capsys):
    """Grid over lr: 1e6 turns the loss NaN within two epochs; 1e-3 trains normally."""
    spec = retina_spec(tmp_path, "nan", num_samples=1, max_concurrent=1, searcher={"type": "grid"},
                       scheduler={"type": "fifo"}, train={"epochs": EPOCHS},
                       search={"lr": {"grid": [1.0e6, 1.0e-3]}})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    log = tmp_path / "sweep.log"
    assert run(["sweep", str(spec_file)], env, log) == 0, log.read_text()[-3000:]
    assert "2 trials, 0 errored, 1 diverged" in log.read_text()
    sweep = tmp_path / "nan"
    table = read_sweep(sweep).to_pandas().set_index("lr")
    assert table.loc[1.0e6, "stop_reason"] == "diverged"
    assert table.loc[1.0e6, "best_value"] != table.loc[1.0e6, "best_value"]  # null: never ranked
    assert table.loc[1.0e-3, "stop_reason"] == "finished"
    assert load_yaml((sweep / "best_config.yaml").read_text(), "best_config.yaml")["lr"] == 1.0e-3
    assert run(["status", str(sweep)], env, tmp_path / "status.log") == 0
    assert "diverged" in (tmp_path / "status.log").read_text()
    diverged = next(t for t in trial_dirs(sweep) if json.loads((t / "params.json").read_text())["lr"] == 1.0e6)
    assert results(diverged)[-1]["diverged"] is True and len(results(diverged)) < EPOCHS


def test_trials_ray_ends_for_lack_of_memory_are_named_with_what_to_change(tmp_path, env):
    """Ray's memory monitor, set to a threshold any node is above (0.1% of its memory), ends
    every trial: the sweep's end and `status` say so, with the node's memory and the spec field
    to change, where before they said `2 errored` and nothing of why (error.txt's last line is
    Ray's generic advice)."""
    spec = retina_spec(tmp_path, "oom", num_samples=2, scheduler={"type": "fifo"}, train={"epochs": 1})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    env = {**env, "RAY_memory_usage_threshold": "0.001", "RAY_memory_monitor_refresh_ms": "100"}
    log, status = tmp_path / "sweep.log", tmp_path / "status.log"
    assert run(["sweep", str(spec_file)], env, log) == 1, log.read_text()[-3000:]
    assert run(["status", str(tmp_path / "oom")], env, status) == 0, status.read_text()[-3000:]
    for output in (log.read_text(), status.read_text()):
        assert "errors 2 of 2 trials" in output, output[-3000:]
        assert "       2 x " in output and "killed due to the node running low on memory" in output
        assert "set resources.memory_gib so that Ray puts fewer trials on a node" in output


def test_a_trial_whose_worker_is_killed_past_its_retries_is_errored_and_the_sweep_ends(tmp_path, env):
    """The first trial's worker is SIGKILLed on each of its three tries (what the kernel's OOM
    killer does past a SLURM job's --mem): Ray's state keeps such a trial RUNNING (Ray 2.60 does
    not save a trial again when its worker's death ends it), and the sweep ended `interrupted: 1
    of 2 trials ended`, exit 130, without best_config.yaml, `status` calling the trial unfinished.
    Now the trial reads errored, with what to change, and the other trial's config wins."""
    spec = retina_spec(tmp_path, "killed", num_samples=2, max_concurrent=1, searcher={"type": "random", "seed": 0},
                       scheduler={"type": "fifo"}, train={"epochs": 6, "subset": 256},
                       search={"lr": {"choice": [1.0e-3]}})  # each try of the first killed at its first epoch
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    sweep, log = tmp_path / "killed", tmp_path / "sweep.log"
    driver = start(["sweep", str(spec_file)], env, log)
    killed: set[int] = set()
    try:
        while driver.poll() is None:
            first = trial_dirs(sweep)[:1] if sweep.exists() else []
            for pid in {report["pid"] for trial in first for report in results(trial)} - killed:
                if len(killed) < 3:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
            time.sleep(0.05)
    finally:
        end_session(driver)
    out = log.read_text()
    assert driver.returncode == 0 and len(killed) == 3, out[-3000:]
    assert "done   2 trials, 1 errored, 0 diverged" in out and "interrupted" not in out, out[-3000:]
    hint = "       a trial's worker was killed (most often by the kernel's OOM killer: see the node's dmesg;"
    assert "       1 x The actor is dead because its worker process has died." in out and hint in out
    assert (sweep / "best_config.yaml").exists()
    status = tmp_path / "status.log"
    assert run(["status", str(sweep)], env, status) == 0
    shown = status.read_text()
    assert "errors 1 of 2 trials" in shown and hint in shown and shown.rstrip().endswith("driver none"), shown
    assert sorted(read_sweep(sweep).to_pandas()["stop_reason"]) == ["errored", "finished"]


def read_only_command(folder: Path, args: list[str]) -> list[str]:
    """Run the CLI with `folder` read-only: a private read-only bind mount for root (whom
    permission bits do not stop), the permission bits for anyone else."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return [*COMMAND, *args]
    if shutil.which("unshare") is None:
        pytest.skip("root without unshare cannot make a read-only folder")
    mount = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}"
    return ["unshare", "--mount", "sh", "-c", f"{mount} && exec \"$@\"", "sh", *COMMAND, *args]


def test_read_only_storage_is_one_line_before_ray_starts(tmp_path, env):
    storage = tmp_path / "read-only"
    storage.mkdir()
    start_time = time.monotonic()
    done = subprocess.run(read_only_command(storage, ["sweep", "retinamnist", "--smoke", "--storage", str(storage)]),
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "storage: cannot write into" in done.stderr
    assert time.monotonic() - start_time < 60  # no Ray was started
    assert not any(storage.iterdir())


def test_ctrl_c_while_trials_run_is_interrupted_not_done(tmp_path, env):
    """Ray answers SIGINT by saving its state and returning as if the sweep were done; the
    sweep must say `interrupted`, exit 130 and keep unfinished trials out of best_config.yaml."""
    epochs = 50  # far more than run before the signal
    spec = retina_spec(tmp_path, "ctrl-c", num_samples=2, max_concurrent=2, searcher={"type": "random", "seed": 0},
                       scheduler={"type": "fifo"}, train={"epochs": epochs},
                       search={"lr": {"loguniform": [1.0e-4, 3.0e-3]}})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    sweep, log = tmp_path / "ctrl-c", tmp_path / "sweep.log"
    driver = start(["sweep", str(spec_file)], env, log)
    try:
        def both_running():
            runs = [epochs_run(t) for t in trial_dirs(sweep)] if sweep.exists() else []
            return len(runs) == 2 and all(0 < len(r) < epochs for r in runs)

        wait_for(both_running, 400, "two trials mid-training")
        driver.send_signal(signal.SIGINT)  # what a user's Ctrl-C sends
        code = driver.wait(timeout=180)
    finally:
        end_session(driver)
    output = log.read_text()
    assert code == 130, output[-3000:]
    assert "medsweep: interrupted: 0 of 2 trials ended" in output
    assert f"medsweep resume {sweep}" in output
    assert "done " not in output
    assert not (sweep / "best_config.yaml").exists()
    assert set(read_sweep(sweep).to_pandas()["stop_reason"]) != {"finished"}


@pytest.mark.parametrize("resources, asked", [({"cpu": 4096, "gpu": 0}, "cpu 4096, gpu 0"),
                                              ({"cpu": 1, "gpu": 0, "memory_gib": 4096}, "cpu 1, gpu 0, memory 4.1e+03 GiB")])
def test_a_trial_no_node_can_place_is_refused_before_it_waits(resources, asked, tmp_path, env):
    """More CPUs or memory than any node has: without this check Ray would queue the trials for ever."""
    spec = retina_spec(tmp_path, "too-big", resources=resources)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    log = tmp_path / "sweep.log"
    start_time = time.monotonic()
    code = run(["sweep", str(spec_file)], env, log, timeout=120)
    elapsed = time.monotonic() - start_time
    print(f"\nrefused in {elapsed:.1f} s")
    output = log.read_text()
    assert code == 2, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("medsweep:")]
    assert len(errors) == 1 and f"resources: one trial asks for {asked}" in errors[0], output
    assert all(hint in errors[0] for hint in ("--smoke", "retinamnist-cpu", "resources field"))
    assert elapsed < 60  # imports and Ray's start; on an idle machine well under 30 s
    assert not (tmp_path / "too-big").exists()
