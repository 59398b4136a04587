"""Collect Ray Tune sweep folders into the results table (one Parquet row per trial).

A sweep folder is ``S/N`` for ``RunConfig(storage_path=S, name=N)``: it holds Ray's
``experiment_state-*.json``, the launcher's ``medsweep_spec.yaml`` and one folder per trial
(``params.json``, ``result.json``, ``checkpoint_NNNNNN/``, ``error.txt`` ...). Everything is
read as plain JSON/YAML text: no Ray import and no unpickling, so collecting works on a laptop
that only has the synced folders.

The table layout is :data:`analysis.schema.RESULTS_SCHEMA` (documented there).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from analysis.schema import (AUDIT_COLUMNS, CONFIG_COLUMNS, RESULTS_SCHEMA, TEST_COLUMNS, VAL_COLUMNS, conform,
                             empty_results, read_table)
from medvit.atomic import atomic_path
from medvit.outcome import report_epoch, trial_outcome
from medvit.selection import SELECT_METRICS, audit_key, best_epoch
from medvit.yamlio import YamlError, load_yaml, read_text_file
from sweeps.folder import (ERROR_FILE, PARAMS_FILE, RESULT_FILE, SPEC_FILE, check_sweep_dir, failed_for_good, named_as,
                           newest_checkpoint, newest_state, read_experiment_state, read_result_lines, readable_copy,
                           split_trial_item, trial_id_from_folder)
from sweeps.paths import local_folder
from sweeps.ranking import trial_best
from sweeps.space import configuration_id, repeat_index, trial_config
from sweeps.spec import spec_from_dict

__all__ = ["collect", "read_sweep", "read_results"]



# --------------------------------------------------------------------------- public API


def collect(sweep_dirs: str | os.PathLike | Iterable[str | os.PathLike], out: str | os.PathLike) -> pa.Table:
    """Read trials from sweep folders and merge them into the Parquet file ``out``.

    Args:
        sweep_dirs: one sweep folder ``S/N`` or several.
        out: Parquet file to create or update. Rows already there are kept; a row with the
            same ``(sweep_dir, trial_id)`` as a newly read trial is replaced by the newer one
            (test metrics already filled in are carried over when the trial's best checkpoint
            is unchanged). The file is written atomically (temporary file + rename).

    Returns:
        The whole table as written to ``out`` (schema :data:`analysis.schema.RESULTS_SCHEMA`).

    Raises:
        ValueError: a path is not a sweep folder (one line naming the path and what is wrong).
    """
    if isinstance(sweep_dirs, (str, os.PathLike)):
        sweep_dirs = [sweep_dirs]
    dirs = [d if local_folder(os.fspath(d)) is None else check_sweep_dir(d) for d in sweep_dirs]
    now = datetime.now(timezone.utc)
    new_tables = [read_sweep(d, collected_at=now) for d in dirs]
    new = pa.concat_tables(new_tables) if new_tables else empty_results()

    out = Path(out)
    if out.exists():
        old = read_results(out)
        merged = _merge(old, new)
    else:
        merged = _merge(empty_results(), new)
    _write_atomic(merged, out)
    return merged


def read_sweep(sweep_dir: str | os.PathLike, collected_at: datetime | None = None) -> pa.Table:
    """Rows for every trial of one sweep folder (nothing is written).

    Trials come from the newest ``experiment_state-*.json`` and from trial folders on disk
    (a folder the state file does not list yet is read too, with its status unknown). A sweep
    in a bucket (s3://, gs://) is read from a temporary copy of all but its checkpoints; its
    rows name the bucket's folders, where `medsweep evaluate` fetches the one checkpoint each
    needs.
    """
    location = os.fspath(sweep_dir)
    if local_folder(location) is not None:
        return _read_sweep(check_sweep_dir(sweep_dir).resolve(), collected_at)
    with readable_copy(location) as copy:
        copy = str(Path(copy).resolve())
        with named_as(copy, location.rstrip("/")):
            table = _read_sweep(Path(copy), collected_at)
    return _in_bucket(table, copy, location.rstrip("/"))


def _in_bucket(table: pa.Table, copy: str, uri: str) -> pa.Table:
    """The rows read from a bucket sweep's local copy, with their paths in the bucket."""
    def moved(path: str | None) -> str | None:
        return uri + path[len(copy):] if path and path.startswith(copy) else path

    for column in ("sweep_dir", "checkpoint_path"):
        index = table.schema.get_field_index(column)
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.array(map(moved, table.column(column).to_pylist()), field.type))
    return table


