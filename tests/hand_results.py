"""Hand-built results tables for the report and figure tests that need no Ray sweep.

``retina_results()`` has the shape of a ``retinamnist-cpu`` sweep (``make run``): 12 RetinaMNIST
trials of one sweep, alpha on the 0.1 grid, margin sampled continuously, two MedViT depths,
three augmentation presets, ASHA stops, only the best trial evaluated on test, checkpoints
under an absolute sweep folder of "another machine". ``retina_ensemble()`` is an
``ensemble.json`` in the format ``medsweep ensemble`` writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.schema import empty_results

SWEEP = "retinamnist-cpu"
SWEEP_DIR = f"/tmp/real/{SWEEP}"
BEST = "866f1d9e"

# trial, model, alpha, margin, augment, lr, weight decay, val ACC (best), best epoch, epochs run
_TRIALS = [
    (BEST, "medvit_28_small", 0.0, 0.1, "off", 5.8e-4, 2.3e-3, 0.6167, 8, 16),
    ("3d4157e5", "medvit_28_small", 0.0, 0.1, "medium", 3.8e-4, 2.6e-3, 0.6083, 13, 16),
    ("720f1275", "medvit_28_tiny", 0.1, 0.0654, "light", 1.1e-3, 7.1e-2, 0.6083, 14, 20),
    ("e47d7b0f", "medvit_28_small", 0.2, 0.1775, "medium", 4.2e-4, 5.4e-2, 0.5667, 12, 20),
    ("a6c9db2d", "medvit_28_tiny", 0.1, 0.2174, "light", 2.7e-3, 1.9e-2, 0.5583, 3, 8),
    ("2c8c3fde", "medvit_28_small", 0.3, 0.0222, "medium", 7.8e-4, 1.3e-3, 0.5500, 7, 16),
    ("7ad3998b", "medvit_28_tiny", 0.2, 0.1464, "off", 5.0e-4, 8.0e-2, 0.5167, 8, 8),
    ("3cc54a35", "medvit_28_tiny", 0.3, 0.0211, "off", 6.9e-4, 7.5e-3, 0.5000, 7, 8),
    ("d4e46ec3", "medvit_28_small", 0.1, 0.0270, "off", 3.8e-4, 4.7e-2, 0.4750, 8, 8),
    ("7a2bf2d4", "medvit_28_small", 0.4, 0.1070, "off", 1.1e-3, 2.0e-2, 0.4500, 3, 4),
    ("b81c2e07", "medvit_28_tiny", 0.1, 0.2831, "light", 2.2e-3, 1.1e-2, 0.4417, 2, 4),
    ("c3a0f1d5", "medvit_28_tiny", 0.5, 0.0921, "medium", 1.4e-3, 3.3e-2, 0.2333, 1, 4),
]


def retina_results() -> pd.DataFrame:
    rows = []
    for tid, model, alpha, margin, augment, lr, wd, val, best_epoch, run in _TRIALS:
        epochs = list(range(1, run + 1))
        # rises to the best epoch, then drifts down a little
        curve = [val * min(1.0, 0.7 + 0.3 * e / best_epoch) - 0.004 * max(0, e - best_epoch) for e in epochs]
        folder = (f"train_medvit_{tid}_alpha={alpha:.4f},augment={augment},lr={lr:.4f},margin={margin:.4f},"
                  f"model={model},weight_decay={wd:.4f}_2026-11-25_21-07-38")
        config = dict(dataset="retinamnist", model=model, alpha=alpha, margin=margin, augment=augment, lr=lr,
                      weight_decay=wd, epochs=20, batch_size=128, img_size=28, seed=0, select_metric="val_acc")
        rows.append(dict(
            dataset="retinamnist", sweep=SWEEP, sweep_dir=SWEEP_DIR, trial_id=tid, model=model, alpha=alpha,
            margin=margin, batch_size=128, lr=lr, weight_decay=wd, augment=augment, img_size=28, seed=0,
            epochs_max=20, epochs_run=run, stop_reason="finished" if run == 20 else "early_stopped",
            metric="val_acc", mode="max", best_value=val, best_epoch=best_epoch, best_val_acc=val,
            best_val_auc=0.7, best_val_qwk=0.5, best_val_mae=0.7, history_epoch=epochs, history_val_metric=curve,
            history_train_loss=[1.0 / e for e in epochs], checkpoint_path=f"{SWEEP_DIR}/{folder}/checkpoint_{run - 1:06d}",
            wall_time_s=17.0 * run, train_time_s=16.7 * run, config_json=json.dumps(config, sort_keys=True),
        ))
    # every other column of the schema stays empty; only the best trial was evaluated on test
    df = pd.DataFrame(rows).reindex(columns=empty_results().schema.names)
    df.loc[df["trial_id"] == BEST, ["test_acc", "test_auc", "test_qwk", "test_mae"]] = [0.547, 0.692, 0.540, 0.738]
    return df


def retina_confirm() -> pd.DataFrame:
    """The shipped example's confirm table: 3 seeds of the best (alpha 0) and best alpha > 0."""
    return pd.DataFrame({
        "dataset": ["retinamnist"] * 6,
        "sweep": [SWEEP] * 6,
        "label": ["best"] * 3 + ["best alpha>0 (alpha=0.1)"] * 3,
        "seed": [1000, 1001, 1002] * 2,
        "test_acc": [0.4975, 0.5025, 0.5225, 0.5050, 0.5250, 0.5450],
        "test_auc": [0.700, 0.706, 0.725, 0.724, 0.732, 0.738],
        "test_qwk": [0.500, 0.530, 0.545, 0.530, 0.556, 0.582],
        "test_mae": [0.840, 0.800, 0.755, 0.790, 0.745, 0.695],
    })


