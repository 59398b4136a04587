"""The test split, evaluated once: the best trial of each dataset, from its checkpoint.

``evaluate_best(results_parquet)`` picks, per dataset, model family and input, the best trial by the
sweep's *validation* metric (:func:`analysis.tables.rank_trials`: errored trials never count,
ties go to the earlier best epoch, then the smaller trial id), loads the selected-epoch weights
from its checkpoint (:func:`medvit.train.load_checkpoint_model`), evaluates the test split with
the trainer's own evaluation code (same normalisation, batches and metrics as
``Trainer.finish``) and writes ``test_acc, test_auc, test_qwk, test_mae`` into that row of the
table, written to ``out`` (``medsweep evaluate --out``; by default the input itself, as
``medsweep collect --evaluate-test`` does with the table it just wrote), atomically; every
other row and column is left as it was.

Per model family (MedViT, ResNet) and input (28 px; 224 px from 28, the MedViT paper's
protocol) because the report shows one "ours" row for each; the other trials are never
evaluated on the test split, so the test split plays no part in selection.
"""

from __future__ import annotations

import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import torch

from analysis.collect import _write_atomic, read_results
from analysis.schema import TEST_COLUMNS
from analysis.tables import best_trials, model_family, result_groups
from medvit.config import DEVICES
from sweeps.checkpoint_cache import cached_checkpoint
from sweeps.paths import local_folder

__all__ = ["evaluate_best", "evaluate_checkpoint", "load_checkpoint", "load_eval_data", "split_metrics",
           "trials_to_evaluate"]


def load_eval_data(config, data_root: str | os.PathLike | None = None):
    """The data a run trained on: its dataset and image size, its ``subset`` if it had one."""
    from medvit.train import load_data

    return load_data(config, data_root)


# What torch.load (weights only) and the state's own reading raise for a file that is empty,
# cut short, not a torch file, holds code to run, or is some other torch file.
BAD_CHECKPOINT = (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, IndexError, TypeError, ValueError)


