"""Sweeps on a real local Ray: Optuna + ASHA on real RetinaMNIST, TensorBoard, status, resume,
and one smoke trial of every dataset spec."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from analysis.collect import read_sweep
from analysis.tables import rank_trials
from medvit.config import build_config, load_config_file
from medvit.data import DATASETS
from medsweep.cli import main
from sweeps.launch import run_sweep, sweep_dir
from sweeps.spec import load_spec, spec_from_dict
from sweep_helpers import TINY_MODEL_SEARCH, epochs_run, results, retina_spec, trial_dirs, wait_for

pytestmark = pytest.mark.slow  # every test here starts Ray

MAX_EPOCHS = 3


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def smoke_sweep(local_ray, real_root, tmp_path_factory):
    """Optuna + ASHA on real RetinaMNIST. One trial at a time and val_loss (continuous, no
    ties) make the run deterministic, so ASHA's stops are reproducible."""
    spec = retina_spec(
        tmp_path_factory.mktemp("storage"), "retina-smoke",
        num_samples=6, max_concurrent=1, metric="val_loss", mode="min",
        train={"epochs": MAX_EPOCHS},
        scheduler={"type": "asha", "max_t": MAX_EPOCHS, "grace_period": 1, "reduction_factor": 2},
    )
    start = time.perf_counter()
    grid = run_sweep(spec, data_root=str(real_root))
    return spec, Path(sweep_dir(spec)), grid, time.perf_counter() - start


def test_asha_stops_some_trials_early_and_all_are_stored(smoke_sweep):
    spec, directory, grid, wall = smoke_sweep
    trials = trial_dirs(directory)
    assert len(trials) == spec.num_samples == len(grid)
    runs = {t.name: epochs_run(t) for t in trials}
    for epochs in runs.values():
        assert epochs == list(range(1, len(epochs) + 1))
    stopped = [e for e in runs.values() if len(e) < MAX_EPOCHS]
    finished = [e for e in runs.values() if len(e) == MAX_EPOCHS]
    assert stopped and finished
    saved = spec.num_samples * MAX_EPOCHS - sum(map(len, runs.values()))
    train_time = sum(r["epoch_time_s"] for t in trials for r in results(t))
    print(f"\nsmoke sweep: {wall:.1f} s wall, {train_time:.1f} s training, ASHA saved {saved} trial-epochs")
    for trial in trials:
        checkpoints = list(trial.glob("checkpoint_*/state.pt"))
        assert checkpoints, f"no checkpoint in {trial.name}"
    assert (directory / "medsweep_spec.yaml").exists()


def test_searcher_proposals_stay_inside_the_spec(smoke_sweep):
    spec, directory, _, _ = smoke_sweep
    search = spec.to_dict()["search"]
    seen_models = set()
    for trial in trial_dirs(directory):
        params = json.loads((trial / "params.json").read_text())
        assert params["alpha"] in search["alpha"]["choice"]
        assert params["augment"] in search["augment"]["choice"]
        assert params["model"] in search["model"]["choice"]
        low, high = search["lr"]["loguniform"]
        assert low <= params["lr"] <= high
        low, high = search["weight_decay"]["loguniform"]
        assert low <= params["weight_decay"] <= high
        if params["alpha"] > 0:
            low, high = search["margin"]["loguniform"]
            assert low <= params["margin"] <= high
        else:
            assert "margin" not in params or params["margin"] == spec.train.margin
        seen_models.add(params["model"])
    assert seen_models  # proposals were read at all


def test_tensorboard_events_hold_the_reported_scalars(smoke_sweep):
    _, directory, _, _ = smoke_sweep
    for trial in trial_dirs(directory):
        events = list(trial.glob("events.out.tfevents.*"))
        assert events, f"no TensorBoard file in {trial.name}"
        accumulator = EventAccumulator(str(events[0]))
        accumulator.Reload()
        reported = results(trial)
        for name in ("val_acc", "val_loss", "val_qwk", "train_loss", "lr"):
            scalars = accumulator.Scalars(f"ray/tune/{name}")
            assert [s.step for s in scalars] == [r["training_iteration"] for r in reported]
            assert [s.value for s in scalars] == pytest.approx([r[name] for r in reported], rel=1e-6)


def test_best_config_trains_with_medsweep_train(smoke_sweep):
    spec, directory, grid, _ = smoke_sweep
    values = load_config_file(directory / "best_config.yaml")
    config = build_config(values)
    # The same trial the analysis ranks first (ties: earlier best epoch, smaller trial id).
    ranked = rank_trials(read_sweep(directory).to_pandas())
    best = json.loads(ranked.iloc[0]["config_json"])
    assert config.model == best["model"] and config.alpha == best["alpha"] and config.lr == best["lr"]
    assert config.dataset == "retinamnist" and config.epochs == MAX_EPOCHS


