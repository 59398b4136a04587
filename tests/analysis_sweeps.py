"""The one place where the analysis tests get their Ray Tune sweeps.

``build_sweeps(storage, data_root)`` runs, in one Ray session that it shuts down at the end:

* ``RETINA``: a REAL medsweep smoke sweep through ``sweeps.launch.run_sweep``: the packaged
  RetinaMNIST spec's smoke variant, 4 Optuna trials of ``medvit_28_tiny`` on 128 images per
  split, 2 epochs, ASHA (one trial at a time, so ASHA's decisions do not depend on timing);
* ``PNEUMONIA``: a hand-made Ray Tune run on PneumoniaMNIST (32 images per split, FIFO,
  selected on ``val_auc``) over a model grid (``medvit_28_tiny``, ``resnet18_28``,
  ``ERROR_MODEL``). The two real models are trained by medsweep's ``Trainer`` in the test
  process and their per-epoch metrics and checkpoints are replayed through the Tune trials
  (so those workers need no torch, which keeps the run fast); the ``ERROR_MODEL`` trial
  reports one epoch with better validation values than any real trial and then raises:
  medsweep cannot produce an errored trial on purpose, and the analysis must never rank an
  errored trial first.

The ``analysis_sweeps`` and ``analysis_results`` fixtures in ``conftest.py`` build them once
per test session.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


RETINA = "retina_smoke"
PNEUMONIA = "pneumonia_errored"
ERROR_MODEL = "resnet50_28"  # the pneumonia trial that raises after reporting epoch 1
ERROR_MESSAGE = "synthetic failure for the analysis tests"


@dataclass
class SweepSet:
    storage: Path
    dirs: dict[str, Path]
    n_trials: dict[str, int]
    epochs: dict[str, int]
    metric: dict[str, tuple[str, str]]
    data_root: Path
    notes: dict[str, str] = field(default_factory=dict)


def retina_smoke_spec(storage: Path):
    """The packaged RetinaMNIST spec, smoke variant, 4 trials, medvit_28_tiny only, 128 images."""
    from sweeps.spec import load_spec, spec_from_dict

    spec = load_spec("retinamnist").smoke_variant().with_overrides(num_samples=4, storage=str(storage), name=RETINA)
    data = spec.to_dict()
    data["search"]["model"] = {"choice": ["medvit_28_tiny"]}
    data["train"]["subset"] = 128
    # Two epochs: no warm-up, raw weights and single-epoch selection, so the trials learn
    # enough to differ and ASHA has something to cut (with the defaults all sit at chance).
    data["train"].update(warmup_epochs=0, ema=0.0, select_window=1)
    data["max_concurrent"] = 1  # trials in order: ASHA's cut-offs are reproducible
    return spec_from_dict(data, source="analysis test fixture (retina)")


def pneumonia_spec(storage: Path):
    from sweeps.spec import load_spec, spec_from_dict

    data = load_spec("pneumoniamnist").smoke_variant().to_dict()
    data.update(name=PNEUMONIA, storage=str(storage), num_samples=1, max_concurrent=2, metric="val_auc", mode="max")
    data["train"]["subset"] = 32
    # As for the retina sweep: two epochs that learn, so test scores are not near-ties.
    data["train"].update(warmup_epochs=0, ema=0.0, select_window=1)
    data["search"] = {"model": {"grid": ["medvit_28_tiny", "resnet18_28", ERROR_MODEL]}}
    data["searcher"] = {"type": "grid"}
    data["scheduler"] = {"type": "fifo"}
    return spec_from_dict(data, source="analysis test fixture (pneumonia)")


def _train_runs(spec, data_root: Path) -> dict[str, list[tuple[dict, dict[str, bytes] | None]]]:
    """Real medsweep training (``Trainer``, the trainable's config rule) of each non-failing grid
    model, here in the test process: per epoch, the reported metrics, and the checkpoint files
    of the last epoch (the one a sweep keeps with ``num_to_keep=1``)."""
    import tempfile

    from medvit.config import build_config
    from medvit.data import load_dataset
    from medvit.train import Trainer
    from sweeps.space import trial_config

    data = load_dataset(spec.dataset, root=data_root, size=spec.train.img_size)
    runs = {}
    for model in spec.search["model"].values:
        if model == ERROR_MODEL:
            continue
        config = build_config(trial_config(spec, {"model": model}))
        trainer = Trainer(config, data.subset(config.subset, seed=config.seed))
        runs[model] = [(metrics, None) for metrics in trainer.epochs()]
        with tempfile.TemporaryDirectory() as d:
            trainer.save(d)
            runs[model][-1] = (runs[model][-1][0], {p.name: p.read_bytes() for p in Path(d).iterdir()})
    return runs


def _run_pneumonia(spec, data_root: Path) -> None:
    """The hand-made Ray Tune run: each trial replays one real training run (metrics and
    checkpoints per epoch), so its worker needs no torch; the ERROR_MODEL trial reports one
    epoch better than any real one and then raises."""
    from ray import tune

    from sweeps.launch import save_spec
    from sweeps.space import trial_scheduler, tune_param_space

    def replay(config, runs):  # defined here so Ray ships it by value to the workers
        import os as _os
        import tempfile as _tempfile

        from ray import tune as _tune

        if config["model"] not in runs:
            _tune.report({"epoch": 1, "train_loss": 0.1, "lr": 1e-3, "epoch_time_s": 0.5, "images_per_s": 100.0,
                          "val_loss": 0.05, "val_acc": 0.999, "val_auc": 0.999, "best_epoch": 1,
                          "best_val_auc": 0.999})
            raise RuntimeError("synthetic failure for the analysis tests")
        for metrics, files in runs[config["model"]]:
            if files is None:
                _tune.report(dict(metrics))
                continue
            with _tempfile.TemporaryDirectory() as d:
                for name, content in files.items():
                    with open(_os.path.join(d, name), "wb") as fh:
                        fh.write(content)
                _tune.report(dict(metrics), checkpoint=_tune.Checkpoint.from_directory(d))

    save_spec(spec)  # medsweep_spec.yaml, as the launcher writes it
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(replay, runs=_train_runs(spec, data_root)), {"cpu": 1}),
        param_space=tune_param_space(spec),
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, scheduler=trial_scheduler(spec),
                                    max_concurrent_trials=spec.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=spec.name, storage_path=spec.storage_path,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1), verbose=0),
    )
    tuner.fit()


def build_sweeps(storage: Path, data_root: Path) -> SweepSet:
    """Run the two test sweeps under ``storage`` (Ray is shut down before returning)."""
    import ray

    from sweeps.launch import run_sweep

    retina = retina_smoke_spec(storage)
    pneumonia = pneumonia_spec(storage)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fastest for these tiny models on a small, shared CPU
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=max(2, min(4, os.cpu_count() or 2)), include_dashboard=False,
                 log_to_driver=False,
                 configure_logging=False)
    try:
        run_sweep(retina, data_root=str(data_root))
        _run_pneumonia(pneumonia, data_root)
    finally:
        torch.set_num_threads(threads)
        if started:
            ray.shutdown()
    return SweepSet(
        storage=storage,
        dirs={RETINA: storage / RETINA, PNEUMONIA: storage / PNEUMONIA},
        n_trials={RETINA: 4, PNEUMONIA: 3},
        epochs={RETINA: retina.train.epochs, PNEUMONIA: pneumonia.train.epochs},
        metric={RETINA: (retina.metric, retina.mode), PNEUMONIA: (pneumonia.metric, pneumonia.mode)},
        data_root=data_root,
    )


def confirm_frame():
    """A hand-made confirm table in the format ``analysis.confirm`` writes (fewer columns: only
    ``dataset, label, seed`` are required): 3 seeds of 'best' and 'best alpha=0'."""
    import pandas as pd

    return pd.DataFrame({
        "dataset": ["retinamnist"] * 6,
        "sweep": [RETINA] * 6,
        "label": ["best"] * 3 + ["best alpha=0"] * 3,
        "seed": [1000, 1001, 1002] * 2,
        "test_acc": [0.5875, 0.6000, 0.5700, 0.5500, 0.5425, 0.5600],
        "test_auc": [0.7612, 0.7700, 0.7500, 0.7400, 0.7350, 0.7450],
        "test_qwk": [0.4123, 0.4300, 0.4000, 0.3800, 0.3700, 0.3900],
        "test_mae": [0.5925, 0.5800, 0.6000, 0.6200, 0.6300, 0.6100],
    })
