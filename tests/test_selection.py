"""medvit.selection: the one metrics table and the one best-epoch rule, checked against every
place that reads them (the evaluation, the config, the trainer, the ranking, the schema)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medvit.config import ConfigError, build_config
from medvit.selection import METRICS, SELECT_METRICS, TEST_COLUMNS, best_epoch, improves, metric_named
from medvit.tasks import BINARY, MULTI_CLASS, MULTI_LABEL, ORDINAL, TASKS

# A dataset of each task.
DATASET_OF = {MULTI_CLASS: "pathmnist", BINARY: "breastmnist", MULTI_LABEL: "chestmnist", ORDINAL: "retinamnist"}


def _labels_and_scores(task: str, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    if task == MULTI_LABEL:
        return rng.integers(0, 2, (n, 3)), rng.random((n, 3))
    k = 2 if task == BINARY else 4
    return np.arange(n) % k, rng.dirichlet(np.ones(k), n)


@pytest.mark.parametrize("task", TASKS)
def test_evaluate_returns_the_tables_keys_for_each_task(task):
    from medvit.metrics import evaluate

    y, scores = _labels_and_scores(task)
    assert set(evaluate(task, y, scores)) == {m.key for m in METRICS.values() if m.from_scores and task in m.tasks}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", SELECT_METRICS)
def test_a_config_may_select_on_a_metric_exactly_where_the_table_says_it_exists(name, task):
    values = {"dataset": DATASET_OF[task], "select_metric": name}
    if task in metric_named(name).tasks:
        assert build_config(values).select_mode == metric_named(name).direction
    else:
        with pytest.raises(ConfigError, match=f"^select_metric: {name} "):
            build_config(values)


def test_the_results_and_confirm_tables_have_a_column_for_every_metric_from_scores():
    from analysis.schema import CONFIRM_SCHEMA, RESULTS_SCHEMA, VAL_COLUMNS

    from_scores = [m for m in METRICS.values() if m.from_scores]
    assert TEST_COLUMNS == tuple(m.test_name for m in from_scores)
    assert VAL_COLUMNS == tuple(m.val_name for m in from_scores)
    assert {*TEST_COLUMNS, *(f"best_{name}" for name in VAL_COLUMNS)} <= set(RESULTS_SCHEMA.names)
    assert {*TEST_COLUMNS, *VAL_COLUMNS} <= set(CONFIRM_SCHEMA.names)


@pytest.mark.parametrize("name", ["val_acc", "test_mae", "loss"])
def test_a_metric_is_found_by_any_of_its_names(name):
    assert metric_named(name) is METRICS[name.split("_")[-1]]
    with pytest.raises(KeyError):
        metric_named("val_f1")


@pytest.mark.parametrize("mode, values, expected", [
    ("max", [0.5, 0.7, 0.7, 0.6], (0.7, 2)),  # a tie keeps the earlier epoch
    ("min", [0.5, 0.3, 0.3, 0.4], (0.3, 2)),
    ("max", [math.nan, None, 0.1, math.inf], (0.1, 3)),  # missing and non-finite values never count
    ("min", [math.nan, None], None),
])
def test_best_epoch_is_the_first_epoch_with_the_best_finite_value(mode, values, expected):
    assert best_epoch(enumerate(values, 1), mode) == expected
    assert not improves(math.nan, None, mode) and improves(0.0, None, mode)


@pytest.mark.parametrize("select_metric", ["val_acc", "val_mae", "val_loss"])
def test_the_trainer_and_the_ranking_pick_the_same_best_epoch(real_root, select_metric):
    """A real run (RetinaMNIST, every metric of its task reported each epoch): the epoch the
    trainer selects is the epoch `sweeps.ranking.trial_best` finds in its reports."""
    from medvit.train import Trainer, load_data
    from sweeps.ranking import trial_best

    config = build_config(dict(dataset="retinamnist", model="medvit_28_tiny", epochs=3, batch_size=32, subset=32,
                               select_metric=select_metric, select_window=2, augment="off", warmup_epochs=0,
                               data_root=str(real_root), device="cpu"))
    trainer = Trainer(config, load_data(config))
    records = list(trainer.epochs())
    assert {key for key in records[0] if key.startswith("val_")} == {m.val_name for m in METRICS.values()
                                                                      if ORDINAL in m.tasks}
    assert trial_best(records, select_metric, config.select_mode) == (trainer.best_value, trainer.best_epoch)
    assert records[-1]["best_epoch"] == trainer.best_epoch
