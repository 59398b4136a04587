"""The one place where the analysis tests get their Ray Tune sweeps.

``build_sweeps(storage)`` runs two REAL, tiny Ray Tune sweeps with a stand-in trainable that
reports medsweep's metric names and checkpoints, and writes ``medsweep_spec.yaml`` the way the
launcher does. The ``analysis_sweeps`` fixture builds them once per test session (cached), so
the other ``test_analysis_*`` modules import it from here:

    from test_analysis_sweep_fixture import analysis_sweeps  # noqa: F401  (fixture)

To switch the tests to the real medsweep smoke sweep later, change ``build_sweeps`` only: it
must return a :class:`SweepSet` (storage path, sweep folders by name, expectations).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

RETINA = "retina_asha"
PNEUMONIA = "pneumonia_fifo"
ERROR_CONFIG = {"alpha": 0.3, "margin": 0.2}  # the retina trial that raises after epoch 1
# (it reports the best validation values, so it also checks that errored trials are never "best")


@dataclass
class SweepSet:
    storage: Path
    dirs: dict[str, Path]
    n_trials: dict[str, int]
    epochs: dict[str, int]
    metric: dict[str, tuple[str, str]]
    notes: dict[str, str] = field(default_factory=dict)


def _spec(name: str, dataset: str, metric: str, mode: str, epochs: int, scheduler: dict) -> dict:
    return {
        "name": name,
        "dataset": dataset,
        "metric": metric,
        "mode": mode,
        "scheduler": scheduler,
        "train": {"epochs": epochs, "batch_size": 32, "img_size": 28},
    }


def build_sweeps(storage: Path) -> SweepSet:
    """Run the two test sweeps under ``storage`` and return where they are."""
    import ray
    from ray import tune
    from ray.tune import CheckpointConfig, RunConfig
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    def trainable(config):  # defined here so Ray ships it by value to the workers
        import os as _os
        import tempfile as _tempfile

        import torch as _torch
        from ray import tune as _tune

        ordinal = config["dataset"] == "retinamnist"
        best, best_epoch = None, 0
        for epoch in range(1, config["epochs"] + 1):
            if config["alpha"] == 0.3 and config["margin"] == 0.2 and epoch == 2:
                raise RuntimeError("synthetic failure for the analysis tests")
            # Deterministic, config-dependent curves: smaller alpha and margin are better.
            acc = 0.70 - 0.30 * config["alpha"] - 0.10 * config["margin"] + 0.02 * epoch + 1e-3 * config["seed"]
            acc -= 0.2 * abs(config["lr"] - 1e-3) * 100
            if config["alpha"] == 0.3 and config["margin"] == 0.2:
                acc += 0.2  # the failing trial looks best, so ASHA keeps it until it fails
            m = {
                "epoch": epoch,
                "train_loss": 1.5 / epoch + config["alpha"],
                "lr": config["lr"] * (1 - epoch / (config["epochs"] + 1)),
                "epoch_time_s": 0.25,
                "images_per_s": 1000.0,
                "val_loss": 1.0 / epoch,
                "val_acc": acc,
                "val_auc": min(0.99, acc + 0.2),
            }
            if ordinal:
                m["val_qwk"] = acc - 0.1
                m["val_mae"] = 1.2 - acc
            key = config.get("select_metric", "val_acc")
            if best is None or m[key] > best:
                best, best_epoch = m[key], epoch
            m["best_epoch"] = best_epoch
            m[f"best_{key}"] = best
            with _tempfile.TemporaryDirectory() as d:
                _torch.save({"epoch": epoch, "best_epoch": best_epoch}, _os.path.join(d, "state.pt"))
                _tune.report(m, checkpoint=_tune.Checkpoint.from_directory(d))

    base = {
        "model": "medvit_28_tiny",
        "batch_size": 32,
        "weight_decay": 0.05,
        "augment": "light",
        "img_size": 28,
        "seed": 0,
    }
    retina_space = {
        **base,
        "dataset": "retinamnist",
        "epochs": 4,
        "lr": 1e-3,
        "alpha": tune.grid_search([0.0, 0.1, 0.2, 0.3]),
        "margin": tune.grid_search([0.1, 0.2]),
        "select_metric": "val_acc",
    }
    pneu_space = {
        **base,
        "dataset": "pneumoniamnist",
        "model": tune.grid_search(["medvit_28_tiny", "resnet18_28"]),
        "epochs": 2,
        "lr": 1e-3,
        "alpha": 0.0,
        "margin": 0.1,
        "select_metric": "val_auc",
    }
    sweeps = {
        RETINA: (
            retina_space,
            ASHAScheduler(time_attr="training_iteration", max_t=4, grace_period=1, reduction_factor=2),
            _spec(RETINA, "retinamnist", "val_acc", "max", 4,
                  {"type": "asha", "max_t": 4, "grace_period": 1, "reduction_factor": 2}),
            ("val_acc", "max"),
        ),
        PNEUMONIA: (
            pneu_space,
            FIFOScheduler(),
            _spec(PNEUMONIA, "pneumoniamnist", "val_auc", "max", 2, {"type": "fifo", "max_t": 2}),
            ("val_auc", "max"),
        ),
    }
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        dirs = {}
        for name, (space, sched, spec, (metric, mode)) in sweeps.items():
            sweep_dir = storage / name
            sweep_dir.mkdir(parents=True, exist_ok=True)
            (sweep_dir / "medsweep_spec.yaml").write_text(yaml.safe_dump(spec))  # as the launcher does
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                tune_config=tune.TuneConfig(
                    metric=metric, mode=mode, scheduler=sched, max_concurrent_trials=2, reuse_actors=True
                ),
                run_config=RunConfig(
                    storage_path=str(storage),
                    name=name,
                    checkpoint_config=CheckpointConfig(num_to_keep=2),
                    verbose=0,
                ),
            )
            tuner.fit()
            dirs[name] = sweep_dir
    finally:
        if started:
            ray.shutdown()
    return SweepSet(
        storage=storage,
        dirs=dirs,
        n_trials={RETINA: 8, PNEUMONIA: 2},
        epochs={RETINA: 4, PNEUMONIA: 2},
        metric={k: v[3] for k, v in sweeps.items()},
    )


_CACHE: dict[str, SweepSet] = {}


@pytest.fixture(scope="session")
def analysis_sweeps(tmp_path_factory) -> SweepSet:
    """Two real Ray Tune sweeps (built once per session; treat them as read-only)."""
    if "s" not in _CACHE:
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        _CACHE["s"] = build_sweeps(tmp_path_factory.mktemp("ray_sweeps"))
    return _CACHE["s"]


def test_fixture_builds_real_sweeps(analysis_sweeps):
    for name, d in analysis_sweeps.dirs.items():
        assert list(d.glob("experiment_state-*.json")), name
        assert (d / "tuner.pkl").exists()
        trial_dirs = [p for p in d.iterdir() if (p / "params.json").exists()]
        assert len(trial_dirs) == analysis_sweeps.n_trials[name]


def fake_evaluation(results_parquet: Path, values: dict[str, dict[str, float]] | None = None) -> "object":
    """Stand-in for the evaluation step: fill test_* of each dataset's best MedViT trial.

    Returns the updated results as a pandas DataFrame (also written back to the file).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from analysis.schema import RESULTS_SCHEMA

    values = values or {
        "retinamnist": {"test_acc": 0.5875, "test_auc": 0.7612, "test_qwk": 0.4123, "test_mae": 0.5925},
        "pneumoniamnist": {"test_acc": 0.8846, "test_auc": 0.9517},
    }
    df = pq.read_table(results_parquet).to_pandas()
    ok = df[(df["stop_reason"] != "errored") & df["model"].str.startswith("medvit")]
    for ds, vals in values.items():
        sub = ok[ok["dataset"] == ds].sort_values(["best_value", "epochs_run", "trial_id"],
                                                  ascending=[False, False, True])
        for k, v in vals.items():
            df.loc[sub.index[0], k] = v
    pq.write_table(pa.Table.from_pandas(df, schema=RESULTS_SCHEMA, preserve_index=False), results_parquet)
    return pd.DataFrame(df)


