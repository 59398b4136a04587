"""Tables for the report: the paper's Table 1 and Table 2 beside ours, and per-dataset best trials.

Inputs are the results table (:mod:`analysis.schema`, one row per trial) and, optionally, the
*confirm* table of per-seed re-runs (``dataset, label, seed, test_acc, test_auc, test_qwk,
test_mae``). Each builder returns a :class:`analysis.render.TableOut`: its display strings,
which cells are a column's best (bold; only where the column holds two values or more), the
numbers behind it in ``.data``; :mod:`analysis.render` writes it as Markdown, HTML and CSV.

Selection rule used everywhere (:mod:`sweeps.ranking`, the launcher's too): a dataset's best
trial is the one with the best *validation* selection score ``best_value`` under its sweep's
``metric``/``mode`` (errored and diverged trials excluded); its *test* metrics are what "ours"
reports. "Ours" is one result per model family and input (:func:`result_groups`): MedViT at
28 px and MedViT at 224 px from 28 (the MedViT paper's protocol, ``resize: 224``) are two rows,
never ranked against each other, each with the confirm runs of its own sweep and trial.
Missing values are shown as "–".

Test-selection audit: where the confirm table carries ``audit_test_*`` (runs with
``audit_test`` on), Table 1 adds a row and Table 2 two columns of the test metrics at the
epoch chosen on *test*: what a paper selecting its epoch on test would print, beside our
honest validation-selected numbers. They are never bolded as a best value.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from analysis import reference as ref
from analysis.collect import float_or_none
from analysis.render import MISSING, TableOut, column_best
from analysis.schema import AUDIT_COLUMNS, TEST_COLUMNS, train_config_keys
from analysis.stats import BootstrapResult, format_pm, paired_bootstrap, seed_image_bootstrap
from medvit.config import TrainConfig
from medvit.families import model_family
from medvit.selection import SCORE_METRICS
from sweeps.ranking import Candidate, ranks
from sweeps.space import base_seed

__all__ = [
    "TableOut",
    "MISSING",
    "TRAIN_CONFIG_KEYS",
    "load_results_frame",
    "load_confirm_frame",
    "model_family",
    "model_families",
    "family_label",
    "model_input",
    "input_label",
    "with_inputs",
    "seed_ensemble",
    "image_interval",
    "PairedDifference",
    "paired_difference",
    "decision_audit",
    "result_groups",
    "selection_metric",
    "rank_trials",
    "best_trials",
    "ours_test_metrics",
    "best_config",
    "score_name",
    "SCORE_NOTE",
    "table1",
    "table1_blocks",
    "table2",
    "best_table",
    "write_tables",
    "fmt_value",
    "fmt_int",
]

MISSING_NOTE = (
    f"{MISSING} = no value: the source does not report it, the dataset was not swept, or the "
    "trial has not been evaluated on the test split yet."
)
AUDIT_HEADING = "Test-selection audit: epoch chosen on test"
DECISION_AUDIT_NOTE = (
    "The audit also chooses the decision rule on test, at the epoch chosen on validation: on a binary task the "
    "threshold (ACC itself counts a score above 0.5 as positive), on a multi-class one an offset per class added to "
    "the log-probabilities before the argmax (coordinate ascent: at least what tuning them on test would give); "
    "what a paper that tunes its decision rule on the test split would print."
)
AUDIT_NOTE = (
    "Test-selection audit (an audit, never a result): the same confirmed runs with the epoch chosen on the "
    "test split instead of validation, mean ± std over seeds; what a paper that selects its epoch (or "
    "checkpoint) on test would print. The validation-selected numbers are the honest ones; the difference "
    "is what choosing on test adds."
)
#: YAML keys of a best configuration: the TrainConfig fields that say what trains.
TRAIN_CONFIG_KEYS: tuple[str, ...] = train_config_keys()
# Config fields whose results-table column has another name.
_COLUMN_OF = {"epochs": "epochs_max", "select_metric": "metric"}
#: What ``best_value`` is, for notes: the number trials are ranked by is not any one epoch's value.
SCORE_NOTE = (
    "Selection score: what trials are ranked by (sweeps.ranking): the sweep's validation metric of the "
    "EMA weights averaged over the trailing select_window epochs, at the trial's best epoch; smoothed, so "
    "never better than the metric's best single epoch."
)


def score_name(metric: str) -> str:
    """The name of a trial's ``best_value`` under the sweep's ``metric``: ``val_acc selection score``."""
    return f"{metric} selection score"


# --------------------------------------------------------------------------- inputs


# pandas 3 reads a CSV's floats as written; before it (what Python 3.10 installs) some came back
# one ulp off unless asked for round_trip, an option pandas 3 deprecates.
CSV_FLOATS_AS_WRITTEN = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def load_results_frame(results: Any) -> pd.DataFrame:
    """The results table as a DataFrame, from a path, a pyarrow Table or a DataFrame."""
    if isinstance(results, pd.DataFrame):
        return results.copy()
    if isinstance(results, pa.Table):
        return results.to_pandas()
    from analysis.collect import read_results

    return read_results(results).to_pandas()


def load_confirm_frame(confirm: Any) -> pd.DataFrame | None:
    """The confirm table (per-seed test metrics) as a DataFrame, or ``None``."""
    if confirm is None:
        return None
    if isinstance(confirm, pd.DataFrame):
        df = confirm.copy()
    elif isinstance(confirm, pa.Table):
        df = confirm.to_pandas()
    else:
        p = Path(confirm)
        if not p.is_file():
            raise ValueError(f"{p}: confirm table not found")
        df = pd.read_parquet(p) if p.suffix != ".csv" else pd.read_csv(p, **CSV_FLOATS_AS_WRITTEN)
    missing = {"dataset", "label", "seed"} - set(df.columns)
    if missing:
        raise ValueError(f"confirm table lacks columns {sorted(missing)}")
    for c in (*TEST_COLUMNS, *AUDIT_COLUMNS):
        if c not in df.columns:
            df[c] = np.nan
    df["label"] = df["label"].astype(str).str.strip()
    return df


def model_families(models: Any) -> list[str]:
    """The families of these model names, MedViT first (the method; the others are baselines)."""
    return sorted({model_family(m) for m in models}, key=lambda f: (f != "medvit", f))


def family_label(family: str) -> str:
    return {"medvit": "MedViT", "resnet": "ResNet"}.get(family, family)


def _train_value(row: Any, field: str) -> Any:
    """A trial's TrainConfig value: its column, else its config_json, else the field's default."""
    value = row.get(field)
    if value is None or pd.isna(value):
        try:
            value = json.loads(row.get("config_json") or "{}").get(field)
        except (json.JSONDecodeError, TypeError):
            value = None
    return TrainConfig.model_fields[field].default if value is None else value


def model_input(row: Any) -> tuple[int, int, str]:
    """What a trial's model saw: (pixels, stored pixels, interpolation), e.g. (224, 28,
    "nearest") for the MedViT paper's protocol, (28, 28, "nearest") for the stored images."""
    stored = int(_train_value(row, "img_size"))
    resize = _train_value(row, "resize")
    return (int(resize) if resize is not None else stored), stored, str(_train_value(row, "resize_mode"))


