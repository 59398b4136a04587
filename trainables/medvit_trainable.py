"""The Ray Tune function trainable: one trial runs `medvit.train.Trainer` for one config.

It reports every epoch; a report carries a checkpoint holding everything the trainer needs to
continue on the epochs `checkpoint_due` names, so a trial that Ray restarts (a node lost, a
worker killed) resumes after the newest of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import ray
import torch
from ray import tune

from medvit.config import build_config
from medvit.data import MedMNISTData
from medvit.train import Trainer, run_data

# What each report adds to the trainer's metrics, for the record: where the trial ran, and the
# epoch it resumed from (0: it never did). The sweep's TensorBoard leaves them out.
BOOKKEEPING = ("resumed_from_epoch", "node_id")
# Each epoch's checkpoint is written to a temporary folder that Ray copies into storage; the
# folder's name carries the process id, so that what a killed process left can be told apart.
STAGING_PREFIX = "medsweep-checkpoint-"


def train_medvit(config: dict, data: MedMNISTData, full_config: Callable[[dict], dict],
                 checkpoint_every: int = 1) -> None:
    # Ray gives each trial worker OMP_NUM_THREADS=1; use the CPUs the trial reserved instead.
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))

    # Ray's trial config holds the searched values only (with repeats also the repeat index,
    # which becomes the seed); the launcher's full_config adds the spec's fixed values.
    train_config = build_config(full_config(config))
    data = run_data(train_config, data)
    trainer = Trainer(train_config, data)

    resumed_from = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.restore(directory)
        resumed_from = trainer.epoch

    remove_orphaned_checkpoints()
    node_id = ray.get_runtime_context().get_node_id()
    for metrics in trainer.epochs():
        report = {**metrics, "resumed_from_epoch": resumed_from, "node_id": node_id}
        if not checkpoint_due(metrics, checkpoint_every, train_config.epochs):
            tune.report(report)
            continue
        with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-") as directory:
            trainer.save(directory)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(directory))


def checkpoint_due(metrics: dict, every: int, epochs: int) -> bool:
    """Whether an epoch's report carries a checkpoint: every ``every``-th epoch, the last one (or
    the one that diverged, which ends the trial), and every epoch that becomes the selected one.
    The last rule keeps the newest checkpoint holding the weights that every report so far
    selects, which is what `collect`, `evaluate` and `ensemble` read, however the trial ends:
    finished, stopped by ASHA at a rung, errored or interrupted."""
    epoch = metrics["epoch"]
    return epoch % every == 0 or epoch >= epochs or bool(metrics["diverged"]) or metrics["best_epoch"] == epoch


def remove_orphaned_checkpoints(folder: str | None = None) -> None:
    """Delete the checkpoint folders that trial processes left in the temporary folder when they
    were killed (SIGKILL: the fault tests' killed workers, Ray's out-of-memory killer) between
    writing one and the end of `tune.report`, where their own cleanup never runs. Each holds a
    whole checkpoint (680 MiB for the paper specs' medvit_base). Called as a trial starts: only
    folders whose process is gone; another user's are kept."""
    for path in Path(folder or tempfile.gettempdir()).glob(f"{STAGING_PREFIX}*"):
        pid = path.name.removeprefix(STAGING_PREFIX).split("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