def retina_ensemble(folder: Path) -> Path:
    """``folder/ensemble.json``: three members, weights from greedy selection with replacement."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ensemble.json"
    path.write_text(json.dumps({
        "dataset": "retinamnist",
        "sweep": SWEEP,
        "metric": "val_acc",
        "candidates": 12,
        "members": [
            {"trial_id": BEST, "weight": 0.5, "val_acc": 0.6167},
            {"trial_id": "720f1275", "weight": 0.3, "val_acc": 0.6083},
            {"trial_id": "e47d7b0f", "weight": 0.2, "val_acc": 0.5667},
        ],
        "val": {"acc": 0.6500, "auc": 0.781, "qwk": 0.655, "mae": 0.541, "qwk_decoded": 0.701,
                "mae_decoded": 0.508},
        "test": {"acc": 0.5525, "auc": 0.741, "qwk": 0.588, "mae": 0.690, "qwk_decoded": 0.631,
                 "mae_decoded": 0.652},
        "winner": {"trial_id": BEST,
                   "val": {"acc": 0.6167, "auc": 0.770, "qwk": 0.640, "mae": 0.550},
                   "test": {"acc": 0.5350, "auc": 0.732, "qwk": 0.571, "mae": 0.712}},
    }, indent=2))
    return path


def write_results(df: pd.DataFrame, path: Path) -> Path:
    """``df`` as a results Parquet file that ``medsweep report`` accepts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from analysis.schema import conform

    table = pa.Table.from_pandas(df.assign(collected_at=pd.Timestamp.now(tz="UTC")), preserve_index=False)
    pq.write_table(conform(table), path)
    return path


def with_checkpoints(df: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """``df`` with each trial's checkpoint a folder of ``folder`` holding a (empty) ``state.pt``,
    which is what the GradCAM pick looks for."""
    df = df.assign(checkpoint_path=[str(folder / t) for t in df["trial_id"]])
    for path in df["checkpoint_path"]:
        Path(path).mkdir()
        (Path(path) / "state.pt").touch()
    return df
