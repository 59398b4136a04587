"""A sweep's storage never fills up under it: checked before Ray starts and after each epoch.

On a full disk a trial errors writing its checkpoint, Ray retries it and every trial after it
(each erroring at its first checkpoint), and then writes its experiment state cut short:
measured on a 30 MiB tmpfs with `medvit_28_tiny` (an 18.7 MiB checkpoint), the sweep ended in a
Ray traceback (it read back an empty error file) and its experiment state was no longer JSON,
so `medsweep resume`, `status` and `collect` refused the folder. So:

- before Ray starts, a storage without room for one trial's checkpoint (estimated from the
  biggest searched model) is refused in one line, and one without room for the first trials'
  or for every trial's (each keeps its last) is warned about;
- after each reported epoch the driver compares the free space with the running trials' next
  checkpoints (the sweep's biggest each, plus room for Ray's state) and, short of it, stops the
  sweep the way Ctrl-C does: Ray saves its state, and `medsweep resume` continues every trial
  from its last checkpoint once there is room;
- if the disk filled all the same (another writer), the sweep ends in one line that says so.

A bucket (s3://, gs://) is not measured.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import warnings
from pathlib import Path

from ray import tune

from sweeps.folder import newest_state, read_experiment_state
from sweeps.paths import StorageError, SweepError, local_folder
from sweeps.space import trial_config
from sweeps.spec import SweepSpec

# Room kept for Ray's experiment state and result files beside the checkpoints (its state is
# some 10 KiB a trial; result files grow a few KiB a trial each epoch, checked at each).
STATE_ROOM_BYTES = 8 * 2**20


def biggest_checkpoint(folder: Path) -> int:
    return max((f.stat().st_size for f in folder.glob("*/checkpoint_*/*") if f.is_file()), default=0)


def size(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:,.1f} MiB"


def shortfall(folder: Path, running: int) -> str | None:
    """Why `folder` has no room for `running` trials' next checkpoints and Ray's state; None if it has."""
    free = shutil.disk_usage(folder).free
    checkpoint = biggest_checkpoint(folder)
    if free >= running * checkpoint + STATE_ROOM_BYTES:
        return None
    return (f"{folder} has {size(free)} free, less than the next checkpoints of {running} running trial(s) "
            f"({size(checkpoint)} each) and {size(STATE_ROOM_BYTES)} for the sweep's state")


def check_room_to_start(spec: SweepSpec, directory: str) -> None:
    """Before Ray starts: SweepError (one line) if the storage cannot hold one trial's
    checkpoint and the sweep's state; a warning if it cannot hold the checkpoints of the first
    trials, which start together, or of every trial (each keeps its last)."""
    folder = local_folder(directory)
    if folder is None:
        return
    free = shutil.disk_usage(folder).free
    model, checkpoint = biggest_trial_checkpoint(spec)
    if free < checkpoint + STATE_ROOM_BYTES:
        raise SweepError(f"storage: {folder} has {size(free)} free, less than one trial's checkpoint ({model}: "
                         f"about {size(checkpoint)}) and {size(STATE_ROOM_BYTES)} for the sweep's state; allowed: "
                         "a storage with room for at least one (--storage)")
    together = min(spec.max_concurrent, spec.total_trials)
    for trials, when in ((together, f"the first {together} trials, which start together"),
                         (spec.total_trials, f"the {spec.total_trials} trials, each of which keeps its last")):
        if free < trials * checkpoint + STATE_ROOM_BYTES:
            warnings.warn(f"storage: {folder} has {size(free)} free, less than the checkpoints of {when} "
                          f"({model}: about {size(checkpoint)} each); the sweep stops with its state saved "
                          "when room runs out, and `medsweep resume` goes on once there is more")
            return


def biggest_trial_checkpoint(spec: SweepSpec) -> tuple[str, int]:
    """The searched model (or the spec's) with the biggest checkpoint, and its size in bytes."""
    from medvit.data import dataset_info
    from medvit.train import checkpoint_bytes

    info = dataset_info(spec.dataset)
    models = spec.search["model"].values if "model" in spec.search else [spec.train.model]
    sizes = {model: checkpoint_bytes(spec.CONFIG(**trial_config(spec, {"model": model})), info.channels,
                                     info.num_classes) for model in models}
    return max(sizes.items(), key=lambda item: item[1])


def check_room(directory: str) -> None:
    """StorageError (one line) if a local sweep folder has no room for one more checkpoint: its
    trials errored writing theirs (and Ray may have failed to read their error files back)."""
    folder = local_folder(directory)
    reason = shortfall(folder, running=1) if folder is not None else None
    if reason is None:
        return
    if state_intact(folder):
        raise StorageError(f"storage: {reason}, so trials errored writing their checkpoints; make room, then "
                           f"continue with `medsweep resume {folder}`")
    raise StorageError(f"storage: {reason}, so trials errored writing their checkpoints and Ray's experiment "
                       "state was cut short: the sweep can be neither resumed nor collected; run it again where "
                       "there is room")


def state_intact(folder: Path) -> bool:
    """Whether the experiment state Ray would restore (the greatest name) is whole."""
    state = newest_state(folder)
    if state is None:
        return False
    try:
        read_experiment_state(state)
    except ValueError:
        return False
    return True


class StorageRoom(tune.Callback):
    """Stops the sweep with Ray Tune's own stop signal (SIGUSR1, handled as Ctrl-C is: the state
    saved, trials left to resume) when the storage has no room for the running trials' next
    checkpoints. The folder is read off the trial, so a sweep moved and resumed is measured where
    it is now."""

    def __init__(self):
        self.stopping = False

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        # A bucket's trial path is relative to the bucket ("bucket/name/trial"): only local and
        # NFS folders are absolute.
        folder = Path(trial.path).parent if trial.path and Path(trial.path).is_absolute() else None
        if self.stopping or folder is None or not folder.is_dir():
            return
        reason = shortfall(folder, running=sum(t.status == "RUNNING" for t in trials))
        if reason is None:
            return
        self.stopping = True
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.SIG_IGN, None):
            # Ray Tune puts its SIGUSR1 handler in place only for a fit in the main thread (whatever
            # TUNE_DISABLE_SIGINT_HANDLER says); without it SIGUSR1 would kill the driver, state unsaved.
            print(f"medsweep: warning: storage: {reason}; Ray Tune's stop signal is not in place (a fit outside "
                  "the main thread), so the sweep goes on", file=sys.stderr, flush=True)
            return
        print(f"medsweep: warning: storage: {reason}; stopping the sweep with its state saved", file=sys.stderr,
              flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)