def confirm_frame():
    """A confirm table as the confirm step will write it: 3 seeds of 'best' and 'best alpha=0'."""
    import pandas as pd

    return pd.DataFrame({
        "dataset": ["retinamnist"] * 6,
        "label": ["best"] * 3 + ["best alpha=0"] * 3,
        "seed": [0, 1, 2] * 2,
        "test_acc": [0.5875, 0.6000, 0.5700, 0.5500, 0.5425, 0.5600],
        "test_auc": [0.7612, 0.7700, 0.7500, 0.7400, 0.7350, 0.7450],
        "test_qwk": [0.4123, 0.4300, 0.4000, 0.3800, 0.3700, 0.3900],
        "test_mae": [0.5925, 0.5800, 0.6000, 0.6200, 0.6300, 0.6100],
    })


@pytest.fixture(scope="session")
def analysis_results(analysis_sweeps, tmp_path_factory):
    """(results.parquet path, DataFrame): both sweeps collected, best MedViT trials evaluated."""
    if "r" not in _CACHE:
        from analysis.collect import collect

        out = tmp_path_factory.mktemp("results") / "results.parquet"
        collect(list(analysis_sweeps.dirs.values()), out)
        _CACHE["r"] = (out, fake_evaluation(out))
    path, df = _CACHE["r"]
    return path, df.copy()