def _read_sweep(sweep_dir: Path, collected_at: datetime | None) -> pa.Table:
    collected_at = collected_at or datetime.now(timezone.utc)
    spec = _read_spec(sweep_dir)
    state_trials, state_metric, state_mode = _read_state(sweep_dir)

    metric = spec.get("metric") or state_metric
    if not metric:
        raise ValueError(f"{sweep_dir}: no metric in {SPEC_FILE} nor in the experiment state")
    # The metric's direction: medvit.selection's table, else what the spec or Ray's state says.
    mode = SELECT_METRICS.get(metric, spec.get("mode") or state_mode)
    if mode not in ("max", "min"):
        raise ValueError(f"{sweep_dir}: no direction for metric {metric!r}: no mode in {SPEC_FILE} nor in the "
                         f"experiment state; allowed metrics: {', '.join(SELECT_METRICS)}")

    # Trials listed by the state file, then folders it does not list.
    trials: dict[str, dict[str, Any]] = {}
    for t in state_trials:
        trials[t["trial_id"]] = t
    known_dirs = {t.get("relative_logdir") for t in state_trials}
    for child in sorted(sweep_dir.iterdir()):
        if child.name in known_dirs or not child.is_dir():
            continue
        if not ((child / PARAMS_FILE).exists() or (child / RESULT_FILE).exists()):
            continue
        tid = trial_id_from_folder(child)
        if tid and tid not in trials:
            trials[tid] = {"trial_id": tid, "status": None, "relative_logdir": child.name, "config": None}

    rows = [_trial_row(sweep_dir, spec, metric, mode, t, collected_at) for t in trials.values()]
    if not rows:
        return empty_results()
    return conform(pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA))


def read_results(path: str | os.PathLike) -> pa.Table:
    """Read a results Parquet file, conformed to the current schema."""
    return read_table(path, RESULTS_SCHEMA, "results table (run medsweep collect first)")


# --------------------------------------------------------------------------- sweep level


def _read_spec(sweep_dir: Path) -> dict[str, Any]:
    f = sweep_dir / SPEC_FILE
    if not f.exists():
        warnings.warn(f"{sweep_dir}: no {SPEC_FILE}; taking the metric from Ray's experiment state")
        return {}
    try:
        spec = load_yaml(read_text_file(f), str(f))
    except YamlError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(spec, dict):
        raise ValueError(f"{f}: expected a mapping at the top level")
    return spec


def _read_state(sweep_dir: Path) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """Trials from the newest experiment_state file (trial_id, status, relative_logdir, config,
    last_result), and the sweep's metric and mode. Only its JSON is parsed; pickled fields are
    ignored. Newest is Ray's rule (`newest_state`). A corrupted newest file is refused, never
    silently skipped."""
    state = read_experiment_state(newest_state(sweep_dir))
    trials = []
    for item in state["trial_data"]:
        meta, runtime = split_trial_item(item)
        if not meta or "trial_id" not in meta:
            continue
        trials.append(
            {
                "trial_id": str(meta["trial_id"]),
                "status": meta.get("status"),
                "relative_logdir": meta.get("relative_logdir"),
                "config": meta.get("config") if isinstance(meta.get("config"), dict) else None,
                "last_result": (runtime or {}).get("last_result") or {},
                "num_failures": (runtime or {}).get("num_failures"),
            }
        )
    runner = state.get("runner_data") or {}
    metric, mode = runner.get("_metric"), runner.get("_mode")
    return trials, metric if isinstance(metric, str) else None, mode if isinstance(mode, str) else None


# --------------------------------------------------------------------------- trial level


