"""Ray Tune on one GPU: the test suite, a real sweep, packing, faults and the sweep's outputs.

Run it through ``benchmarks/gpu_sweep.sh`` (which installs the carried wheels where Ray is
missing). Every sweep is a real ``medsweep sweep`` (``python -m medsweep``) in a process
session of its own, ended whole afterwards. Each step writes one file under ``--out``:

  a_tests.json      (a) the test suite on this Python with this Ray (pytest, junit counts and
                    the failures) as `make test` runs it, quick then slow tests, on half the
                    CPUs (pytest-xdist, at most 8 workers), all but the `ray up` test, the two
                    browser tests, those that start a bucket server, device_carry's and this
                    check's own; --quick: two fast files
  b_sweep.json      (b) the RetinaMNIST spec: 32 trials of at most 20 epochs, ASHA, 8 trials
                    to the GPU (``gpu: 0.125``, ``device: cuda``: a trial without the GPU
                    errors): stop reasons, trial-epochs, wall time, training images/s, GPU
                    utilisation and memory sampled every 500 ms (nvidia-smi), and per trial
                    Ray's overhead = Ray's running time of the trial (``time_total_s``) minus
                    the sum of its epochs (training and validation, ``epoch_time_s``)
  c_packing.jsonl   (c) N = 1, 4, 8, 16 trials sharing the GPU (``gpu: 1/N``) as one sweep,
                    against N ``medsweep train`` processes without Ray (trial_packing.py),
                    the same config; total images/s over the time all N trained at once
  d_faults.json     (d) a 3-trial sweep: one trial's worker SIGKILLed mid-epoch (it must
                    resume from its checkpoint and finish), then the driver SIGKILLed and
                    ``medsweep resume`` run to the end: finished trials byte-identical,
                    every epoch reported once, best_config.yaml the ranking's best trial
  e_outputs.json    (e) ``medsweep status``, ``collect --evaluate-test`` and ``report`` of
                    (b)'s sweep, and its TensorBoard files read back
  summary.md        the table of every step and the verdict of each check

Speed targets (issue 21: Ray at least 0.9x the Ray-free images/s, overhead under 0.5 s a
trial) are checked on a GPU at full size only; ``--quick`` proves the code path.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from analysis.collect import read_sweep
from analysis.tables import rank_trials
from benchmarks.device_args import device_parser
from benchmarks.trial_packing import run_packed
from medvit.synthetic import write_synthetic
from medvit.yamlio import load_yaml
from sweeps.folder import RESULT_FILE, read_result_lines, state_trial_folders
from sweeps.spec import load_spec, spec_from_dict

REPO = Path(__file__).resolve().parents[1]

STEPS = "abcde"
PRESET = "medvit_28_tiny"
SYNTHETIC_FLAG = "pathmnist"  # steps c and d: epochs long enough to time and to kill mid-way
# Tests that need a browser or `ray up`, this check's own test (it would run the check again), and
# device_carry's, which prepares a device call on the machine that sends it (the copy of the
# working tree a call brings holds no git checkout to list). Those that start a bucket server
# (moto's, gcp-storage-emulator: not among the carried wheels; a bucket involves no GPU) are
# left out by their marker, bucket_server.
NOT_HERE = ["--ignore=tests/test_cluster_up.py", "--ignore=tests/test_gpu_sweep.py", "--ignore=tests/test_device_carry.py",
            "--deselect=tests/test_analysis_report.py::test_html_renders_in_headless_chromium",
            "--deselect=tests/test_analysis_report.py::test_test_columns_inside_viewport_at_1280px"]
REAL_FILES = ("retinamnist.npz", "pneumoniamnist.npz")  # what the suite's real-data fixture reads
NO_TESTS_COLLECTED = 5  # pytest's exit code when a phase selects nothing (--quick's files have no slow test)
TARGET_RAY_VS_FREE = 0.9  # Ray's total images/s against the same processes without Ray
TARGET_OVERHEAD_S = 0.5  # Ray's seconds per trial beyond its epochs


class Size(NamedTuple):
    tests: tuple[str, ...]  # what pytest runs
    trials: int  # (b)
    epochs: int  # (b): ASHA's max_t
    grace: int
    reduction: int
    concurrent: int  # (b): trials at once, each 1/concurrent of the GPU
    subset: int | None  # (b): images per split
    packing: tuple[int, ...]  # (c): trials per GPU
    synthetic_train: int  # (c), (d): training images of the synthetic set
    packing_epochs: int  # (c): one warm-up epoch (CUDA context, kernels), the rest timed
    fault_epochs: int  # (d)
    sweep_timeout_s: int


FULL = Size(tests=("tests",), trials=32, epochs=20, grace=5, reduction=4, concurrent=8, subset=None,
            packing=(1, 4, 8, 16), synthetic_train=10_000, packing_epochs=3, fault_epochs=4, sweep_timeout_s=900)
# Quick (c): 8 epochs of 128 images, so that the timed epochs of two trials overlap even when the
# second starts seconds after the first on busy cores (3 epochs did not: tests/test_gpu_sweep.py).
QUICK = Size(tests=("tests/test_ranking.py", "tests/test_config_fields.py"), trials=4, epochs=2, grace=1,
             reduction=2, concurrent=2, subset=128, packing=(1, 2), synthetic_train=128, packing_epochs=8,
             fault_epochs=3, sweep_timeout_s=600)


class Check:
    """The context every step shares: arguments, sizes, folders and the CLI's environment."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.quick, self.device = args, args.quick, args.device
        self.size = QUICK if args.quick else FULL
        self.out, self.work = args.out, args.work
        self.storage = self.work / "sweeps"
        self.env = os.environ | {"MEDMNIST_ROOT": args.data_root, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}
        self.b_sweep: Path | None = None  # step (b)'s sweep folder, which (e) reads

    def resources(self, share: int) -> dict:
        """One trial's resources when ``share`` trials run at once: 1/share of the GPU."""
        return {"cpu": 1, "gpu": round(1 / share, 4) if self.device == "cuda" else 0}

    def synthetic_root(self) -> Path:
        root = self.work / "synthetic"
        if not root.exists():
            n = self.size.synthetic_train
            write_synthetic(SYNTHETIC_FLAG, root, n_per_split=(n, max(16, n // 10), max(16, n // 10)))
        return root

    def synthetic_spec(self, name: str, trials: int, concurrent: int, epochs: int) -> dict:
        """A FIFO sweep of the recommended preset on the synthetic set, only lr searched."""
        return {"name": name, "dataset": SYNTHETIC_FLAG, "storage": str(self.storage),
                "train": {"model": PRESET, "epochs": epochs, "batch_size": 128, "device": self.device},
                "search": {"lr": {"loguniform": [5.0e-4, 2.0e-3]}}, "searcher": {"type": "random", "seed": 0},
                "scheduler": {"type": "fifo"}, "num_samples": trials, "max_concurrent": concurrent,
                "resources": self.resources(concurrent)}

    def write_spec(self, data: dict) -> Path:
        spec = spec_from_dict(data, source=f"gpu_sweep {data['name']}")  # validated as the CLI would
        path = self.work / f"{spec.name}.yaml"
        path.write_text(spec.to_yaml())
        return path

    def start(self, cli_args: list[str], log: Path) -> subprocess.Popen:
        """The CLI in a new process session: Ray's processes join it and end with it."""
        return subprocess.Popen([sys.executable, "-m", "medsweep", *cli_args], cwd=REPO, env=self.env,
                                stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)

    def run(self, cli_args: list[str], log: Path) -> tuple[int, float]:
        """Exit code and wall seconds of one CLI command (run to its end, or to the sweep timeout)."""
        start = time.perf_counter()
        process = self.start(cli_args, log)
        try:
            code = process.wait(timeout=self.size.sweep_timeout_s)
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            end_session(process)
        return code, time.perf_counter() - start


def end_session(process: subprocess.Popen) -> None:
    """SIGKILL whatever is left of a session this check started (Ray's agents ignore SIGTERM)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def log_tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


# -- reading a sweep folder ------------------------------------------------------------------

def trial_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "params.json").exists()) if sweep.exists() else []


def reports(trial: Path) -> list[dict]:
    """The trial's result.json records, one per reported epoch (a resumed trial may repeat one)."""
    return read_result_lines(trial / RESULT_FILE)


def epochs_of(trial: Path) -> list[int]:
    return [r["epoch"] for r in reports(trial)]


def trial_start(records: list[dict]) -> float:
    """The trial's start on the wall clock: Ray's ``timestamp`` is whole seconds, its
    ``time_total_s`` precise from the trial's start, so their differences, each a second
    wide, average to the start within a fraction of a second."""
    return statistics.fmean(r["timestamp"] + 0.5 - r["time_total_s"] for r in records)


def train_images(data_root: Path, flag: str, subset: int | None) -> int:
    with np.load(data_root / f"{flag}.npz") as npz:
        n = len(npz["train_labels"])
    return min(n, subset) if subset else n


# -- (a) the test suite ----------------------------------------------------------------------

def suite_workers() -> list[str]:
    """pytest-xdist's worker option for this machine: half its CPUs, at most 8 (the Ray tests
    start Ray of their own); none without xdist or with fewer than 4 CPUs."""
    workers = min(8, (os.cpu_count() or 1) // 2)
    return ["-n", str(workers)] if workers > 1 and importlib.util.find_spec("xdist") else []


def suite(check: Check) -> dict:
    """The suite in `make test`'s two phases: the quick tests, then the slow ones with each file
    on one worker (a module's sweep fixture runs once). The test that must see no other Ray
    runs in the first; in one run beside the Ray tests it would skip. CI's two phases take 12
    minutes on two workers here: in one process, more than the 10 minutes a device call may run."""
    root = Path(check.args.data_root)
    missing = [name for name in REAL_FILES if not (root / name).is_file()]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not in {root}: the suite's real-data fixture reads "
                           f"{' and '.join(REAL_FILES)} (see gpu_sweep.sh --help for what to carry)")
    workers, start = suite_workers(), time.perf_counter()
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    commands, returncodes, failed, skipped = [], [], [], {}
    for phase, marker, extra in (("quick", "not slow and not bucket_server", []),
                                 ("slow", "slow and not bucket_server", ["--dist", "loadfile"] if workers else [])):
        junit = check.work / f"junit-{phase}.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker, *workers, *extra,
                   *check.size.tests, *NOT_HERE, f"--junitxml={junit}"]
        done = subprocess.run(command, cwd=REPO, env=check.env)  # its output goes to log.txt as it runs
        commands.append(" ".join(command[1:]))
        returncodes.append(0 if done.returncode == NO_TESTS_COLLECTED else done.returncode)
        results = ElementTree.parse(junit).getroot().find("testsuite")
        cases = results.findall("testcase")
        failed += [f"{c.get('classname')}::{c.get('name')}" for c in cases
                   if c.find("failure") is not None or c.find("error") is not None]
        skipped |= {f"{c.get('classname')}::{c.get('name')}": c.find("skipped").get("message", "")
                    for c in cases if c.find("skipped") is not None}
        for key in counts:
            counts[key] += int(results.get(key))
    return {
        "checks": {"(a) the suite passes": not any(returncodes) and not failed and counts["tests"] > 0},
        "python": sys.version.split()[0], "torch": torch.__version__, "ray": ray_version(),
        "commands": commands, "returncodes": returncodes, "seconds": time.perf_counter() - start,
        **counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "failed": failed, "skipped_with_reason": skipped,
    }


def ray_version() -> str:
    done = subprocess.run([sys.executable, "-c", "import ray; print(ray.__version__)"], capture_output=True, text=True)
    return done.stdout.strip() or "not importable"


# -- (b) a real sweep ------------------------------------------------------------------------

@contextlib.contextmanager
def gpu_sampling(path: Path):
    """nvidia-smi's utilisation and memory every 500 ms into ``path`` while the block runs
    (nothing where there is no nvidia-smi)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        yield
        return
    with path.open("w") as sink:
        sampler = subprocess.Popen([smi, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                                    "-lms", "500"], stdout=sink, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            sampler.terminate()
            sampler.wait()


def gpu_figures(path: Path) -> dict | None:
    if not path.exists():
        return None
    rows = [line.split(",") for line in path.read_text().splitlines() if line.count(",") == 1]
    util = [float(u) for u, _ in rows if u.strip().replace(".", "").isdigit()]
    memory = [float(m) for _, m in rows if m.strip().replace(".", "").isdigit()]
    if not util:
        return None
    return {"samples": len(util), "utilisation_mean_pct": statistics.fmean(util),
            "utilisation_median_pct": statistics.median(util), "memory_max_mib": max(memory, default=0.0)}


def sweep_figures(sweep: Path, n_train: int, wall_s: float, started: float) -> dict:
    """Stop reasons, trial-epochs, images/s and Ray's overhead per trial of a finished sweep."""
    table = read_sweep(sweep).to_pandas()
    trials = []
    for row in table.itertuples():
        overhead = (row.wall_time_s or math.nan) - (row.train_time_s or math.nan)  # NaN: nothing reported
        trials.append({"trial_id": row.trial_id, "model": row.model, "stop_reason": row.stop_reason,
                       "epochs_run": int(row.epochs_run), "trial_s": row.wall_time_s, "epochs_s": row.train_time_s,
                       "overhead_s": None if math.isnan(overhead) else overhead})
    overheads = [t["overhead_s"] for t in trials if t["overhead_s"] is not None]
    starts = [trial_start(reports(t)) for t in trial_dirs(sweep) if reports(t)]
    trial_epochs = sum(t["epochs_run"] for t in trials)
    return {
        "trials": len(trials),
        "stop_reasons": table["stop_reason"].value_counts().to_dict(),
        "trial_epochs": trial_epochs,
        "wall_s": wall_s,
        "train_images_per_epoch": n_train,
        "images_per_s": trial_epochs * n_train / wall_s,
        # ray.init, the dataset into the object store, the first worker and its imports
        "first_trial_started_after_s": min(starts) - started if starts else None,
        "overhead_per_trial_s": {"median": statistics.median(overheads), "mean": statistics.fmean(overheads),
                                 "max": max(overheads)} if overheads else None,
        "per_trial": trials,
    }


def real_sweep(check: Check) -> dict:
    size = check.size
    data = load_spec("retinamnist").to_dict()
    data.pop("smoke", None)
    data |= {"name": "b-retinamnist", "storage": str(check.storage), "num_samples": size.trials,
             "max_concurrent": size.concurrent, "resources": check.resources(size.concurrent)}
    data["train"] |= {"epochs": size.epochs, "device": check.device}
    if size.subset:
        data["train"] |= {"subset": size.subset, "batch_size": 32}
        data["search"]["model"] = {"choice": [PRESET]}
    data["scheduler"] |= {"max_t": size.epochs, "grace_period": size.grace, "reduction_factor": size.reduction}
    spec_file = check.write_spec(data)
    check.b_sweep = check.storage / data["name"]
    samples = check.work / "b_gpu.csv"
    started = time.time()
    with gpu_sampling(samples):
        code, wall = check.run(["sweep", str(spec_file)], check.work / "b_sweep.log")
    figures = sweep_figures(check.b_sweep, train_images(Path(check.args.data_root), "retinamnist", size.subset),
                            wall, started)
    gpu = gpu_figures(samples)
    reasons = figures["stop_reasons"]
    checks = {
        "(b) the sweep ends with exit code 0": code == 0,
        f"(b) all {size.trials} trials finished or stopped by ASHA, none errored":
            figures["trials"] == size.trials and set(reasons) <= {"finished", "early_stopped"},
    }
    if check.device == "cuda" and not check.quick:
        checks[f"(b) Ray's overhead per trial under {TARGET_OVERHEAD_S} s (median)"] = (
            figures["overhead_per_trial_s"] is not None
            and figures["overhead_per_trial_s"]["median"] < TARGET_OVERHEAD_S)
    return {"checks": checks, "spec": data, "returncode": code, **figures, "gpu": gpu,
            "gpu_samples": samples.read_text().splitlines() if samples.exists() else [],
            "log_tail": log_tail(check.work / "b_sweep.log") if code != 0 else ""}


# -- (c) packing under Ray -------------------------------------------------------------------

def packed_images_per_s(sweep: Path, n_train: int) -> float | None:
    """All trials' training images over the span in which every trial was in its timed
    epochs (those after the first, as trial_packing.py times them), each epoch's images
    spread evenly over its reported time; None if the trials never trained at once."""
    timelines = []
    for trial in trial_dirs(sweep):
        records = sorted(reports(trial), key=lambda r: r["training_iteration"])
        start = trial_start(records)
        ends = [start + r["time_total_s"] for r in records]
        timelines.append(list(zip(ends[:-1], ends[1:])))  # the timed epochs: the second on
    if not timelines or not all(timelines):
        return None
    window_start = max(epochs[0][0] for epochs in timelines)
    window_end = min(epochs[-1][1] for epochs in timelines)
    if window_end <= window_start:
        return None
    images = sum(n_train * max(0.0, min(b, window_end) - max(a, window_start)) / (b - a)
                 for epochs in timelines for a, b in epochs)
    return images / (window_end - window_start)


def packing(check: Check) -> list[dict]:
    root = check.synthetic_root()
    n_train = check.size.synthetic_train
    epochs = check.size.packing_epochs
    rows = []
    for count in check.size.packing:
        data = check.synthetic_spec(f"c-packing-{count}", trials=count, concurrent=count, epochs=epochs)
        spec_file = check.write_spec(data)
        samples = check.work / f"c_gpu_{count}.csv"
        with gpu_sampling(samples):
            code, wall = check.run(["sweep", str(spec_file), "--data-root", str(root)],
                                   check.work / f"c_sweep_{count}.log")
        sweep = check.storage / data["name"]
        ray_rate = packed_images_per_s(sweep, n_train) if code == 0 else None
        free = run_packed({"dataset": SYNTHETIC_FLAG, "model": PRESET, "epochs": epochs, "device": check.device,
                           "data_root": str(root)}, count, threads=1, work=check.work)
        row = {"trials": count, "gpu_per_trial": data["resources"]["gpu"], "ray_returncode": code, "ray_wall_s": wall,
               "ray_images_per_s": ray_rate, "ray_free_images_per_s": free["total_images_per_s"],
               "ray_vs_free": ray_rate / free["total_images_per_s"] if ray_rate else None,
               "ray_free_startup_s": free["warmup_s"], "gpu": gpu_figures(samples),
               "ray_log_tail": log_tail(check.work / f"c_sweep_{count}.log") if code != 0 else ""}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def packing_checks(check: Check, rows: list[dict]) -> dict:
    checks = {"(c) every packed sweep trains all its trials at once": all(r["ray_images_per_s"] for r in rows)}
    if check.device == "cuda" and not check.quick:
        eight = next((r for r in rows if r["trials"] == 8), None)
        checks[f"(c) 8 trials under Ray at least {TARGET_RAY_VS_FREE}x the Ray-free images/s"] = bool(
            eight and eight["ray_vs_free"] and eight["ray_vs_free"] >= TARGET_RAY_VS_FREE)
    return checks


# -- (d) faults ------------------------------------------------------------------------------

def kill_a_worker_mid_epoch(sweep: Path, epochs: int, deadline: float) -> dict:
    """Once a trial has reported an epoch with two or more to go, SIGKILL its worker process
    half an epoch later, so the kill lands inside an epoch."""
    while time.monotonic() < deadline:
        for trial in trial_dirs(sweep):
            records = reports(trial)
            if records and 1 <= records[-1]["epoch"] <= epochs - 2:
                last = records[-1]
                time.sleep(last["epoch_time_s"] / 2)
                os.kill(last["pid"], signal.SIGKILL)
                return {"trial": trial.name, "pid": last["pid"], "after_epoch": last["epoch"]}
        time.sleep(0.1)
    raise RuntimeError("no trial reached the middle of its run in time")


def wait_for(condition, deadline: float, what: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def faults(check: Check) -> dict:
    root = check.synthetic_root()
    epochs = check.size.fault_epochs
    data = check.synthetic_spec("d-faults", trials=3, concurrent=1, epochs=epochs)
    spec_file = check.write_spec(data)
    sweep = check.storage / data["name"]
    deadline = time.monotonic() + check.size.sweep_timeout_s
    driver = check.start(["sweep", str(spec_file), "--data-root", str(root)], check.work / "d_sweep.log")
    try:
        worker = kill_a_worker_mid_epoch(sweep, epochs, deadline)
        victim = sweep / worker["trial"]
        wait_for(lambda: any(r["resumed_from_epoch"] > 0 for r in reports(victim)), deadline,
                 "the killed trial to report an epoch after its restart")

        def one_finished_one_running() -> bool:  # and both in Ray's saved state, as a resume needs
            trials = trial_dirs(sweep)
            runs = [epochs_of(t) for t in trials]
            return any(len(set(r)) == epochs for r in runs) and any(0 < len(set(r)) < epochs for r in runs) \
                and {t.name for t in trials} <= state_trial_folders(sweep)

        wait_for(one_finished_one_running, deadline, "one finished trial and one mid-trial")
        os.kill(driver.pid, signal.SIGKILL)  # the driver only: its Ray processes are orphaned
        driver.wait()
    finally:
        end_session(driver)
    finished = {t.name: (t / "result.json").read_bytes() for t in trial_dirs(sweep) if len(set(epochs_of(t))) == epochs}
    code, resume_s = check.run(["resume", str(sweep), "--data-root", str(root)], check.work / "d_resume.log")

    trials = trial_dirs(sweep)
    repeated = {t.name: len(epochs_of(t)) - len(set(epochs_of(t))) for t in trials}
    victim_records = reports(sweep / worker["trial"])
    table = read_sweep(sweep).to_pandas()
    ranked = rank_trials(table)
    best_file = sweep / "best_config.yaml"
    best_config = load_yaml(best_file.read_text(), best_file.name) if best_file.exists() else {}
    checks = {
        "(d) the killed worker's trial resumed from its checkpoint": any(
            r["resumed_from_epoch"] >= worker["after_epoch"] and r["epoch"] == r["resumed_from_epoch"] + 1
            for r in victim_records),
        "(d) medsweep resume ends with exit code 0": code == 0,
        "(d) every trial reported every epoch": len(trials) == 3 and all(
            sorted(set(epochs_of(t))) == list(range(1, epochs + 1)) for t in trials),
        "(d) finished trials byte-identical after the resume": bool(finished) and all(
            (sweep / name / "result.json").read_bytes() == before for name, before in finished.items()),
        "(d) no epoch trained twice beyond the one in flight at each kill": all(n <= 1 for n in repeated.values()),
        "(d) medsweep collect reads every trial as finished": set(table["stop_reason"]) == {"finished"},
        "(d) best_config.yaml holds the ranking's best trial": not ranked.empty and best_config.get("lr") == json.loads(
            ranked.iloc[0].config_json)["lr"],
    }
    return {"checks": checks, "worker_kill": worker, "finished_before_driver_kill": sorted(finished),
            "epochs_reported_twice": repeated, "stop_reasons": table["stop_reason"].value_counts().to_dict(),
            "resume_returncode": code, "resume_s": resume_s,
            "log_tail": log_tail(check.work / "d_resume.log") if code != 0 else ""}


# -- (e) the sweep's outputs -----------------------------------------------------------------

def outputs(check: Check) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep = check.b_sweep
    if sweep is None or not sweep.exists():
        raise RuntimeError("step (b)'s sweep folder is missing")
    results, report = check.work / "results.parquet", check.work / "report"
    commands = {
        "status": ["status", str(sweep)],
        "collect": ["collect", str(sweep), "--out", str(results), "--evaluate-test", "--device", check.device],
        "report": ["report", str(results), "--out", str(report)],
    }
    codes = {name: check.run(args, check.work / f"e_{name}.log") for name, args in commands.items()}
    table = read_sweep(sweep).to_pandas().set_index("trial_id")
    metric = f"ray/tune/{table['metric'].iloc[0]}"
    event_files, scalar_steps = {}, {}
    for trial in trial_dirs(sweep):
        files = list(trial.glob("events.out.tfevents.*"))
        event_files[trial.name] = len(files)
        if len(files) == 1:
            accumulator = EventAccumulator(str(files[0]))
            accumulator.Reload()
            scalar_steps[trial.name] = len(accumulator.Scalars(metric)) if metric in accumulator.Tags()["scalars"] else 0
    epochs_run = {t.name: len(set(epochs_of(t))) for t in trial_dirs(sweep)}
    report_files = sorted(p.name for p in report.iterdir()) if report.exists() else []
    checks = {f"(e) medsweep {name} ends with exit code 0": code == 0 for name, (code, _) in codes.items()}
    checks |= {
        "(e) report.md and report.html written": {"report.md", "report.html"} <= set(report_files),
        "(e) one TensorBoard file per trial": bool(event_files) and set(event_files.values()) == {1},
        f"(e) the TensorBoard files hold {metric} for every epoch": scalar_steps == epochs_run,
    }
    return {"checks": checks, "seconds": {name: s for name, (_, s) in codes.items()}, "report_files": report_files,
            "event_files": event_files, "scalar_steps": scalar_steps, "epochs_run": epochs_run,
            "collected_trials": len(table),
            "logs_of_failures": {name: log_tail(check.work / f"e_{name}.log") for name, (code, _) in codes.items() if code}}


# -- the run ---------------------------------------------------------------------------------

def figures_line(letter: str, result) -> str:
    """One cell of the summary table: the step's headline figures."""
    if letter == "a":
        return f"{result['passed']} passed, {result['failures'] + result['errors']} failed, {result['skipped']} skipped"
    if letter == "b":
        gpu = result["gpu"]
        overhead = result["overhead_per_trial_s"] or {}
        return (f"{result['trials']} trials {result['stop_reasons']}, {result['trial_epochs']} trial-epochs, "
                f"{result['wall_s']:.0f} s, {result['images_per_s']:,.0f} images/s, Ray overhead per trial "
                f"median {overhead.get('median', float('nan')):.2f} s (max {overhead.get('max', float('nan')):.2f}), "
                f"first trial after {result['first_trial_started_after_s'] or float('nan'):.1f} s"
                + (f", GPU {gpu['utilisation_mean_pct']:.0f}% busy (mean), {gpu['memory_max_mib']:,.0f} MiB max"
                   if gpu else ", no GPU samples"))
    if letter == "c":
        return "; ".join(f"{r['trials']} at once: Ray {r['ray_images_per_s'] or 0:,.0f} vs {r['ray_free_images_per_s']:,.0f} "
                         f"images/s ({r['ray_vs_free'] or 0:.2f}x)" for r in result)
    if letter == "d":
        return (f"worker killed after epoch {result['worker_kill']['after_epoch']}, "
                f"{len(result['finished_before_driver_kill'])} trial(s) finished before the driver kill, "
                f"resume {result['resume_s']:.0f} s")
    return (f"{result['collected_trials']} trials collected, {len(result['report_files'])} report files, "
            f"{sum(result['event_files'].values())} TensorBoard files")


def main() -> int:
    parser = device_parser(__doc__.splitlines()[0], STEPS, STEPS)
    parser.add_argument("--work", type=Path, default=None, help="folder for the sweeps (default: temporary)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="MD5 mismatch")  # the synthetic set differs from medmnist's, by design
    args.out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.work is None:
            args.work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu-sweep-")))
        args.work.mkdir(parents=True, exist_ok=True)
        return run_steps(Check(args))


def run_steps(check: Check) -> int:
    started = time.perf_counter()
    device = (torch.cuda.get_device_name() if check.device == "cuda" else f"CPU, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f}")
    steps = {  # letter: (title, output file, run, checks of its result)
        "a": ("(a) test suite", "a_tests.json", suite, None),
        "b": ("(b) real sweep", "b_sweep.json", real_sweep, None),
        "c": ("(c) packing under Ray", "c_packing.jsonl", packing, packing_checks),
        "d": ("(d) faults", "d_faults.json", faults, None),
        "e": ("(e) status, collect, report, TensorBoard", "e_outputs.json", outputs, None),
    }
    rows, checks = [], {}
    for letter in STEPS:
        if letter not in check.args.steps:
            continue
        title, name, run, judge = steps[letter]
        print(f"== {title}", flush=True)
        step_start = time.perf_counter()
        try:
            result = run(check)
        except Exception as exc:  # one failed step must not hide the others' figures
            checks[title] = False
            rows.append(f"| {title} | FAILED | {time.perf_counter() - step_start:.0f} | {type(exc).__name__}: {exc} |")
            print(f"FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
        step_checks = judge(check, result) if judge else result["checks"]
        if isinstance(result, list):
            (check.out / name).write_text("".join(json.dumps(row) + "\n" for row in result))
        else:
            (check.out / name).write_text(json.dumps(result, indent=2, default=str))
        checks |= step_checks
        status = "ok" if all(step_checks.values()) else "FAIL"
        rows.append(f"| {title} | {status} | {time.perf_counter() - step_start:.0f} | {figures_line(letter, result)} |")
        print(rows[-1], flush=True)
    summary = [f"# Ray Tune on one device{' (quick)' if check.quick else ''}", "",
               f"device: {device}; Python {sys.version.split()[0]}, torch {torch.__version__}, Ray {ray_version()}", "",
               "| step | status | s | figures |", "|---|---|---:|---|", *rows, "", "## Verdict", "",
               *(f"- {'ok  ' if ok else 'FAIL'} {name}" for name, ok in checks.items()), "",
               f"total {time.perf_counter() - started:.0f} s"]
    (check.out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 0 if checks and all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
