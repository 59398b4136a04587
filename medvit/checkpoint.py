"""What a training run's checkpoint folder holds: ``state.pt``, everything a run resumes from
(``Trainer.save`` writes it, ``load_state`` reads it), and beside it ``selection.npz``, the
little an ensemble chooses its members by: the selected epoch's validation probabilities,
whether the run diverged, and its config. A ``checkpoint_NNNNNN`` folder without ``state.pt``,
or with a file cut short, is a save, copy or upload that was cut off (both files are zip files).
Torch-free: listing a sweep's checkpoints (``collect``, ``ensemble``, a bucket's listing) needs
no torch."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["CHECKPOINT_FILE", "SELECTION_FILE", "Selection", "read_selection", "write_selection"]

CHECKPOINT_FILE = "state.pt"
# Validation probabilities are at most 11,219 x 14 floats (ChestMNIST): 0.6 MB against a state.pt
# of 15-680 MiB, which `ensemble` would otherwise fetch from a bucket for every trial.
SELECTION_FILE = "selection.npz"


class Selection(NamedTuple):
    val_scores: np.ndarray | None  # (N_val, C) of the selected epoch; None before any epoch is selected
    diverged: bool
    config: dict  # the run's TrainConfig, as `TrainConfig.model_dump(mode="json")` gives it


def write_selection(directory: str | Path, selection: Selection) -> Path:
    """Write a checkpoint folder's SELECTION_FILE (plain arrays and a JSON string: nothing pickled)."""
    path = Path(directory) / SELECTION_FILE
    arrays = {"diverged": np.array(selection.diverged), "config": np.array(json.dumps(selection.config))}
    if selection.val_scores is not None:
        arrays["val_scores"] = selection.val_scores
    with path.open("wb") as file:
        np.savez(file, **arrays)
    return path


def read_selection(directory: str | Path) -> Selection | None:
    """A checkpoint folder's selection; None where it has no SELECTION_FILE (checkpoints written
    before it); a ValueError naming the file where it cannot be read."""
    path = Path(directory) / SELECTION_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            scores = arrays["val_scores"] if "val_scores" in arrays.files else None
            return Selection(scores, bool(arrays["diverged"]), json.loads(str(arrays["config"])))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable medsweep selection file ({type(exc).__name__})") from None
