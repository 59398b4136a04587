"""What a trial reports each epoch, as the sweep's TensorBoard shows it: the values at the
selected epoch are named `selected_*` (they move with the selection, so they can fall), and
HParams leads with them, then the sweep's metric and `select_score`."""

from __future__ import annotations

import os

from medvit.config import build_config
from medvit.train import Trainer
from sweep_helpers import leftover_checkpoint
from trainables.medvit_trainable import STAGING_PREFIX, checkpoint_due, remove_orphaned_checkpoints
from trainables.tensorboard import BOOKKEEPING, metric_order


def test_selected_values_are_the_selected_epochs_and_lead_the_hparams(retina_data):
    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "device": "cpu", "epochs": 3,
                           "batch_size": 32, "select_metric": "val_auc", "select_window": 2})
    history = list(Trainer(config, retina_data.subset(96, seed=0)).epochs())
    for record in history:
        selected = history[record["best_epoch"] - 1]
        assert record["selected_val_auc"] == selected["val_auc"]
        assert record["selected_score"] == selected["select_score"]
        assert not any(key.startswith("best_val") for key in record)
    reported = [key for key in history[-1] if key not in BOOKKEEPING]
    assert metric_order(reported, "val_auc")[:6] == ["selected_val_auc", "selected_score", "val_auc", "select_score",
                                                     "val_acc", "val_qwk"]


def test_checkpoint_folders_of_killed_processes_are_removed_and_live_ones_kept(tmp_path):
    """A trial killed between writing its checkpoint and the end of `tune.report` leaves the
    folder behind; the next trial on the node removes it, and never a running process's."""
    dead = leftover_checkpoint(tmp_path)
    alive = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-x1y2"
    alive.mkdir()
    unrelated = tmp_path / "tmp-something-else"
    unrelated.mkdir()
    remove_orphaned_checkpoints(str(tmp_path))
    assert not dead.exists()
    assert alive.exists() and unrelated.exists()


def test_checkpoints_fall_on_every_nth_the_last_a_diverged_and_each_newly_selected_epoch():
    def due(best_epochs, every, diverged_at=None):
        return [epoch for epoch, best in enumerate(best_epochs, start=1)
                if checkpoint_due({"epoch": epoch, "best_epoch": best, "diverged": epoch == diverged_at},
                                  every, epochs=len(best_epochs))]

    selected = [1, 2, 2, 2, 5, 5, 5, 5, 5, 5]  # epochs 1, 2 and 5 become the selected one
    assert due(selected, every=1) == list(range(1, 11))
    assert due(selected, every=4) == [1, 2, 4, 5, 8, 10]
    assert due(selected, every=100) == [1, 2, 5, 10]
    assert due([1, 1, 1, 1], every=100, diverged_at=3) == [1, 3, 4]