def test_a_second_sweep_into_the_same_folder_is_refused(smoke_sweep, capsys):
    spec, directory, _, _ = smoke_sweep
    spec_file = directory.parent / "again.yaml"
    spec_file.write_text(spec.to_yaml())
    trials_before = len(trial_dirs(directory))
    assert main(["sweep", str(spec_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"medsweep resume {directory}" in err
    assert len(trial_dirs(directory)) == trials_before


def test_status_lists_every_trial(smoke_sweep, capsys):
    _, directory, _, _ = smoke_sweep
    assert main(["status", str(directory)]) == 0
    out = capsys.readouterr().out
    for trial in trial_dirs(directory):
        assert results(trial)[0]["trial_id"] in out
    assert "early_stopped" in out and "finished" in out


def test_asha_cuts_on_the_spec_rung_metric(local_ray, real_root, tmp_path):
    """scheduler.rung_metric val_auc: ASHA stops exactly the trials whose epoch-1 AUC falls below
    the median of the AUCs recorded before them (Ray's asynchronous rule), while the searcher
    and the ranking keep the selection score."""
    spec = retina_spec(tmp_path, "retina-rung", num_samples=5, max_concurrent=1, train={"epochs": 2},
                       scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2, "rung_metric": "val_auc"})
    run_sweep(spec, data_root=str(real_root))
    # one trial at a time: the order trials were created is the order they reached the rung
    trials = sorted(trial_dirs(Path(sweep_dir(spec))), key=lambda t: int(t.name.split("_")[3]))
    aucs = [results(t)[0]["val_auc"] for t in trials]
    expected = [bool(aucs[:i]) and auc < np.percentile(aucs[:i], 50) for i, auc in enumerate(aucs)]
    assert [len(epochs_run(t)) == 1 for t in trials] == expected
    assert any(expected) and not all(expected)
    assert (Path(sweep_dir(spec)) / "best_config.yaml").exists()


def test_every_dataset_spec_runs_a_smoke_trial(local_ray, synthetic_root, tmp_path, capsys):
    """Each packaged spec, its dataset's loss and metrics, through the CLI's --smoke. The model
    search is pinned to the tiny preset: from the same seed Optuna's first draw for the specs
    that search augment, model, lr and weight decay is medvit_28_base, 20 s of training a spec
    on two AVX2 cores; every preset's forward and backward pass is tested in test_models.py."""
    for flag in DATASETS:
        spec = load_spec(flag).to_dict()
        spec["search"]["model"] = TINY_MODEL_SEARCH
        spec_file = tmp_path / f"{flag}.yaml"
        spec_file.write_text(spec_from_dict(spec, flag).to_yaml())
        code = main([
            "sweep", str(spec_file), "--smoke", "--num-samples", "1", "--storage", str(tmp_path),
            "--data-root", str(synthetic_root),
        ])
        assert code == 0, flag
        (trial,) = trial_dirs(tmp_path / f"{flag}-smoke")
        assert len(epochs_run(trial)) >= 1, flag
    assert "done   1 trials, 0 errored" in capsys.readouterr().out


RESUME_EPOCHS = 2  # enough that trials are still unfinished when the interrupt comes


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(real_root, tmp_path):
    spec = retina_spec(
        tmp_path, "retina-resume", num_samples=4, max_concurrent=1,
        searcher={"type": "random", "seed": 0}, scheduler={"type": "fifo"}, train={"epochs": RESUME_EPOCHS},
        search={"lr": {"loguniform": [1.0e-4, 3.0e-3]}, "augment": {"choice": ["off", "shift"]}},
    )
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    directory = tmp_path / "retina-resume"
    env = {**os.environ, "MEDMNIST_ROOT": str(real_root), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "medsweep"]
    sweep = subprocess.Popen([*command, "sweep", str(spec_file)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)

    def finished_trials():
        return [t for t in trial_dirs(directory) if len(epochs_run(t)) == RESUME_EPOCHS] if directory.exists() else []

    wait_for(lambda: len(finished_trials()) >= 2, 300, "two finished trials")
    sweep.send_signal(signal.SIGINT)  # what a user's Ctrl-C sends
    output = sweep.communicate(timeout=120)[0]
    done_before = {t.name: (t / "result.json").read_text() for t in finished_trials()}
    assert len(done_before) < 4, "the sweep finished before it could be interrupted"
    status = subprocess.run([*command, "status", str(directory)], env=env, capture_output=True, text=True, timeout=120)
    assert status.stdout.strip().splitlines()[-1] == (
        f"driver none: {len(done_before)} of 4 trials ended; continue with `medsweep resume {directory}`"), status

    # A spec edited to another dataset is refused before Ray starts: nothing in the folder changes.
    spec_text = (directory / "medsweep_spec.yaml").read_text()
    (directory / "medsweep_spec.yaml").write_text(spec_text.replace("retinamnist", "pneumoniamnist"))
    before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    edited = subprocess.run([*command, "resume", str(directory)], env=env, capture_output=True, text=True, timeout=120)
    assert edited.returncode == 2, edited.stdout[-2000:] + edited.stderr[-2000:]
    assert "dataset" in edited.stderr and "edited since the sweep started" in edited.stderr
    assert len(edited.stderr.strip().splitlines()) == 1, edited.stderr
    assert {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} == before
    (directory / "medsweep_spec.yaml").write_text(spec_text)

    resumed = subprocess.run([*command, "resume", str(directory)], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    trials = trial_dirs(directory)
    assert len(trials) == 4
    assert all(epochs_run(t) == list(range(1, RESUME_EPOCHS + 1)) for t in trials)
    for name, text in done_before.items():
        assert (directory / name / "result.json").read_text() == text, f"{name} was run again"
    assert "medsweep resume" in output
