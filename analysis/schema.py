"""The results table: one row per Ray Tune trial, stored as Parquet.

``analysis.collect.collect`` writes it; ``analysis.tables``, ``analysis.figures`` and
``analysis.report`` read it; the evaluation step fills the ``test_*`` columns. The column
set, order and types are fixed by :data:`RESULTS_SCHEMA`; a file written by any version of
medsweep with this schema version can be read by the others.

Schema version: ``SCHEMA_VERSION`` (stored in the Parquet file's metadata under
``medsweep.schema_version``).

Columns
-------
Identity

=================  =========================  ==================================================
column             type                       meaning
=================  =========================  ==================================================
dataset            string, not null           MedMNIST flag, e.g. ``retinamnist`` (trial config,
                                              else the sweep spec)
sweep              string, not null           sweep name (the folder name ``N`` of ``S/N``)
sweep_dir          string, not null           absolute path of the sweep folder ``S/N``
trial_id           string, not null           Ray's trial id, e.g. ``1b458_00003``;
                                              (sweep_dir, trial_id) is the row key
=================  =========================  ==================================================

Trial configuration (the trial's TrainConfig values as ``sweeps.space.trial_config``
builds them: the sweep spec's ``dataset``, fixed ``train`` values and ``metric`` as
``select_metric``, with the sampled values of the trial's ``params.json`` on top)

=================  =========================  ==================================================
model, alpha, ...  string/float64/int64/bool  one column per TrainConfig field that says what
                                              a trial trained (``CONFIG_COLUMNS``, derived from
                                              ``medvit.config.TrainConfig``: model, alpha,
                                              margin, batch_size, lr, weight_decay, ...,
                                              img_size, resize, resize_mode, ... in the field
                                              order; the field's ``description`` says what it
                                              is), except dataset, epochs (``epochs_max``),
                                              select_metric (``metric``) and where it ran
                                              (subset, data_root, device); null if absent
epochs_max         int32                      epochs the trial was configured for (config
                                              ``epochs``, else the spec's ``train.epochs``, else
                                              the scheduler's ``max_t``)
config_json        string, not null           the whole trial config as sorted JSON
config_group       string                     in a sweep with ``repeats`` > 1: the
                                              configuration the trial is a repeat of (a hash of
                                              its sampled values without the repeat index,
                                              ``sweeps.space.configuration_id``), the same for
                                              every repeat; null without repeats
repeat_index       int32                      which repeat of its configuration the trial is (0,
                                              1, ...; its seed is the spec's ``train.seed`` plus
                                              this); null without repeats
repeats            int32                      the sweep spec's ``repeats`` (1 unless it repeats
                                              configurations); null without a spec
=================  =========================  ==================================================

Outcome

=================  =========================  ==================================================
epochs_run         int32, not null            epochs with a reported result (0 if none)
stop_reason        string, not null           ``finished`` (ran all ``epochs_max`` epochs),
                                              ``early_stopped`` (terminated earlier, i.e. by the
                                              scheduler, e.g. ASHA), ``errored`` (error file or
                                              Ray status ERROR), ``diverged`` (ended on a
                                              non-finite training loss; never ranked),
                                              ``unfinished`` (pending, running, paused or
                                              interrupted)
error              string                     the line of the trial's ``error.txt`` that names
                                              the error: its last (the exception), or Ray's
                                              memory monitor's report of the node's memory;
                                              null if it did not error
metric             string, not null           the sweep's selection metric (spec ``metric``),
                                              e.g. ``val_acc``
mode               string, not null           ``max`` or ``min`` (the metric's direction)
best_value         float64                    best selection score over the trial's epochs
                                              (``sweeps.ranking``: ``select_score``, the
                                              metric's trailing mean on the validation split;
                                              ``metric`` itself for older results); null for
                                              a diverged trial. With repeats, trials are ranked
                                              by their configuration's mean of it
best_epoch         int32                      first epoch of ``best_value`` (1-based)
best_val_acc       float64                    ``val_acc`` at ``best_epoch``
best_val_auc       float64                    ``val_auc`` at ``best_epoch``
best_val_qwk       float64                    ``val_qwk`` at ``best_epoch`` (null unless ordinal)
best_val_mae       float64                    ``val_mae`` at ``best_epoch`` (null unless ordinal)
history_epoch      list<int32>, not null      epoch of each reported result, ascending
history_val_metric list<float64>, not null    ``metric`` at each of those epochs
history_train_loss list<float64>, not null    ``train_loss`` at each of those epochs
checkpoint_path    string                     absolute path of the trial's last
                                              ``checkpoint_NNNNNN`` folder; our checkpoints carry
                                              the best-so-far weights, so this is the one holding
                                              ``best_epoch``; null if none exists
=================  =========================  ==================================================

Compute

=================  =========================  ==================================================
node               string                     ``hostname / node_ip`` of the last result
wall_time_s        float64                    Ray's ``time_total_s`` of the last result
train_time_s       float64                    sum of the reported ``epoch_time_s``
=================  =========================  ==================================================

Test split (filled by the evaluation step; null until then)

=================  =========================  ==================================================
test_acc           float64                    test ACC of the best-epoch weights
test_auc           float64                    test AUC
test_qwk           float64                    test quadratic weighted kappa (ordinal only)
test_mae           float64                    test mean absolute error in grades (ordinal only)
=================  =========================  ==================================================

Test-selection audit (sweeps run with ``audit_test`` on, whose trials report every epoch's test
metrics as ``audit_test_*``; null otherwise). An audit, never a result: no ranking, table cell
or best configuration reads these columns; the report's audit section sets them beside the
honest ``test_*`` numbers

=================  =========================  ==================================================
audit_epoch        int32                      the epoch choosing on the test split would have
                                              taken: the best raw test value of the sweep
                                              metric's kind (``test_acc`` for ``val_acc``), ties
                                              to the earliest, a diverged epoch never (the
                                              Trainer's audit rule)
audit_test_acc     float64                    test ACC at ``audit_epoch``
audit_test_auc     float64                    test AUC at ``audit_epoch``
audit_test_qwk     float64                    test QWK at ``audit_epoch`` (ordinal only)
audit_test_mae     float64                    test MAE at ``audit_epoch`` (ordinal only)
=================  =========================  ==================================================

Bookkeeping

=================  =========================  ==================================================
collected_at       timestamp[us, UTC], not    when ``collect`` read the trial; the newer row wins
                   null                       on (sweep_dir, trial_id)
=================  =========================  ==================================================

The *confirm* table (:data:`CONFIRM_SCHEMA`, written by :func:`analysis.confirm.confirm`)
holds per-seed re-runs of chosen configurations, one row per (sweep, label, seed):

=================  =========================  ==================================================
column             type                       meaning
=================  =========================  ==================================================
dataset            string, not null           MedMNIST flag
sweep              string                     the sweep the configuration came from
label              string, not null           the configuration: ``best`` (the sweep's best
                                              trial; ``best <family>`` when that is not MedViT),
                                              ``best alpha=0`` (the sweep's best alpha = 0
                                              trial), ``best with alpha=0`` (the best
                                              configuration with alpha set to 0), ``best
                                              alpha>0 (alpha=<x>)``; an ``alpha=<x>`` in a
                                              label places the rows in Table 2's alpha row ``x``
seed               int64, not null            training seed of the re-run (1000, 1001, ...)
trial_id           string                     the sweep trial whose configuration was re-run
config_json        string                     the whole TrainConfig of the re-run, sorted JSON
test_acc/auc       float64                    test metrics at the selected epoch (evaluated once)
test_qwk/mae       float64                    (ordinal only)
val_acc/auc        float64                    validation metrics at the selected epoch
val_qwk/mae        float64                    (ordinal only)
selected_epoch     int32                      epoch chosen on the validation split
audit_epoch        int32                      with ``audit_test`` on: the epoch selecting on the
                                              test split would have chosen (best raw test value
                                              of the select metric's kind, ties to the earliest);
                                              null without the audit
audit_test_acc/auc float64                    test metrics at ``audit_epoch``: what a paper that
audit_test_qwk/mae                            chose its epoch on test would print. An audit,
                                              never a result: ``test_*`` are the honest numbers
test_scores        list<list<float32>>        the selected weights' test-split probabilities,
                                              one list per image (what a seed ensemble averages;
                                              null in tables written before them)
test_labels        list<list<int16>>          the test split's labels, one list per image
epochs             int32                      epochs trained
wall_time_s        float64                    wall time of the run
environment_json   string                     where it ran (``medvit.train.environment``: torch,
                                              Python, device, CPU kernels, threads), sorted JSON;
                                              the same seed elsewhere trains another model
created_at         timestamp[us, UTC]         when the run finished
=================  =========================  ==================================================

Only ``dataset, label, seed`` are required: a table with just those and the ``test_*``
columns (e.g. hand-made) is read too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pyarrow as pa
import pyarrow.parquet as pq

from medvit.config import TrainConfig
from medvit.outcome import OUTCOMES
from medvit.selection import AUDIT_PREFIX, METRICS, SCORE_METRICS, TEST_COLUMNS

__all__ = [
    "SCHEMA_VERSION",
    "RESULTS_SCHEMA",
    "CONFIRM_SCHEMA",
    "STOP_REASONS",
    "TEST_COLUMNS",
    "VAL_COLUMNS",
    "AUDIT_COLUMNS",
    "CONFIG_COLUMNS",
    "config_columns",
    "WHERE_IT_RAN",
    "train_config_keys",
    "results_schema",
    "KEY_COLUMNS",
    "empty_results",
    "conform",
]

SCHEMA_VERSION = "1"

STOP_REASONS: tuple[str, ...] = OUTCOMES
# The metrics computed from a split's scores (medvit.selection's table): test_* and val_* columns.
VAL_COLUMNS: tuple[str, ...] = tuple(metric.val_name for metric in METRICS.values() if metric.from_scores)
# The test-selection audit (results and confirm tables): test metrics at the epoch chosen on
# test, the per-epoch keys of medvit.train's audit. Named so that nothing reading the test_*
# columns (the validation-selected, reported numbers) takes them.
AUDIT_COLUMNS: tuple[str, ...] = tuple(AUDIT_PREFIX + metric for metric in SCORE_METRICS)
KEY_COLUMNS: tuple[str, ...] = ("sweep_dir", "trial_id")
# TrainConfig fields with columns of their own: dataset, epochs_max, metric.
_OWN_COLUMNS = ("dataset", "epochs", "select_metric")
# TrainConfig fields that say where and on what share of the data a trial ran, not what it
# trained: no column, and not part of a best configuration.
WHERE_IT_RAN = ("subset", "data_root", "device")
_ARROW_TYPES = {str: pa.string(), float: pa.float64(), int: pa.int64(), bool: pa.bool_()}


def _arrow_type(annotation: Any) -> pa.DataType | None:
    """The column type of a field: a plain string, number or flag, one that may be None
    (``resize: int | None``), or a choice of strings (``Literal["nearest", "bilinear"]``)."""
    if annotation in _ARROW_TYPES:
        return _ARROW_TYPES[annotation]
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal and all(isinstance(a, str) for a in args):
        return pa.string()
    return _ARROW_TYPES.get(args[0]) if len(args) == 1 else None


def config_columns(config_class: type[TrainConfig] = TrainConfig) -> dict[str, pa.DataType]:
    """Trial-config fields copied into their own columns: every field that says what a trial
    trained (all but ``WHERE_IT_RAN``), of a string, number, flag or string-choice type."""
    types = {name: _arrow_type(info.annotation) for name, info in config_class.model_fields.items()
             if name not in _OWN_COLUMNS and name not in WHERE_IT_RAN}
    return {name: arrow_type for name, arrow_type in types.items() if arrow_type is not None}


def train_config_keys(config_class: type[TrainConfig] = TrainConfig) -> tuple[str, ...]:
    """The fields of a best configuration's YAML, in field order: the config columns and
    the three fields with columns of their own."""
    keep = set(config_columns(config_class)) | set(_OWN_COLUMNS)
    return tuple(name for name in config_class.model_fields if name in keep)


CONFIG_COLUMNS: tuple[str, ...] = tuple(config_columns())

_F = pa.field


def results_schema(config_class: type[TrainConfig] = TrainConfig) -> pa.Schema:
    """The results table's schema, with the config columns of ``config_class``."""
    return pa.schema([
        _F("dataset", pa.string(), nullable=False),
        _F("sweep", pa.string(), nullable=False),
        _F("sweep_dir", pa.string(), nullable=False),
        _F("trial_id", pa.string(), nullable=False),
        *(_F(name, arrow_type) for name, arrow_type in config_columns(config_class).items()),
        _F("epochs_max", pa.int32()),
        _F("epochs_run", pa.int32(), nullable=False),
        _F("stop_reason", pa.string(), nullable=False),
        _F("error", pa.string()),
        _F("metric", pa.string(), nullable=False),
        _F("mode", pa.string(), nullable=False),
        _F("best_value", pa.float64()),
        _F("best_epoch", pa.int32()),
        *(_F(f"best_{name}", pa.float64()) for name in VAL_COLUMNS),
        _F("history_epoch", pa.list_(pa.int32()), nullable=False),
        _F("history_val_metric", pa.list_(pa.float64()), nullable=False),
        _F("history_train_loss", pa.list_(pa.float64()), nullable=False),
        _F("checkpoint_path", pa.string()),
        _F("node", pa.string()),
        _F("wall_time_s", pa.float64()),
        _F("train_time_s", pa.float64()),
        _F("config_json", pa.string(), nullable=False),
        _F("config_group", pa.string()),
        _F("repeat_index", pa.int32()),
        _F("repeats", pa.int32()),
        *(_F(name, pa.float64()) for name in TEST_COLUMNS),
        _F("audit_epoch", pa.int32()),
        *(_F(name, pa.float64()) for name in AUDIT_COLUMNS),
        _F("collected_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ], metadata={"medsweep.schema_version": SCHEMA_VERSION, "medsweep.table": "results"})


RESULTS_SCHEMA = results_schema()

CONFIRM_SCHEMA = pa.schema(
    [
        _F("dataset", pa.string(), nullable=False),
        _F("sweep", pa.string()),
        _F("label", pa.string(), nullable=False),
        _F("seed", pa.int64(), nullable=False),
        _F("trial_id", pa.string()),
        _F("config_json", pa.string()),
        *(_F(name, pa.float64()) for name in TEST_COLUMNS + VAL_COLUMNS),
        _F("selected_epoch", pa.int32()),
        _F("audit_epoch", pa.int32()),
        *(_F(name, pa.float64()) for name in AUDIT_COLUMNS),
        _F("test_scores", pa.list_(pa.list_(pa.float32()))),
        _F("test_labels", pa.list_(pa.list_(pa.int16()))),
        _F("epochs", pa.int32()),
        _F("wall_time_s", pa.float64()),
        _F("environment_json", pa.string()),
        _F("created_at", pa.timestamp("us", tz="UTC")),
    ],
    metadata={"medsweep.schema_version": SCHEMA_VERSION, "medsweep.table": "confirm"},
)


def empty_results() -> pa.Table:
    """A results table with no rows."""
    return RESULTS_SCHEMA.empty_table()


def conform(table: pa.Table, schema: pa.Schema = RESULTS_SCHEMA) -> pa.Table:
    """Return ``table`` with exactly ``schema``'s columns, order and types.

    Missing nullable columns are added as nulls; extra columns are dropped; types are cast
    (a ``ValueError`` names the column when a cast or a non-null constraint fails).
    """
    n = table.num_rows
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if not col.type.equals(field.type):
                try:
                    col = col.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ValueError(
                        f"column {field.name!r}: cannot convert {col.type} to {field.type}: {exc}"
                    ) from None
        elif field.nullable:
            col = pa.nulls(n, type=field.type)
        else:
            raise ValueError(f"column {field.name!r} is required but missing")
        if not field.nullable and col.null_count:
            raise ValueError(f"column {field.name!r} must not contain nulls")
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def read_table(path: str | os.PathLike, schema: pa.Schema = RESULTS_SCHEMA, what: str = "results table") -> pa.Table:
    """Read a Parquet file conformed to ``schema``; one-line ``ValueError`` when it cannot be:
    the file is not found, is a folder, is not Parquet, or is not a medsweep ``what``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a Parquet file")
    if not path.exists():
        raise ValueError(f"{path}: no such file; the {what} was not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path}: not a Parquet file ({' '.join(str(exc).split())[:200]})") from None
    try:
        return conform(table, schema)
    except ValueError as exc:
        raise ValueError(f"{path}: not a medsweep {what}: {' '.join(str(exc).split())}") from None
