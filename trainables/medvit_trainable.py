"""The Ray Tune function trainable: one trial runs `medvit.train.Trainer` for one config.

It reports every epoch with a checkpoint holding everything the trainer needs to continue,
so a trial that Ray restarts (a node lost, a worker killed) resumes at the next epoch.
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


def train_medvit(config: dict, data: MedMNISTData, full_config: Callable[[dict], dict]) -> None:
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
        with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-") as directory:
            trainer.save(directory)
            tune.report(
                {**metrics, "resumed_from_epoch": resumed_from, "node_id": node_id},
                checkpoint=tune.Checkpoint.from_directory(directory),
            )


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