def float_or_none(x: Any) -> float | None:
    """A number as float; None for missing, non-numeric or NaN values."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _int(x: Any) -> int | None:
    v = float_or_none(x)
    return None if v is None or math.isinf(v) else int(round(v))


def _read_error_file(folder: Path) -> tuple[str, str | None]:
    """(a trial folder's error.txt, the error line it names); ("", None) without one."""
    f = folder / ERROR_FILE
    if not f.exists():
        return "", None
    try:
        text = f.read_text(errors="replace")
    except OSError:
        return "", "error (error.txt unreadable)"
    return text, error_line(text)[:1000] or "error (empty error.txt)"


# Ray's memory monitor reports the node's memory on this line and ends with generic advice.
HOST_OUT_OF_MEMORY = "running low on memory"


def error_line(text: str) -> str:
    """The line of a trial's error (error.txt, or Ray's error as text) that names it: the
    traceback's last, or the memory monitor's report of the node's memory ("" if none)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if HOST_OUT_OF_MEMORY in line), lines[-1] if lines else "")


def _full_config(spec: dict, sampled: dict[str, Any]) -> dict[str, Any]:
    """The trial's TrainConfig values by the launcher's own rule (``sweeps.space.trial_config``);
    Ray's ``params.json`` holds only the searched keys. Without a spec, the sampled keys."""
    if not spec:
        return dict(sampled)
    return trial_config(spec_from_dict(spec, f"{SPEC_FILE}"), sampled)


def _sampled_config(folder: Path | None, t: dict[str, Any]) -> dict[str, Any]:
    """The trial's sampled values: its params.json, else what Ray's state holds."""
    config: Any = None
    if folder is not None and (folder / PARAMS_FILE).exists():
        try:
            config = json.loads((folder / PARAMS_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            config = None
    return config if isinstance(config, dict) else (t.get("config") or {})


def _reports(folder: Path | None, t: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(every report read, one report per epoch in epoch order) of a trial."""
    lines = read_result_lines(folder / RESULT_FILE) if folder is not None else []
    # Ray's state may hold a later epoch than result.json (a sync or a crash lost its last line):
    # that last report counts, above all when it says the trial diverged.
    state_last = t.get("last_result") or {}
    newest_line = max((report_epoch(r) or 0 for r in lines), default=0)
    if state_last and ((report_epoch(state_last) or 0) > newest_line or not lines):
        lines = [*lines, state_last]
    # One record per epoch; a restored trial may repeat epochs: the later line wins.
    by_epoch = {report_epoch(rec): rec for rec in lines if report_epoch(rec) is not None}
    return lines, [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _epoch_budget(config: dict[str, Any], spec: dict) -> int | None:
    """The epochs the trial was to train: its config's, else the spec's, else ASHA's max_t."""
    for epochs in (config.get("epochs"), (spec.get("train") or {}).get("epochs"),
                   (spec.get("scheduler") or {}).get("max_t")):
        if _int(epochs) is not None:
            return _int(epochs)
    return None


def _outcome(folder: Path | None, t: dict[str, Any], lines: list[dict[str, Any]], history: list[dict[str, Any]],
             epochs_max: int | None) -> tuple[str, str | None]:
    """(stop_reason by medvit.outcome's rule, the error's last line or None)."""
    status = t.get("status")
    text, line = _read_error_file(folder) if folder is not None else ("", None)
    # Ray keeps error.txt in the folder of a trial it restarted after a failure (max_failures)
    # and that then ran on: the file marks an error only where Ray's status is ERROR, or
    # unknown, or RUNNING where it records a failure past the retries that the state missed
    # (the launcher's `trial_ended`, the same rule).
    died = status == "RUNNING" and failed_for_good(text, t.get("num_failures"))
    error = line if status in ("ERROR", None) or died else None
    if status == "ERROR":
        error = error or "trial status ERROR (no error.txt)"
    last = (history or lines or [{}])[-1]
    ended = status == "TERMINATED" or (status is None and bool(last.get("done")) and bool(history))
    return trial_outcome(history or lines, epochs_max, errored=error is not None, ended=ended), error


def _history_columns(history: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any]:
    """The columns read from the per-epoch reports: the ranking's best (sweeps.ranking), the
    validation metrics at that epoch and the curves."""
    best_value, best_epoch = trial_best(history, metric, mode) or (None, None)
    best_rec = next((r for r in history if report_epoch(r) == best_epoch), {})
    epoch_times = [x for x in (float_or_none(r.get("epoch_time_s")) for r in history) if x is not None]
    return {
        "best_value": best_value,
        "best_epoch": best_epoch,
        "history_epoch": [report_epoch(r) for r in history],
        "history_val_metric": [float_or_none(r.get(metric)) for r in history],
        "history_train_loss": [float_or_none(r.get("train_loss")) for r in history],
        "train_time_s": float(sum(epoch_times)) if epoch_times else None,
        **{f"best_{col}": float_or_none(best_rec.get(col)) for col in VAL_COLUMNS},
    }


def _audit_columns(history: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any]:
    """The test-selection audit of a trial whose run recorded every epoch's test metrics
    (``audit_test``): the epoch choosing on test would take, by the Trainer's rule, and the test
    metrics there; nulls for a trial without the audit."""
    chosen = best_epoch(((report_epoch(r), r.get(audit_key(metric))) for r in history if not r.get("diverged")), mode)
    record = next((r for r in history if chosen and report_epoch(r) == chosen[1]), {})
    return {"audit_epoch": chosen[1] if chosen else None,
            **{column: float_or_none(record.get(column)) for column in AUDIT_COLUMNS}}


def _trial_row(
    sweep_dir: Path, spec: dict, metric: str, mode: str, t: dict[str, Any], collected_at: datetime
) -> dict[str, Any]:
    folder = sweep_dir / t["relative_logdir"] if t.get("relative_logdir") else None
    folder = folder if folder is not None and folder.is_dir() else None
    sampled = _sampled_config(folder, t)
    config = _full_config(spec, sampled)
    lines, history = _reports(folder, t)
    last = (history or lines or [{}])[-1]
    epochs_max = _epoch_budget(config, spec)
    stop_reason, error = _outcome(folder, t, lines, history, epochs_max)
    node = " / ".join(str(x) for x in (last.get("hostname"), last.get("node_ip")) if x) or None
    checkpoint = newest_checkpoint(folder) if folder is not None else None
    return {
        "dataset": str(config.get("dataset") or spec.get("dataset") or "unknown"),
        "sweep": sweep_dir.name,
        "sweep_dir": str(sweep_dir),
        "trial_id": str(t["trial_id"]),
        **{column: config.get(column) for column in CONFIG_COLUMNS},
        "config_group": configuration_id(sampled),
        "repeat_index": repeat_index(sampled),
        "repeats": _int(spec.get("repeats", 1)) if spec else None,
        "epochs_max": epochs_max,
        "epochs_run": len(history),
        "stop_reason": stop_reason,
        "error": error,
        "metric": metric,
        "mode": mode,
        **_history_columns(history, metric, mode),
        "checkpoint_path": str(checkpoint.resolve()) if checkpoint else None,
        "node": node,
        "wall_time_s": float_or_none(last.get("time_total_s")),
        "config_json": json.dumps(config, sort_keys=True, default=str),
        "collected_at": collected_at,
        # normally filled later by the evaluation step
        **{col: float_or_none(last.get(col)) for col in TEST_COLUMNS},
        **_audit_columns(history, metric, mode),
    }


# --------------------------------------------------------------------------- merge + write


def _merge(old: pa.Table, new: pa.Table) -> pa.Table:
    """Union of old and new rows, one row per (sweep_dir, trial_id): the newer collected_at
    wins (a new row wins a tie). Test metrics of a replaced row are carried over when the new
    row has none and points to the same checkpoint and best epoch."""
    old, new = conform(old), conform(new)
    n_old = old.num_rows
    both = pa.concat_tables([old, new])
    keys = list(zip(both.column("sweep_dir").to_pylist(), both.column("trial_id").to_pylist()))
    stamps = both.column("collected_at").cast(pa.int64()).to_pylist()
    winner: dict[tuple[str, str], int] = {}
    for i, (k, ts) in enumerate(zip(keys, stamps)):
        j = winner.get(k)
        if j is None or (ts, i >= n_old, i) >= (stamps[j], j >= n_old, j):
            winner[k] = i
    order = sorted(winner.values(), key=lambda i: (keys[i][0], keys[i][1]))
    merged = both.take(pa.array(order, type=pa.int64()))

    # Carry evaluated test metrics over to a fresh row of the same, unchanged trial.
    old_by_key: dict[tuple[str, str], int] = {}
    for i in range(n_old):
        old_by_key[keys[i]] = i
    if old_by_key:
        ckpt = both.column("checkpoint_path").to_pylist()
        best_ep = both.column("best_epoch").to_pylist()
        tests = {c: both.column(c).to_pylist() for c in TEST_COLUMNS}
        new_cols = {c: [] for c in TEST_COLUMNS}
        changed = False
        for i in order:
            j = old_by_key.get(keys[i])
            carry = (
                j is not None and j != i and all(tests[c][i] is None for c in TEST_COLUMNS)
                and any(tests[c][j] is not None for c in TEST_COLUMNS)
                and ckpt[i] == ckpt[j] and best_ep[i] == best_ep[j]
            )
            for c in TEST_COLUMNS:
                new_cols[c].append(tests[c][j] if carry else tests[c][i])
            changed |= carry
        if changed:
            for c in TEST_COLUMNS:
                idx = merged.schema.get_field_index(c)
                merged = merged.set_column(idx, merged.schema.field(c), pa.array(new_cols[c], pa.float64()))
    return conform(merged)


def _write_atomic(table: pa.Table, out: Path) -> None:
    """The table as Parquet, whole or not at all (medvit.atomic)."""
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