def input_label(model_in: tuple[int, int, str]) -> str:
    """``28 px`` for the stored images; ``224 px from 28`` when resized (``, bilinear`` unless nearest)."""
    px, stored, mode = model_in
    if px == stored:
        return f"{px} px"
    return f"{px} px from {stored}" + ("" if mode == "nearest" else f", {mode}")


def with_inputs(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``input`` (:func:`input_label`) and ``input_key`` (for ordering) columns: the
    protocol part of a result, which tables never mix."""
    if "input_key" in df.columns:
        return df
    fields = df[[c for c in ("img_size", "resize", "resize_mode", "config_json") if c in df.columns]]
    keys = [model_input(row) for row in fields.to_dict("records")]
    return df.assign(input_key=pd.Series(keys, index=df.index, dtype=object),
                     input=[input_label(k) for k in keys])


def result_groups(df: pd.DataFrame) -> list[tuple[str, tuple, pd.DataFrame]]:
    """The trials in groups that each get their own "ours": (model family, input), MedViT
    first, then by what the model saw (smallest first)."""
    df = with_inputs(df)
    fams = df["model"].map(model_family) if not df.empty else pd.Series(dtype=str)
    order = {fam: i for i, fam in enumerate(model_families(df["model"]))}
    groups = [(fam, key, g) for (fam, key), g in df.groupby([fams, df["input_key"]], sort=False)]
    return sorted(groups, key=lambda item: (order[item[0]], item[1]))


def _usable(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["stop_reason"] != "errored") & df["best_value"].notna()]


def selection_metric(df: pd.DataFrame) -> tuple[str, str] | None:
    """The (metric, mode) used to rank ``df``'s trials: the one most of them were swept with."""
    if df.empty:
        return None
    counts = df.groupby(["metric", "mode"]).size().sort_values(ascending=False, kind="stable")
    (metric, mode) = counts.index[0]
    return str(metric), str(mode)


def rank_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Usable trials (not errored, with a value) ranked best first by their selection metric.

    The order is :func:`sweeps.ranking.ranks` (the launcher's, for best_config.yaml), then
    ``sweep``: trials by their best value or, in a sweep with repeats, configurations by the
    mean over their repeats, each configuration's trials together. Every "best trial" in
    medsweep (tables, figures, report, test evaluation, confirm) comes from this order.
    """
    sel = selection_metric(_usable(df))
    if sel is None:
        return df.iloc[0:0]
    metric, mode = sel
    # Unusable trials stay in until ranked: a configuration with an errored repeat is incomplete.
    df = df[(df["metric"] == metric) & (df["mode"] == mode)]
    rows = list(df.itertuples())
    row_ranks = ranks([_candidate(row) for row in rows], mode)
    keys = {i: (rank.key, row.sweep) for i, (rank, row) in enumerate(zip(row_ranks, rows)) if rank is not None}
    return df.iloc[sorted(keys, key=keys.__getitem__)]


def _candidate(row: Any) -> Candidate:
    """What the ranking rule needs of one results-table row."""
    usable = row.stop_reason != "errored" and float_or_none(row.best_value) is not None
    grouped = isinstance(getattr(row, "config_group", None), str)
    return Candidate(trial_id=row.trial_id, best=(row.best_value, row.best_epoch) if usable else None,
                     finished=row.stop_reason == "finished",
                     group=(row.sweep_dir, row.config_group) if grouped else None,
                     repeats=int(float_or_none(getattr(row, "repeats", None)) or 1))


_rank = rank_trials


def best_trials(results: Any, family: str | None = None) -> pd.DataFrame:
    """One row per dataset: its best trial by validation metric (optionally of one model family)."""
    df = load_results_frame(results)
    if family is not None:
        df = df[df["model"].map(model_family) == family]
    rows = []
    for ds, g in df.groupby("dataset", sort=True):
        r = _rank(g)
        if not r.empty:
            rows.append(r.iloc[0])
    return pd.DataFrame(rows).reset_index(drop=True) if rows else df.iloc[0:0]


def best_config(row: pd.Series | dict) -> dict[str, Any]:
    """The TrainConfig fields of a trial (for a copyable YAML block), from its config_json; a
    field without a value is left out, as the sweep's best_config.yaml leaves it out."""
    row = dict(row)
    try:
        cfg = json.loads(row.get("config_json") or "{}")
    except json.JSONDecodeError:
        cfg = {}
    out: dict[str, Any] = {}
    for k in TRAIN_CONFIG_KEYS:
        v = cfg.get(k, row.get(_COLUMN_OF.get(k, k)))
        if isinstance(v, float) and math.isnan(v):
            v = None
        if isinstance(v, np.generic):
            v = v.item()
        if v is not None:
            out[k] = v
    # A repeat stands for its configuration, named with the spec's base seed (as best_config.yaml).
    index = float_or_none(row.get("repeat_index"))
    if index is not None and out.get("seed") is not None:
        out["seed"] = base_seed(out["seed"], int(index))
    return out


# --------------------------------------------------------------------------- helpers


def fmt_value(x: Any, digits: int = 3) -> str:
    """A number for a table cell; MISSING for none."""
    v = float_or_none(x)
    return MISSING if v is None else f"{v:.{digits}f}"


def _summary(values: Iterable[Any]) -> tuple[float | None, float | None, int]:
    vals = [v for v in (float_or_none(x) for x in values) if v is not None]
    if not vals:
        return None, None, 0
    mean = float(np.mean(vals))
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return mean, std, len(vals)


def _cell_array(cell: Any) -> np.ndarray | None:
    """A list<list> Parquet cell as a 2-D array (None when null or empty)."""
    if cell is None or (not isinstance(cell, (list, np.ndarray)) and pd.isna(cell)) or len(cell) == 0:
        return None
    return np.stack(cell)


def _test_runs(rows: pd.DataFrame) -> tuple[str, list[tuple[np.ndarray, np.ndarray] | None]] | None:
    """The task of one dataset's runs and each run's (test probabilities, test labels), None for a
    run that kept none; None when the rows hold several datasets or no such columns."""
    from medvit.data import dataset_info

    if rows.empty or "test_scores" not in rows.columns or "test_labels" not in rows.columns:
        return None
    if rows["dataset"].str.lower().nunique() != 1:
        return None
    task = dataset_info(str(rows["dataset"].iloc[0]).lower()).task
    runs = [None if scores is None or labels is None else (scores, labels)
            for scores, labels in zip(map(_cell_array, rows["test_scores"]), map(_cell_array, rows["test_labels"]))]
    return task, runs


def _same_images(runs: list[tuple[np.ndarray, np.ndarray] | None]) -> bool:
    """Whether every run kept its probabilities of one and the same test images (not a ``subset``
    drawn per seed)."""
    return all(run is not None for run in runs) and all(
        s.shape == runs[0][0].shape and np.array_equal(y, runs[0][1]) for s, y in runs)


def _evaluate_labels(task: str, labels: np.ndarray) -> np.ndarray:
    """A confirm row's ``(N, L)`` labels as :func:`medvit.metrics.evaluate` takes them."""
    from medvit.tasks import MULTI_LABEL

    return labels.astype(np.float64) if task == MULTI_LABEL else labels[:, 0].astype(np.int64)


def seed_ensemble(rows: pd.DataFrame) -> dict[str, float] | None:
    """Test metrics of one configuration's re-runs averaged into one model: the mean of their
    test probabilities, nothing chosen (every seed is a member, with weight 1/n). ``n`` says how
    many. None unless at least two rows carry probabilities of the same test images."""
    from medvit.metrics import evaluate

    loaded = _test_runs(rows)
    if loaded is None:
        return None
    task, runs = loaded
    runs = [run for run in runs if run is not None]
    if len(runs) < 2 or not _same_images(runs):
        return None
    metrics = evaluate(task, _evaluate_labels(task, runs[0][1]), np.mean([s for s, _ in runs], axis=0))
    return {**{m: metrics[m] for m in SCORE_METRICS if m in metrics}, "n": len(runs)}


def image_interval(rows: pd.DataFrame, baseline: pd.DataFrame | None = None, metric: str = "acc",
                   n_resamples: int = 2000) -> BootstrapResult | None:
    """The 95% interval of one configuration's mean test ``metric`` (``acc``, or ``qwk`` on an
    ordinal dataset) over its seeds, minus ``baseline``'s paired by seed where given, resampling
    the test images as well as the seeds (:func:`analysis.stats.seed_image_bootstrap`): the test
    split is one draw of patients, and this says what another draw could show, where an interval
    over seeds speaks of this split alone. None unless every run kept its probabilities of the same
    test images (tables from before they were kept; ``subset`` runs), or for fewer than 2 seeds."""
    from medvit.metrics import UndefinedMetricWarning, correct_per_image, quadratic_weighted_kappa
    from medvit.tasks import ORDINAL

    if metric not in ("acc", "qwk"):
        raise ValueError(f"metric: expected 'acc' or 'qwk', got {metric!r}")
    if baseline is not None:
        ours, theirs = (g.drop_duplicates("seed", keep="last").set_index("seed") for g in (rows, baseline))
        seeds = sorted(set(ours.index) & set(theirs.index))
        rows, baseline = ours.loc[seeds].reset_index(), theirs.loc[seeds].reset_index()
    loaded = [_test_runs(g) for g in (rows, baseline) if g is not None]
    if len(rows) < 2 or None in loaded or len({task for task, _ in loaded}) != 1:
        return None
    task = loaded[0][0]
    runs = [run for _, group in loaded for run in group]
    if not _same_images(runs) or (metric == "qwk" and task != ORDINAL):
        return None
    y = _evaluate_labels(task, runs[0][1])
    if metric == "acc":
        def score(correct: np.ndarray, images: np.ndarray) -> float:
            return float(correct[images].mean())
        per_run = [correct_per_image(task, y, scores) for scores, _ in runs]
    else:
        grades = runs[0][0].shape[1]

        def score(predicted: np.ndarray, images: np.ndarray) -> float:
            return quadratic_weighted_kappa(y[images], predicted[images], grades)
        per_run = [np.argmax(scores, axis=1) for scores, _ in runs]
    n = len(rows)
    with warnings.catch_warnings():  # a resample of one grade has no QWK: it is dropped, as documented
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return seed_image_bootstrap(score, per_run[:n], len(y), baseline=per_run[n:] or None, n_resamples=n_resamples)


@dataclass(frozen=True)
class PairedDifference:
    """One configuration's test metric minus another's, paired by seed (:func:`paired_difference`)."""

    seeds: list[int]
    diffs: np.ndarray  # per seed, in ``seeds`` order
    over_seeds: BootstrapResult | None  # paired bootstrap over the seeds; None for fewer than 2
    over_seeds_and_images: BootstrapResult | None  # :func:`image_interval`'s; None where it has none


def paired_difference(rows: pd.DataFrame, baseline: pd.DataFrame, metric: str = "acc") -> PairedDifference:
    """``rows`` minus ``baseline`` (two configurations' confirm rows) on the seeds both ran: the
    per-seed test ``metric`` differences, their paired bootstrap over seeds and, for ``acc`` and
    ``qwk``, the interval over seeds and test images. What confirm's summary and the report's
    paired comparisons print, computed once."""
    ours, theirs = (g.drop_duplicates("seed", keep="last").set_index("seed") for g in (rows, baseline))
    seeds = sorted(set(ours.index) & set(theirs.index))
    a, b = (g.loc[seeds, f"test_{metric}"].to_numpy(float) for g in (ours, theirs))
    if len(seeds) < 2:
        return PairedDifference(seeds, a - b, None, None)
    return PairedDifference(seeds, a - b, paired_bootstrap(a, b, n_resamples=10_000, seed=0),
                            image_interval(rows, baseline, metric) if metric in ("acc", "qwk") else None)


def decision_audit(rows: pd.DataFrame) -> list[float]:
    """For one dataset's re-runs: each run's test ACC with the decision rule chosen on the test
    split itself, at the epoch chosen on validation (:func:`medvit.metrics.best_decision_rule`: a
    binary task's threshold, a multi-class task's class offsets): what a paper that tunes its
    decision rule on test would print; empty for multi-label tasks or runs without their test
    probabilities."""
    from medvit.metrics import best_decision_rule

    loaded = _test_runs(rows)
    if loaded is None:
        return []
    task, runs = loaded
    rules = [best_decision_rule(task, labels, scores) for scores, labels in filter(None, runs)]
    return [rule["acc"] for rule in rules if rule is not None]


def _confirm_match(confirm: pd.DataFrame | None, trial: pd.Series, labels: set[str]) -> pd.DataFrame | None:
    """The confirm rows that re-ran ``trial``: its dataset, one of ``labels``, and its sweep and
    trial id where the confirm table names them (another sweep's "best" is another configuration)."""
    if confirm is None:
        return None
    sel = confirm[(confirm["dataset"].str.lower() == str(trial["dataset"]).lower())
                  & (confirm["label"].str.lower().isin(labels))]
    for column in ("sweep", "trial_id"):
        if column in sel.columns:
            sel = sel[sel[column].isna() | (sel[column].astype(str) == str(trial[column]))]
    return sel if not sel.empty else None


def ours_test_metrics(results: Any, confirm: Any = None) -> pd.DataFrame:
    """"Ours" per (family, input, dataset): test metrics of the best-by-validation trial, or
    the mean and std over seeds from the confirm table when it has that trial's configuration.

    A model family at another input (``resize: 224`` from 28 px, the MedViT paper's protocol,
    beside the 28 px models) is another "ours": the two are never ranked against each other.
    Confirm rows labelled ``best`` belong to the MedViT family (or to the only family
    present); ``best <family>`` (e.g. ``best resnet``) to another family; and, where they name
    one, to the sweep and trial they re-ran.

    Columns: family, input, dataset, trial_id, sweep, model, selection metric/mode/value, source
    (``confirm`` or ``trial``), n, and ``<m>_mean``, ``<m>_std`` for m in acc, auc, qwk, mae;
    ``audit_<m>_mean``, ``audit_<m>_std`` the confirm runs' test-selection audit (None without);
    ``ensemble_<m>`` and ``ensemble_n`` their :func:`seed_ensemble` (None and 0 without).
    """
    df = load_results_frame(results)
    conf = load_confirm_frame(confirm)
    fams = model_families(df["model"])
    rows = []
    for fam, _, group in result_groups(df):
        bt = best_trials(group)
        for _, t in bt.iterrows():
            labels = {f"best {fam}"}
            if fam == "medvit" or len(fams) == 1:
                labels.add("best")
            sel = _confirm_match(conf, t, labels)
            row: dict[str, Any] = dict(
                family=fam, input=t["input"], dataset=t["dataset"], trial_id=t["trial_id"], sweep=t["sweep"],
                model=t["model"], metric=t["metric"], mode=t["mode"], best_value=t["best_value"],
            )
            for m in SCORE_METRICS:
                if sel is not None:
                    mean, std, n = _summary(sel[f"test_{m}"])
                else:
                    mean, std, n = float_or_none(t.get(f"test_{m}")), None, int(float_or_none(t.get(f"test_{m}")) is not None)
                row[f"{m}_mean"], row[f"{m}_std"], row[f"{m}_n"] = mean, std, n
                audit = _summary(sel[f"audit_test_{m}"]) if sel is not None else (None, None, 0)
                row[f"audit_{m}_mean"], row[f"audit_{m}_std"] = audit[:2]
            ensemble = seed_ensemble(sel) if sel is not None else None
            for m in SCORE_METRICS:
                row[f"ensemble_{m}"] = ensemble.get(m) if ensemble else None
            row["ensemble_n"] = ensemble["n"] if ensemble else 0
            row["source"] = "confirm" if sel is not None else "trial"
            row["n"] = int(sel["seed"].nunique()) if sel is not None else 1
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- Table 1


def table1(results: Any, confirm: Any = None) -> TableOut:
    """Paper Table 1 layout: methods x (dataset AUC, ACC), the paper's rows as printed plus one
    "medsweep <family> (ours)" row per model family present in the results (and its audit row
    where the confirm runs had the test-selection audit on)."""
    df = load_results_frame(results)
    ours = ours_test_metrics(df, confirm)
    datasets = list(ref.ALL_DATASETS) + sorted(set(df["dataset"].str.lower()) - set(ref.ALL_DATASETS))
    header = ["Method"] + [f"{ref.display_name(ds)} {m.upper()}" for ds in datasets for m in _TABLE1_METRICS]
    long_rows: list[dict[str, Any]] = []
    rows = [_table1_paper_row(method, datasets, long_rows) for method in ref.TABLE1_METHODS]
    fam_notes = []
    groups = ours.groupby(["family", "input"], sort=False) if not ours.empty else [(("medvit", None), ours)]
    for (fam, model_in), sub in groups:
        label = f"medsweep {family_label(fam)} (ours" + (f", {model_in})" if model_in else ")")
        rows.append(_table1_ours_row(label, sub, datasets, long_rows))
        if not sub.empty and any(float_or_none(x) is not None for x in sub["audit_acc_mean"]):
            texts, _ = _table1_ours_row(f"{label}, {AUDIT_HEADING}", sub, datasets, long_rows, audit=True)
            rows.append((texts, [None] * len(texts)))  # an audit, never a column's best
        if not sub.empty:
            picks = ", ".join(
                f"{ref.display_name(x.dataset)}: {x.model} trial {x.trial_id} ({score_name(x.metric)} "
                f"{x.best_value:.3f}" + (f", {x.n} seeds" if x.source == "confirm" else ", 1 seed") + ")"
                for x in sub.itertuples())
            fam_notes.append(f"{label}: best trial per dataset by validation selection score: {picks}.")
    texts = [t for t, _ in rows]
    notes = [
        "Test-split AUC and ACC. Paper rows as printed in the paper's Table 1; bold = best in a column "
        "that holds more than one value.",
        "Ours: test metrics of the trial with the best validation selection score; mean ± std over seeds "
        "where the configuration was re-run with several seeds (confirm table), else a single seed.",
        "† not a Table 1 cell: RetinaMNIST MedViT ACC is Table 2's alpha = 0.0 entry; OrganSMNIST "
        "MedViT numbers come from the paper's text (Table 1 has no OrganSMNIST column)."
        if any(t.endswith(" †") for row in texts for t in row) else "",
        *fam_notes,
        AUDIT_NOTE if any(row[0].endswith(AUDIT_HEADING) for row in texts) else "",
        *[n for n in ref.PAPER_NOTES if "0.550" in n or "0.993" in n],
        SCORE_NOTE,
        MISSING_NOTE,
    ]
    return TableOut("table1", "Table 1: MedMNIST test AUC / ACC, paper vs. medsweep",
                    pd.DataFrame(texts, columns=header), [n for n in notes if n], pd.DataFrame(long_rows),
                    column_best(pd.DataFrame([v for _, v in rows], columns=header)),
                    groups=[""] + [ref.display_name(ds) for ds in datasets for _ in _TABLE1_METRICS],
                    subheader=["Method"] + [m.upper() for m in _TABLE1_METRICS] * len(datasets))


_TABLE1_METRICS = ("auc", "acc")


def table1_blocks(t1: TableOut, groups_per_block: int = 6) -> list[list[int]]:
    """Table 1's column positions in blocks of ``groups_per_block`` datasets (as the paper
    splits it), each block led by the method column."""
    n_groups = (len(t1.header) - 1) // 2
    return [[0] + [1 + 2 * g + k for g in range(start, min(start + groups_per_block, n_groups)) for k in (0, 1)]
            for start in range(0, n_groups, groups_per_block)]


def _table1_paper_row(method: str, datasets: list[str], long_rows: list[dict]
                      ) -> tuple[list[str], list[float | None]]:
    """A published method's cells as printed (with † where the number is not a Table 1 cell)
    and the numbers behind them."""
    texts, values = [method], [None]
    for ds in datasets:
        for m in _TABLE1_METRICS:
            rv = ref.table1_value(method, ds, m)
            texts.append(MISSING if rv is None else rv.printed + ("" if ds in ref.TABLE1_DATASETS else " †"))
            values.append(None if rv is None else rv.value)
            if rv is not None:
                long_rows.append(dict(method=method, dataset=ds, metric=m, value=rv.value, std=None, n=None,
                                      printed=rv.printed, source=rv.source, trial_id=None))
    return texts, values


def _table1_ours_row(label: str, ours: pd.DataFrame, datasets: list[str], long_rows: list[dict],
                     audit: bool = False) -> tuple[list[str], list[float | None]]:
    """One family's row: test AUC/ACC of its best trial per dataset (mean ± std over seeds when
    confirmed); with ``audit``, those at the epoch chosen on test, from the confirm runs."""
    texts, values = [label], [None]
    prefix = "audit_" if audit else ""
    for ds in datasets:
        hit = ours[ours["dataset"].str.lower() == ds] if not ours.empty else ours
        for m in _TABLE1_METRICS:
            h = hit.iloc[0] if not hit.empty else {}
            mean, std = float_or_none(h.get(f"{prefix}{m}_mean")), float_or_none(h.get(f"{prefix}{m}_std"))
            texts.append(format_pm(mean, std))
            values.append(mean)
            if mean is not None:
                long_rows.append(dict(method=label, dataset=ds, metric=m, value=mean, std=std,
                                      n=int(h["n"] if audit else h[f"{m}_n"]), printed=format_pm(mean, std),
                                      source="audit" if audit else h["source"], trial_id=h["trial_id"]))
    return texts, values


# --------------------------------------------------------------------------- Table 2


def _alpha_from_label(label: str) -> float | None:
    m = re.search(r"alpha\s*=\s*([0-9]*\.?[0-9]+)", label)
    return float(m.group(1)) if m else None


def _bin(a: Any) -> float | None:
    v = float_or_none(a)
    return None if v is None else round(round(v * 10) / 10, 1)


def table2(results: Any, confirm: Any = None, dataset: str = "retinamnist") -> TableOut:
    """Paper Table 2 layout for RetinaMNIST: per alpha, the paper's ACC beside ours.

    Ours (test): mean ± std over seeds from confirm rows whose label carries ``alpha=<x>``,
    else over the evaluated trials in that alpha bin. Ours (validation): mean ± std of the
    trials' best-epoch validation ACC / QWK over all non-errored trials in the bin.
    Alpha is binned to the nearest 0.1 (noted when a sweep sampled it continuously). Each
    input the trials saw (28 px; 224 px from 28, the MedViT paper's protocol) has its own
    rows, with the confirm rows of its own sweeps.
    """
    df, notes = _table2_trials(with_inputs(load_results_frame(results)), dataset)
    conf = load_confirm_frame(confirm)
    inputs = sorted(set(df["input_key"])) or [None]
    parts = []
    for key in inputs:
        here = df["input"] == input_label(key) if key is not None else pd.Series(True, index=df.index)
        trials = df[here]
        conf_rows = _table2_confirm_rows(conf, trials, dataset, notes, shared=len(inputs) == 1,
                                         elsewhere=df.loc[~here, "trial_id"])
        parts.append((input_label(key) if key is not None else MISSING, trials, conf_rows))
    audited = any(c is not None and bool(c["audit_test_acc"].notna().any()) for _, _, c in parts)
    rows = []
    for label, trials, conf_rows in parts:
        bins = sorted(set(ref.TABLE2) | set(trials["alpha_bin"].dropna())
                      | (set(conf_rows["alpha_bin"]) if conf_rows is not None else set()))
        usable = _usable(trials) if not trials.empty else trials
        rows += [_table2_row(label, b, usable, conf_rows, audited) for b in bins]
    header = ["Input", "α", "Paper ACC", "Ours ACC (test)", "Ours QWK (test)", "Ours MAE (test)", "Ours AUC (test)",
              "n test (source)", "Ours val ACC", "Ours val QWK", "n trials"]
    groups = subheader = None
    if audited:
        header[7:7] = [f"Ours ACC ({AUDIT_HEADING})", f"Ours QWK ({AUDIT_HEADING})"]
        groups = ["", "", "", *["Ours, epoch chosen on validation (the honest numbers)"] * 4, *[AUDIT_HEADING] * 2,
                  "", "", "", ""]
        subheader = [*header[:3], "ACC", "QWK", "MAE", "AUC", "ACC", "QWK", *header[9:]]
    notes = [
        "Paper ACC: the paper's Table 2 (MedViT, Ordinal Loss, margin 0.1, test split, one run per alpha).",
        "Ours (test): mean ± std over seeds of confirmed configurations with that alpha, else over the "
        "trials in the bin that were evaluated on the test split.",
        "Ours val: best-epoch validation metrics, mean ± std over non-errored trials in the bin "
        "(early-stopped trials included).",
        "Bold = best in a column that holds more than one value (lowest for MAE).",
        AUDIT_NOTE + " Ours (test) are the validation-selected numbers." if audited else "",
        *notes,
        MISSING_NOTE,
    ]
    return TableOut("table2", f"Table 2: {ref.display_name(dataset)} by Ordinal Loss alpha",
                    pd.DataFrame([texts for texts, _, _ in rows], columns=header), [n for n in notes if n],
                    pd.DataFrame([rec for _, _, rec in rows]),
                    column_best(pd.DataFrame([values for _, values, _ in rows], columns=header),
                                lower_is_better=["Ours MAE (test)"]), groups, subheader)


def _table2_trials(df: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, list[str]]:
    """The dataset's MedViT trials with their alpha bin, and notes on what was left out or binned."""
    df = df[df["dataset"].str.lower() == dataset]
    notes = []
    fams = df["model"].map(model_family) if not df.empty else pd.Series(dtype=str)
    if (fams == "medvit").any() and (fams != "medvit").any():
        df = df[fams == "medvit"]
        notes.append("Only MedViT trials are included (the paper's Table 2 is MedViT); other models are left out.")
    df = df.assign(alpha_bin=df["alpha"].map(_bin)) if not df.empty else df.assign(alpha_bin=[])
    off_grid = df[df["alpha"].notna() & ((df["alpha"] * 10 - (df["alpha"] * 10).round()).abs() > 1e-6)]
    if not off_grid.empty:
        notes.append(
            f"Alpha was sampled continuously in sweep(s) {', '.join(sorted(off_grid['sweep'].unique()))}: "
            "trials are binned to the nearest 0.1."
        )
    return df, notes


def _table2_confirm_rows(conf: pd.DataFrame | None, trials: pd.DataFrame, dataset: str, notes: list[str],
                         shared: bool, elsewhere: Iterable[str] = ()) -> pd.DataFrame | None:
    """The confirm rows of ``trials``' sweeps (and, when ``shared``, those naming no sweep) but
    not of the trials ``elsewhere`` (at another input), with the alpha bin their label names
    (None without a confirm table)."""
    if conf is None:
        return None
    c = conf[conf["dataset"].str.lower() == dataset].reset_index(drop=True)
    sweeps = c["sweep"] if "sweep" in c.columns else pd.Series(None, index=c.index, dtype=object)
    keep = sweeps.isin(set(trials["sweep"])) | (sweeps.isna() & shared)
    if "trial_id" in c.columns:
        # a sweep that searched ``resize`` holds several inputs: a confirmed trial belongs to one
        keep &= ~c["trial_id"].isin(set(elsewhere))
    c = c[keep].assign(sweep_key=sweeps[keep].fillna(""),
                       alpha_bin=c.loc[keep, "label"].map(lambda s: _bin(_alpha_from_label(s))))
    # Rows labelled plain "best" re-run their sweep's best trial's configuration: place them in
    # its alpha bin unless that bin has explicitly labelled rows.
    is_best = c["label"].str.lower() == "best"
    explicit = set(c["alpha_bin"].dropna())
    for sweep, rows in c[is_best].groupby("sweep_key", sort=True):
        bt = best_trials(trials[trials["sweep"] == sweep] if sweep else trials) if not trials.empty else trials
        if bt.empty or float_or_none(bt.iloc[0]["alpha"]) is None:
            continue
        b = _bin(bt.iloc[0]["alpha"])
        if b not in explicit:
            c.loc[rows.index, "alpha_bin"] = b
            notes.append(f"Confirm rows labelled 'best' are the best trial's configuration (alpha {b:.1f}"
                         + (f", sweep {sweep})." if sweep else ")."))
    return c[c["alpha_bin"].notna()]


def _table2_row(model_in: str, b: float, usable: pd.DataFrame, conf_rows: pd.DataFrame | None, audited: bool
                ) -> tuple[list[str], list[float | None], dict[str, Any]]:
    """One input's alpha bin: its cells, the numbers that compete for a column's best, and its record."""
    p = ref.TABLE2.get(b)
    in_bin = usable[usable["alpha_bin"] == b] if not usable.empty else usable
    cb = conf_rows[conf_rows["alpha_bin"] == b] if conf_rows is not None else None
    if cb is not None and not cb.empty:
        src_frame, src = cb, "seeds"
    else:
        src_frame, src = (in_bin[in_bin["test_acc"].notna()] if not in_bin.empty else in_bin), "trials"
    rec: dict[str, Any] = {"input": model_in, "alpha": b, "paper_acc": p.value if p else None}
    texts, values = [model_in, f"{b:.1f}", p.printed if p else MISSING], [None, None, p.value if p else None]

    def summary(frame: pd.DataFrame | None, column: str, key: str, competes: bool = True) -> None:
        mean, std, _ = _summary(frame[column]) if frame is not None and not frame.empty else (None, None, 0)
        rec[f"{key}_mean"], rec[f"{key}_std"] = mean, std
        texts.append(format_pm(mean, std))
        values.append(mean if competes else None)

    for m in ("acc", "qwk", "mae", "auc"):
        summary(src_frame, f"test_{m}", f"test_{m}")
    if audited:  # the audit columns are never a column's best
        for m in ("acc", "qwk"):
            summary(cb, f"audit_test_{m}", f"audit_test_{m}", competes=False)
    n_test = len(src_frame)
    rec["n_test"], rec["test_source"] = n_test, src if n_test else None
    texts.append(f"{n_test} {src.removesuffix('s') if n_test == 1 else src}" if n_test else "0")
    values.append(None)
    for m in ("acc", "qwk"):
        summary(in_bin, f"best_val_{m}", f"val_{m}")
    rec["n_trials"] = len(in_bin)
    texts.append(str(len(in_bin)))
    values.append(None)
    return texts, values, rec


# --------------------------------------------------------------------------- best per dataset


def best_table(results: Any, dataset: str, top_k: int = 10) -> TableOut:
    """The top ``top_k`` trials of one dataset by validation metric, best first."""
    df = load_results_frame(results)
    g = with_inputs(df[df["dataset"].str.lower() == dataset.lower()])
    ranked = _rank(g).head(top_k)
    sel = selection_metric(_usable(g))
    metric, mode = sel if sel else ("best_value", "max")
    ordinal = g["best_val_qwk"].notna().any() if not g.empty else False
    test_cols = ["test_acc", "test_auc"] + (["test_qwk", "test_mae"] if ordinal else [])
    header = ["Rank", "Sweep", "Trial", "Model", "α", "Margin", "Augment", "LR", "Weight decay", "Batch",
              "Input", "Seed", score_name(metric), "Best epoch", "Epochs run", "Stop"] + \
             [_TEST_HEADER[c] for c in test_cols] + ["Checkpoint"]
    rows, data = [], []
    for i, t in enumerate(ranked.itertuples(), 1):
        r = [str(i), t.sweep, t.trial_id, t.model or MISSING, fmt_value(t.alpha, 3), fmt_value(t.margin, 3),
             t.augment or MISSING, _fmt_sci(t.lr), _fmt_sci(t.weight_decay), fmt_int(t.batch_size),
             t.input, fmt_int(t.seed), fmt_value(t.best_value, 4), fmt_int(t.best_epoch),
             f"{t.epochs_run}/{fmt_int(t.epochs_max)}", t.stop_reason]
        r += [fmt_value(getattr(t, c), 3) for c in test_cols]
        r += [t.checkpoint_path or MISSING]
        rows.append(r)
        data.append(dict(rank=i, **{k: getattr(t, k, None) for k in (
            "sweep", "trial_id", "model", "alpha", "margin", "augment", "lr", "weight_decay", "batch_size",
            "img_size", "resize", "resize_mode", "input", "seed", "metric", "mode", "best_value", "best_epoch",
            "epochs_run", "epochs_max",
            "stop_reason", "checkpoint_path", *test_cols)}))
    frame = pd.DataFrame(rows, columns=header)
    best = pd.DataFrame(False, frame.index, frame.columns)
    best.iloc[0:1, 12] = len(rows) > 1  # the winner, where there is another trial to compare
    n_err = int((g["stop_reason"] == "errored").sum()) if not g.empty else 0
    notes = [
        f"Ranked by the {score_name(metric)} ({mode} is best); {len(g)} trials, {n_err} errored (excluded).",
        SCORE_NOTE,
        "Test columns are filled only for trials that were evaluated on the test split.",
        MISSING_NOTE,
    ]
    if g["metric"].nunique() > 1 if not g.empty else False:
        notes.insert(1, f"Sweeps of this dataset used different metrics; only trials selected on {metric} are ranked.")
    return TableOut(f"best_{dataset.lower()}", f"{ref.display_name(dataset)}: top {top_k} trials", frame,
                    notes, pd.DataFrame(data), best)


_TEST_HEADER = {"test_acc": "Test ACC", "test_auc": "Test AUC", "test_qwk": "Test QWK", "test_mae": "Test MAE"}


def _fmt_sci(x: Any) -> str:
    v = float_or_none(x)
    return MISSING if v is None else f"{v:.2g}" if v != 0 else "0"


def fmt_int(x: Any) -> str:
    """A whole number (an epoch, a batch size) for a table cell; MISSING for none."""
    v = float_or_none(x)
    return MISSING if v is None else str(int(v))


# --------------------------------------------------------------------------- writing


def write_tables(results: Any, out_dir: str | os.PathLike, confirm: Any = None, top_k: int = 10
                 ) -> dict[str, TableOut]:
    """Build and write every table to ``out_dir``: ``table1.md/.csv`` (+ ``table1_long.csv``,
    the tidy numbers), ``table2.md/.csv`` and ``best_<dataset>.md/.csv`` per dataset.

    Returns the tables by name (``table1``, ``table2``, ``best_<dataset>``).
    """
    out_dir = Path(out_dir)
    df = with_inputs(load_results_frame(results))
    tables: dict[str, TableOut] = {}
    t1 = table1(df, confirm)
    t1.write(out_dir, parts=table1_blocks(t1))
    t1.data.to_csv(out_dir / "table1_long.csv", index=False)
    tables["table1"] = t1
    t2 = table2(df, confirm)
    t2.write(out_dir)
    tables["table2"] = t2
    for ds in sorted(df["dataset"].str.lower().unique()):
        bt = best_table(df, ds, top_k=top_k)
        bt.write(out_dir)
        tables[bt.name] = bt
    return tables