def checkpoint_state(folder: str | os.PathLike) -> dict:
    """What a checkpoint folder's ``state.pt`` holds, local or in a bucket (s3://, gs://: fetched
    once into the checkpoint cache, sweeps.checkpoint_cache); a missing, corrupted or foreign
    one is a one-line ValueError naming the file."""
    from medvit.train import CHECKPOINT_FILE, load_state

    with cached_checkpoint(folder, f"no {CHECKPOINT_FILE} there (not a medsweep checkpoint folder)") as local:
        path = Path(local) / CHECKPOINT_FILE
        if not path.is_file():
            raise ValueError(f"checkpoint: {folder}: no {CHECKPOINT_FILE} in it (not a medsweep checkpoint folder)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch warns about odd pickles before refusing them
                return load_state(local)
        except BAD_CHECKPOINT as exc:
            raise ValueError(f"checkpoint: {path}: not a readable medsweep checkpoint ({type(exc).__name__})") from None


def load_checkpoint(folder: str | os.PathLike):
    """(model, config) of a checkpoint folder's selected epoch (`checkpoint_state`); a state that
    is not a medsweep model's is a one-line ValueError naming the file."""
    from medvit.train import CHECKPOINT_FILE, model_from_state

    state = checkpoint_state(folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a foreign state (a bare tensor) warns as it is indexed
            return model_from_state(state)
    except BAD_CHECKPOINT as exc:
        raise ValueError(f"checkpoint: {os.fspath(folder)}/{CHECKPOINT_FILE}: not a readable medsweep checkpoint "
                         f"({type(exc).__name__})") from None


def split_metrics(model: torch.nn.Module, config, data, split: str = "test", device: str = "auto") -> dict[str, float]:
    """Metrics of ``model`` on one split through ``Trainer.evaluate`` (the training loop's own
    evaluation, in the run's ``precision``) on ``device`` (``auto``: a GPU when
    there is one), whatever device the run trained on. Global RNG state is left unchanged."""
    from medvit.train import Trainer

    if device not in DEVICES:
        raise ValueError(f"device: unknown {device!r}; allowed: {', '.join(DEVICES)}")
    config = config.model_copy(update={"device": device})
    with torch.random.fork_rng(devices=[]):
        trainer = Trainer(config, data)
        trainer.eval_model.load_state_dict(model.state_dict())
        return trainer.evaluate(split)[0]


def evaluate_checkpoint(checkpoint: str | os.PathLike, data_root: str | os.PathLike | None = None,
                        split: str = "test", device: str = "auto") -> dict[str, float]:
    """``acc, auc`` (and ``qwk, mae`` for ordinal tasks) of a checkpoint's selected-epoch weights."""
    model, config = load_checkpoint(checkpoint)
    metrics = split_metrics(model, config, load_eval_data(config, data_root), split, device)
    return {k: float(v) for k, v in metrics.items() if k != "loss"}


def trials_to_evaluate(results) -> pd.DataFrame:
    """Rows to evaluate: the best trial of each (dataset, model family, input) by validation metric."""
    df = results if isinstance(results, pd.DataFrame) else results.to_pandas()
    picks = [best_trials(group) for _, _, group in result_groups(df)]
    picks = [p for p in picks if not p.empty]
    if not picks:
        return df.iloc[0:0]
    return pd.concat(picks).sort_values(["dataset", "trial_id"]).reset_index(drop=True)


def _done(row: pd.Series) -> bool:
    return any(row.get(c) is not None and not (isinstance(row.get(c), float) and math.isnan(row.get(c)))
               for c in TEST_COLUMNS)


def evaluate_best(results_parquet: str | os.PathLike, data_root: str | os.PathLike | None = None, *,
                  force: bool = False, device: str = "auto",
                  progress: Callable[[str], None] | None = None,
                  out: str | os.PathLike | None = None) -> pa.Table:
    """Evaluate the test split of each dataset's best trial(s) and write the table to ``out``.

    Args:
        results_parquet: the results table written by :func:`analysis.collect.collect`.
        data_root: folder of the MedMNIST files (default: the run's ``data_root``, else
            ``$MEDMNIST_ROOT``, else ``~/.medmnist``).
        force: evaluate again a trial whose test metrics are already filled in (by default it
            is skipped: the test split is evaluated once).
        device: ``auto`` (a GPU when there is one), ``cpu`` or ``cuda``.
        progress: called with one line per trial (e.g. ``print``).
        out: where the table with its test metrics goes (default: ``results_parquet`` itself).
            It is written even when a trial fails, with the trials evaluated before it.

    Returns:
        The whole table as written.

    Raises:
        ValueError: the file is missing or not a results table, a chosen trial has no
            checkpoint, or its checkpoint is not on this machine (one line each).
    """
    path = Path(results_parquet)
    out = path if out is None else Path(out)
    table = read_results(path)
    df = table.to_pandas()
    say = progress or (lambda _line: None)
    keys = list(zip(df["sweep_dir"], df["trial_id"]))
    updates: dict[int, dict[str, float | None]] = {}
    finished = False
    try:
        for _, row in trials_to_evaluate(df).iterrows():
            i = keys.index((row["sweep_dir"], row["trial_id"]))
            what = (f"{row['dataset']} {model_family(row['model'])} at {row['input']}: "
                    f"trial {row['trial_id']} of {row['sweep']} "
                    f"({row['metric']} {row['best_value']:.4f} at epoch {int(row['best_epoch'])})")
            if _done(row) and not force:
                say(f"skip   {what}: test split already evaluated")
                continue
            ckpt = row["checkpoint_path"]
            if not isinstance(ckpt, str) or not ckpt:
                raise ValueError(f"trial {row['trial_id']} of sweep {row['sweep']}: no checkpoint to evaluate")
            if local_folder(ckpt) is not None and not Path(ckpt).is_dir():
                raise ValueError(f"trial {row['trial_id']} of sweep {row['sweep']}: checkpoint {ckpt} is not on "
                                 "this machine (copy the sweep folder here and collect it again)")
            metrics = evaluate_checkpoint(ckpt, data_root, device=device)
            updates[i] = {c: metrics.get(c.removeprefix("test_")) for c in TEST_COLUMNS}
            shown = "  ".join(f"{c} {v:.4f}" for c, v in updates[i].items() if v is not None)
            say(f"test   {what}: {shown}")
        finished = True
    finally:
        if updates:
            table = _with_test_metrics(table, updates)
        if updates or (finished and out != path):  # a failure with nothing evaluated writes nothing
            _write_atomic(table, out)
    return table


def _with_test_metrics(table: pa.Table, updates: dict[int, dict[str, float | None]]) -> pa.Table:
    for c in TEST_COLUMNS:
        values = table.column(c).to_pylist()
        for i, metrics in updates.items():
            v = metrics[c]
            values[i] = None if v is None or math.isnan(v) else float(v)
        idx = table.schema.get_field_index(c)
        table = table.set_column(idx, table.schema.field(c), pa.array(values, pa.float64()))
    return table
