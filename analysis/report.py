"""The sweep report: one self-contained HTML page and a Markdown twin.

``write_report(results_parquet, out_dir)`` writes into ``out_dir``:

* ``report.html`` -- a single file: figures embedded as base64 PNG, inline CSS, no scripts,
  no external resources (it opens offline and can be mailed around);
* ``report.md`` -- the same content, figures linked from ``figures/``;
* ``table1.md/.csv``, ``table1_long.csv``, ``table2.md/.csv``, ``best_<dataset>.md/.csv``
  (see :mod:`analysis.tables`), ``figures/*.png`` (see :mod:`analysis.figures`);
* ``best_<dataset>.yaml`` -- the best configuration per dataset, with TrainConfig keys.

The page opens with the headline a reader came for (visible without scrolling at 1,280 px):
per dataset, the best trial's test numbers, its configuration re-trained over seeds (confirm
table), the ensembles of ``medsweep ensemble`` (``ensemble.json``, :func:`read_ensemble`) and
the anchors of :func:`analysis.reference.anchors`, then the winner's-curse gap: the winner's
validation score minus its confirmed test mean.

Where the confirm runs had the test-selection audit on, a section of its own puts the test
metrics at the epoch chosen on validation (the honest numbers) beside those at the epoch
chosen on test (what a paper selecting on test would print), and Tables 1 and 2 carry the
audit as a labelled row and columns. Where the sweep's own trials ran with the audit, another
section sets the validation-chosen winner's test value beside the winner's epoch chosen on test
and the best trial and epoch chosen on test (the results table's ``audit_*`` columns).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd

from analysis import reference as ref
from analysis.collect import float_or_none
from analysis.render import Image, Section, render_html, render_markdown
from analysis.schema import CONFIG_COLUMNS
from analysis.stats import binomial_se, format_pm, mean_ci, power_sentence
from analysis.tables import (
    AUDIT_HEADING,
    AUDIT_NOTE,
    DECISION_AUDIT_NOTE,
    MISSING,
    SCORE_NOTE,
    TableOut,
    best_config,
    best_trials,
    decision_audit,
    family_label,
    fmt_int,
    fmt_value,
    image_interval,
    load_confirm_frame,
    load_results_frame,
    model_family,
    ours_test_metrics,
    paired_difference,
    result_groups,
    score_name,
    seed_ensemble,
    table1_blocks,
    with_inputs,
    write_tables,
)
from medvit.atomic import write_text_atomic
from medvit.provenance import where_they_ran
from medvit.selection import AUDIT_PREFIX, SCORE_METRICS, metric_named
from medvit.yamlio import dump_yaml

__all__ = ["write_report", "read_ensemble", "Ensemble", "test_split_size"]


# --------------------------------------------------------------------------- content helpers


def test_split_size(dataset: str) -> int | None:
    """Number of test images of a MedMNIST dataset (from ``medmnist.INFO``), or None."""
    from medvit.data import DataError, dataset_info  # imports torch: only a report with a table pays it

    try:
        return dataset_info(dataset.lower()).n_samples["test"]
    except DataError:  # not a MedMNIST flag, or medmnist missing
        return None


def _range_text(s: pd.Series) -> str:
    """The values a column took, readably: ``20``; ``0, 0.1, 0.2``; ``off, light``; or
    ``0.0211 – 0.283 (11 values)`` for a continuously sampled one."""
    v = s.dropna()
    if v.empty:
        return MISSING
    uniq = sorted(v.unique(), key=lambda x: (str(type(x)), x))
    if pd.api.types.is_numeric_dtype(v) and not pd.api.types.is_bool_dtype(v):
        if len(uniq) <= 6:
            return ", ".join(f"{x:g}" for x in uniq)
        return f"{v.min():.3g} – {v.max():.3g} ({len(uniq)} values)"
    return ", ".join(str(x) for x in uniq)


def _sweep_overview(df: pd.DataFrame) -> tuple[TableOut, TableOut]:
    """(trial counts per sweep, search space: one row per config field, one column per sweep)."""
    header = ["Sweep", "Dataset", "Metric (validation)", "Trials", "Finished", "Early-stopped", "Errored",
              "Unfinished", "Epochs max"]
    rows = []
    groups = list(df.groupby("sweep", sort=True))
    for sweep, g in groups:
        counts = g["stop_reason"].value_counts()
        r = [sweep, ", ".join(ref.display_name(d) for d in sorted(g["dataset"].unique())),
             f"{g['metric'].iloc[0]} ({g['mode'].iloc[0]})", str(len(g))]
        r += [str(int(counts.get(k, 0))) for k in ("finished", "early_stopped", "errored", "unfinished")]
        r += [_range_text(g["epochs_max"])]
        rows.append(r)
    # Transposed: a sweep has many config fields and few sweeps are compared, so one row per
    # field keeps the table narrow whatever the number of fields.
    space = [[c] + [_range_text(g[c]) for _, g in groups] for c in CONFIG_COLUMNS]
    return (
        TableOut("sweeps", "Sweeps", pd.DataFrame(rows, columns=header),
                 ["Finished = ran all epochs; early-stopped = stopped by the scheduler (e.g. ASHA)."]),
        TableOut("search_space", "Search space",
                 pd.DataFrame(space, columns=["Config field"] + [sweep for sweep, _ in groups]),
                 ["The values the trials actually used: a list gives the distinct values, a – b the range "
                  "of a continuously sampled one."]),
    )


def _compute_summary(df: pd.DataFrame) -> tuple[list[str], dict[str, float]]:
    ok = df[df["stop_reason"] != "errored"]
    train_s = float(df["train_time_s"].fillna(0).sum())
    wall_s = float(df["wall_time_s"].fillna(0).sum())
    epochs_run = int(df["epochs_run"].sum())
    budget = int(ok["epochs_max"].fillna(ok["epochs_run"]).sum())
    es = df[df["stop_reason"] == "early_stopped"]
    saved = int((es["epochs_max"].fillna(es["epochs_run"]) - es["epochs_run"]).clip(lower=0).sum())
    per_epoch = train_s / epochs_run if epochs_run else math.nan
    saved_s = saved * per_epoch if epochs_run else math.nan
    frac = saved / budget if budget else math.nan
    items = [
        f"Trials: {len(df)} in {df['sweep'].nunique()} sweep(s) over {df['dataset'].nunique()} dataset(s).",
        f"Training time (sum of epoch_time_s over all trials): {train_s / 3600:.2f} h "
        f"({train_s:.0f} s); Ray trial wall time: {wall_s / 3600:.2f} h.",
        f"Trial-epochs run: {epochs_run}.",
        f"Early stopping saved {saved} trial-epochs of {budget} that running every non-errored trial to "
        f"its epochs_max would have taken ({frac:.0%} of the full budget), about "
        f"{saved_s / 3600:.2f} h at the observed mean of {per_epoch:.1f} s per trial-epoch."
        if budget and epochs_run else "Early stopping: no trial-epochs recorded yet.",
    ]
    return items, dict(train_time_s=train_s, wall_time_s=wall_s, trial_epochs=epochs_run,
                       budget_epochs=budget, saved_epochs=saved, saved_fraction=frac, saved_s=saved_s)


# A confirmed configuration is one label of one sweep: two sweeps' "best" are two configurations.
_CONFIRMED = ["dataset", "sweep", "label"]
SEED_ENSEMBLE_NOTE = (
    "Seed ensemble: the configuration's re-trained models as one, their test probabilities averaged "
    "(every seed, nothing chosen): what deploying all of them would score. Not comparable with the "
    "mean over seeds, which is what one model scores; a paper's single number may be either."
)


IMAGE_CI = "ACC 95% CI, seeds and test images"
IMAGE_CI_NOTE = (
    f"{IMAGE_CI}: the bootstrap interval of the mean over seeds resampling the test images with the seeds "
    "(analysis.tables.image_interval). The test split is one draw of patients: the Student-t interval speaks of "
    "this split only, this one of what another draw of as many test images could show. Paired differences "
    "below give both."
)

RUNNER_UP_NOTE = (
    "rank K: the sweep's Kth configuration by validation, re-run with the winner's seeds (medsweep confirm --top): "
    "its paired difference from 'best' below says whether the winner's lead on validation holds on test."
)


def _with_sweep(conf: pd.DataFrame) -> pd.DataFrame:
    """The confirm table with its sweep named ("–" where a hand-made table has none)."""
    return conf.assign(sweep=conf["sweep"].fillna(MISSING) if "sweep" in conf.columns else MISSING)


def _confirmed(conf: pd.DataFrame) -> Iterator[tuple[str, str, str, pd.DataFrame]]:
    """(dataset, sweep, label, its rows) per confirmed configuration."""
    for (ds, sweep, label), g in _with_sweep(conf).groupby(_CONFIRMED, sort=True):
        yield ds, sweep, label, g


def _confirm_section(conf: pd.DataFrame) -> tuple[TableOut, list[str]]:
    header = ["Dataset", "Sweep", "Label", "Seeds", "ACC mean ± std", "ACC 95% CI", IMAGE_CI, "AUC mean ± std",
              "AUC 95% CI", "QWK mean ± std", "MAE mean ± std"]
    rows, data, ensembles = [], [], []
    for ds, sweep, label, g in _confirmed(conf):
        r = [ref.display_name(ds), sweep, label, str(g["seed"].nunique())]
        rec = dict(dataset=ds, sweep=sweep, label=label, n=int(g["seed"].nunique()))
        for m in ("acc", "auc", "qwk", "mae"):
            vals = g[f"test_{m}"].dropna().to_numpy(float)
            if vals.size == 0:
                r += [MISSING] * {"acc": 3, "auc": 2}.get(m, 1)
                continue
            ci = mean_ci(vals)
            r.append(format_pm(ci.mean, ci.std))
            if m in ("acc", "auc"):
                r.append(MISSING if math.isnan(ci.ci_low) else f"[{ci.ci_low:.3f}, {ci.ci_high:.3f}]")
            rec[f"{m}_mean"], rec[f"{m}_std"], rec[f"{m}_ci"] = ci.mean, ci.std, (ci.ci_low, ci.ci_high)
            if m == "acc":
                images = image_interval(g)
                r.append(MISSING if images is None else f"[{images.ci_low:.3f}, {images.ci_high:.3f}]")
                rec["acc_image_ci"] = None if images is None else (images.ci_low, images.ci_high)
        ensembles.append(seed_ensemble(g))
        rec |= {f"ensemble_{m}": ensembles[-1].get(m) for m in ("acc", "auc")} if ensembles[-1] else {}
        rows.append(r)
        data.append(rec)
    if any(ensembles):  # none for runs from before the probabilities were kept
        header += ["Seed ensemble ACC", "Seed ensemble AUC"]
        for r, ensemble in zip(rows, ensembles):
            r += [format_pm(ensemble.get(m)) if ensemble else MISSING for m in ("acc", "auc")]
    tests = []
    for (ds, sweep), g in _with_sweep(conf).groupby(["dataset", "sweep"], sort=True):
        labels = sorted(g["label"].unique())
        if "best" not in labels:
            continue
        a = g[g["label"] == "best"]
        for other in labels:
            if other == "best":
                continue
            b = g[g["label"] == other]
            pair = paired_difference(a, b)
            res, images = pair.over_seeds, pair.over_seeds_and_images
            if res is None:
                continue
            power = power_sentence(pair.diffs, _table2_claim(ds, a, b))
            tests.append(
                f"{ref.display_name(ds)}, sweep {sweep}: test ACC of 'best' minus '{other}', "
                f"paired over {res.n} seeds: "
                f"{res.mean_diff:+.3f}, 95% bootstrap CI [{res.ci_low:+.3f}, {res.ci_high:+.3f}], "
                f"{res.frac_le_zero:.1%} of resamples ≤ 0"
                + (" (with this few seeds the bootstrap is coarse)" if res.n < 5 else "") + "."
                + ("" if images is None else f" Over seeds and test images: [{images.ci_low:+.3f}, "
                   f"{images.ci_high:+.3f}], {images.frac_le_zero:.1%} of resamples ≤ 0.")
                + (f" {power}" if power else "")
            )
    notes = ["Std over seeds (ddof 1); 95% CI = Student-t interval over seeds."]
    if any(rec.get("acc_image_ci") for rec in data):
        notes.append(IMAGE_CI_NOTE)
    if "Seed ensemble ACC" in header:
        notes.append(SEED_ENSEMBLE_NOTE)
    if conf["label"].str.startswith("rank ").any():
        notes.append(RUNNER_UP_NOTE)
    if "environment_json" in conf and conf["environment_json"].notna().any():  # tables before it have none
        envs = [json.loads(j) if isinstance(j, str) else None for j in conf["environment_json"]]
        notes.append(f"Where the runs ran: {where_they_ran(envs)} (the same seed elsewhere trains another model).")
    t = TableOut("confirm", "Confirmed configurations (test split, per-seed re-runs)", pd.DataFrame(rows, columns=header),
                 notes, pd.DataFrame(data))
    return t, tests


def _table2_claim(dataset: str, best: pd.DataFrame, other: pd.DataFrame) -> dict[str, float]:
    """The paper's Table 2 gain as a claimed difference of 'best' minus 'other', where one of
    the two confirmed configurations is RetinaMNIST's alpha 0 and the other an alpha it trained."""
    if dataset != "retinamnist" or "config_json" not in best:
        return {}
    alphas = [float_or_none(json.loads(g["config_json"].dropna().iloc[0]).get("alpha"))
              if g["config_json"].notna().any() else None for g in (best, other)]
    if None in alphas or 0.0 not in alphas:
        return {}
    alpha = max(alphas)
    gain = ref.table2_gain(alpha)
    if gain is None:
        return {}
    return {f"the paper's Table 2 gain at alpha {alpha:g}": gain if alphas[0] == alpha else -gain}


def _audit_section(conf: pd.DataFrame) -> TableOut | None:
    """Per confirmed configuration with the audit on: test metrics at the epoch chosen on
    validation beside those at the epoch chosen on test, mean ± std over seeds, and the
    difference; None when no confirm run had the audit."""
    if "audit_test_acc" not in conf.columns or conf["audit_test_acc"].isna().all():
        return None
    header = ["Dataset", "Sweep", "Label", "Seeds", "ACC, epoch chosen on validation", "ACC, epoch chosen on test",
              "ACC added by choosing on test", "AUC, epoch chosen on validation", "AUC, epoch chosen on test",
              "Epochs chosen (validation / test)"]
    rows, data, rules = [], [], []
    for ds, sweep, label, g in _confirmed(conf[conf["audit_test_acc"].notna()]):
        rec = dict(dataset=ds, sweep=sweep, label=label, n=int(g["seed"].nunique()))
        cells = [ref.display_name(ds), sweep, label, str(rec["n"])]
        for m in ("acc", "auc"):
            for where, column in (("val", f"test_{m}"), ("test", f"audit_test_{m}")):
                ci = mean_ci(g[column].to_numpy(float)) if g[column].notna().any() else None
                rec[f"{m}_{where}_mean"] = ci.mean if ci else None
                cells.append(format_pm(ci.mean, ci.std) if ci else MISSING)
            if m == "acc":
                diff = (g["audit_test_acc"] - g["test_acc"]).dropna()
                rec["acc_added"] = float(diff.mean()) if len(diff) else None
                spread = f" ± {diff.std():.3f}" if len(diff) > 1 else ""
                cells.append(f"{diff.mean():+.3f}{spread}" if len(diff) else MISSING)
        cells.append(" / ".join(", ".join(str(int(e)) for e in g[c].dropna()) for c in ("selected_epoch", "audit_epoch")))
        rule_accs = decision_audit(g)
        rules.append(mean_ci(rule_accs) if rule_accs else None)
        rec["acc_decision_on_test_mean"] = rules[-1].mean if rules[-1] else None
        rows.append(cells)
        data.append(rec)
    notes = [AUDIT_NOTE, "Std over seeds (ddof 1); the added ACC is the per-seed difference, mean ± std."]
    if any(rules):  # runs with their test probabilities
        header.append("ACC, decision rule chosen on test")
        for cells, on_test in zip(rows, rules):
            cells.append(format_pm(on_test.mean, on_test.std) if on_test else MISSING)
        notes.insert(1, DECISION_AUDIT_NOTE)
    return TableOut("audit", f"{AUDIT_HEADING} beside the epoch chosen on validation", pd.DataFrame(rows, columns=header),
                    notes, pd.DataFrame(data))


SWEEP_AUDIT_NOTE = (
    "Test-selection audit of the sweeps (an audit, never a result): the trials ran with audit_test on, so "
    "every epoch's test metrics were recorded and never read by the selection, ASHA, the searcher or the "
    "ranking. The winner is the trial chosen on validation (Table 1's); its test value at the epoch chosen "
    "on validation is the honest number. Choosing the winner's epoch on test, or any trial and its epoch "
    "on test, is what a paper that selects on test would print."
)


def _sweep_audit_section(df: pd.DataFrame) -> TableOut | None:
    """Per dataset whose sweep trials ran with the audit: the validation-chosen winner's test
    value beside what choosing on test would claim (the winner's epoch chosen on test; any
    trial and epoch chosen on test); None when no trial had the audit."""
    if "audit_epoch" not in df.columns or df["audit_epoch"].isna().all():
        return None
    rows, data = [], []
    df = with_inputs(df)
    winners = [w for key in sorted(set(df["input_key"])) for w in best_trials(df[df["input_key"] == key]).itertuples()]
    for w in winners:
        audited = df[(df["dataset"] == w.dataset) & (df["input"] == w.input) & df["audit_epoch"].notna()]
        kind = metric_named(w.metric).key
        kind = kind if kind in SCORE_METRICS else "acc"  # the audit records no loss column
        column, higher = AUDIT_PREFIX + kind, metric_named(kind).direction == "max"
        if audited.empty or audited[column].isna().all():
            continue
        oracle = audited.loc[audited[column].idxmax() if higher else audited[column].idxmin()]
        honest, winner_oracle = float_or_none(getattr(w, f"test_{kind}")), float_or_none(getattr(w, column))
        added = oracle[column] - honest if honest is not None else None
        rows.append([ref.display_name(w.dataset), w.input, kind.upper(), str(len(audited)), fmt_value(honest),
                     f"{fmt_value(winner_oracle)} (epoch {fmt_int(w.audit_epoch)}; validation chose {fmt_int(w.best_epoch)})",
                     f"{fmt_value(oracle[column])} (trial {oracle['trial_id']}, epoch {fmt_int(oracle['audit_epoch'])})",
                     f"{added:+.3f}" if added is not None else MISSING])
        data.append(dict(dataset=w.dataset, input=w.input, metric=kind, trials=len(audited), winner_test=honest,
                         winner_epoch_on_test=winner_oracle, any_trial_on_test=float(oracle[column]),
                         oracle_trial=oracle["trial_id"], added=added))
    if not rows:
        return None
    header = ["Dataset", "Input", "Metric", "Audited trials", "Winner, epoch chosen on validation (test)",
              "Winner, epoch chosen on test", "Any trial and epoch chosen on test", "Added by choosing on test"]
    return TableOut("sweep_audit", "Test-selection audit of the sweeps: trial and epoch chosen on test",
                    pd.DataFrame(rows, columns=header),
                    [SWEEP_AUDIT_NOTE, f"{MISSING} = the winner not yet evaluated on the test split (medsweep evaluate)."],
                    pd.DataFrame(data))


def _caveats(df: pd.DataFrame, conf: pd.DataFrame | None, ours: pd.DataFrame, table2_notes: list[str]) -> list[str]:
    items = []
    single = ours[ours["source"] != "confirm"] if not ours.empty else ours
    if not single.empty:
        items.append(
            "Single seed: the test numbers of " + ", ".join(
                f"{ref.display_name(o.dataset)} ({family_label(o.family)}, {o.input})" for o in single.itertuples())
            + " come from one training run; seed-to-seed spread is unknown until the best configuration is "
            "re-run with several seeds (medsweep confirm)."
        )
    items.append(
        "Model selection used the validation split only; 'ours' reports the test metrics of the "
        "best-by-validation trial only (the other trials were not evaluated on test), so there is no "
        "test-set selection, but also no test-set spread over the sweep."
    )
    for ds in sorted(df["dataset"].str.lower().unique()):
        n = test_split_size(ds)
        if not n:
            continue
        hit = ours[ours["dataset"].str.lower() == ds] if not ours.empty else ours
        acc = None
        if not hit.empty and hit.iloc[0]["acc_mean"] is not None and not pd.isna(hit.iloc[0]["acc_mean"]):
            acc = float(hit.iloc[0]["acc_mean"])
        p = acc if acc is not None else 0.5
        se = binomial_se(p, n)
        items.append(
            f"{ref.display_name(ds)} test split has {n} images: the binomial standard error of an ACC of "
            f"{p:.2f} is ±{100 * se:.1f} percentage points (95% about ±{196 * se:.1f} pp), so differences "
            f"smaller than that are within noise."
        )
    items.append("The paper reports one run per number, without seeds or intervals.")
    es = df[df["stop_reason"] == "early_stopped"]
    if len(es):
        items.append(
            f"{len(es)} trials were stopped early by the scheduler: their best validation values are "
            "from fewer epochs and are not comparable one-to-one with finished trials."
        )
    err = df[df["stop_reason"] == "errored"]
    if len(err):
        msgs = sorted(err["error"].fillna("?").unique())
        items.append(f"{len(err)} trials errored (left out of every ranking): " + "; ".join(msgs[:5])
                     + (" …" if len(msgs) > 5 else ""))
    unf = df[df["stop_reason"] == "unfinished"]
    if len(unf):
        items.append(f"{len(unf)} trials are unfinished (pending or still running when collected).")
    items += [n for n in table2_notes if "binned" in n]
    return items


def _name(x: Any) -> str:
    return Path(x).name if isinstance(x, (str, os.PathLike)) else "an in-memory table"


def _other_retina() -> list[str]:
    items = []
    for r in ref.RETINA_OTHER:
        acc = r.acc.printed + (f" ± {r.acc_sd.printed}" if r.acc_sd else "")
        auc = f", AUC {r.auc.printed}" if r.auc else ""
        items.append(f"{r.label}: ACC {acc}{auc} ({r.note}; {r.source}).")
    return items


# --------------------------------------------------------------------------- headline and ensembles

_TEST_METRICS = SCORE_METRICS


@dataclass(frozen=True)
class Ensemble:
    """One ``ensemble.json`` of ``medsweep ensemble``: members chosen on the validation split,
    then evaluated once on the test split."""

    path: Path
    dataset: str
    sweep: str
    members: list[dict[str, Any]]
    val: dict[str, float]
    test: dict[str, float]
    metric: str | None  # what the greedy selection maximised on validation, e.g. "val_acc"
    candidates: int | None  # finished trials it chose from
    winner: dict[str, Any] | None = None  # the best single trial's {trial_id, val, test}, beside it


def read_ensemble(path: str | os.PathLike) -> Ensemble:
    """Read an ensemble file: ``DIR/ensemble.json`` or the folder ``DIR`` that holds it.

    Raises:
        ValueError: one line naming the file and what is wrong with it.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "ensemble.json"  # analysis.ensemble.ENSEMBLE_FILE (not imported: it pulls in torch)
    if not p.is_file():
        raise ValueError(f"{p}: ensemble file not found (medsweep ensemble SWEEP_DIR --out DIR writes "
                         "DIR/ensemble.json)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: not a JSON file ({exc})") from None
    keys = ("dataset", "sweep", "members", "val", "test")
    missing = [k for k in keys if k not in data] if isinstance(data, dict) else list(keys)
    if missing:
        raise ValueError(f"{p}: not an ensemble file: no {', '.join(missing)}")
    members = data["members"]
    if not (isinstance(members, list) and members
            and all(isinstance(m, dict) and isinstance(m.get("trial_id"), str)
                    and float_or_none(m.get("weight")) is not None and 0 <= float(m["weight"]) < float("inf")
                    for m in members)):
        raise ValueError(f"{p}: members: need a non-empty list of {{trial_id: text, weight: a number >= 0, "
                         "val_acc}")
    if not isinstance(data.get("metric"), (str, type(None))):
        raise ValueError(f"{p}: metric: {data['metric']!r} is not a metric name such as val_acc")
    if not (data.get("candidates") is None or type(data["candidates"]) is int):
        raise ValueError(f"{p}: candidates: {data['candidates']!r} is not a whole number")
    for split in ("val", "test"):
        if not isinstance(data[split], dict) or float_or_none(data[split].get("acc")) is None:
            raise ValueError(f"{p}: {split}: need the metrics of the split, acc at least")
    winner = data.get("winner")  # files written before it was reported have none
    if winner is not None and not (isinstance(winner, dict) and "trial_id" in winner and all(
            isinstance(winner.get(split), dict) and float_or_none(winner[split].get("acc")) is not None
            for split in ("val", "test"))):
        raise ValueError(f"{p}: winner: need {{trial_id, val, test}} with acc in each split")
    return Ensemble(p, str(data["dataset"]).lower(), str(data["sweep"]), members, _metrics(data["val"]),
                    _metrics(data["test"]), data.get("metric"), data.get("candidates"),
                    None if winner is None else {"trial_id": str(winner["trial_id"]), "val": _metrics(winner["val"]),
                                                 "test": _metrics(winner["test"])})


def _metrics(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if float_or_none(v) is not None}


def _alpha_text(alpha: Any) -> str:
    a = float_or_none(alpha)
    return "" if a is None else f", α {a:g}"


def _headline(df: pd.DataFrame, conf: pd.DataFrame | None, ensembles: Sequence[Ensemble]
              ) -> tuple[TableOut, list[str]]:
    """Per dataset: the best trial's test numbers, its configuration confirmed over seeds, the
    ensembles and the anchors, in one table; and the winner's-curse gaps."""
    ordinal = bool(df["best_val_qwk"].notna().any()) or any("qwk" in e.test for e in ensembles)
    metrics = _TEST_METRICS if ordinal else _TEST_METRICS[:2]
    header = ["Dataset", "Result", "Val"] + [f"Test {m.upper()}" for m in metrics]
    ours = ours_test_metrics(df, conf)
    rows: list[list[str]] = []
    gaps: list[str] = []
    sources: list[str] = []

    def add(dataset: str, result: str, val: Any, tests: dict[str, str]) -> None:
        rows.append([dataset, result, format_pm(float_or_none(val))] + [tests.get(m, MISSING) for m in metrics])

    # One winner per dataset, model family (MedViT first) and input: a baseline sweep, or the
    # paper's 224 px protocol, beside the 28 px MedViT sweep gets its own row, its own
    # confirmation and its own gap.
    groups = result_groups(df)
    winners = pd.concat([best_trials(g) for _, _, g in groups])
    several = {"family": len({fam for fam, _, _ in groups}) > 1, "input": len({key for _, key, _ in groups}) > 1}
    for ds in sorted(winners["dataset"].str.lower().unique()):
        name = ref.display_name(ds)
        for _, w in winners[winners["dataset"].str.lower() == ds].iterrows():
            selected = str(w["metric"]).removeprefix("val_")  # the test metric the selection aims at
            _add_winner(add, gaps, name, w, selected, ours, metrics, several)
        w = winners[winners["dataset"].str.lower() == ds].iloc[0]
        selected = str(w["metric"]).removeprefix("val_")
        for e in (e for e in ensembles if e.dataset == ds):
            aim = (e.metric or w["metric"]).removeprefix("val_")
            of = f" of {e.candidates}" if e.candidates else ""
            add(name, f"Ensemble of {len(e.members)}{of} trials of sweep {e.sweep}, chosen on validation {aim.upper()}",
                e.val.get(selected), {m: format_pm(e.test.get(m)) for m in metrics})
            if aim in e.val and aim in e.test:
                gaps.append(f"{name}: ensemble of sweep {e.sweep}: validation {aim.upper()} {e.val[aim]:.3f} minus "
                            f"test {e.test[aim]:.3f} = {e.val[aim] - e.test[aim]:+.3f} (its members were chosen on "
                            "validation too).")
        for a in ref.anchors(ds):
            printed = {"acc": a.acc.printed + (f" ± {a.acc_sd.printed}" if a.acc_sd else ""),
                       "auc": a.auc.printed if a.auc else MISSING, "qwk": a.qwk.printed if a.qwk else MISSING}
            add(name, f"Anchor: {a.label}", None, printed)
            sources.append(f"{a.label}: {a.source}.")
    notes = ["Val: for a trial, its selection score on the validation split (below); for an ensemble, the "
             "sweep's metric of the averaged predictions. Test: the test split, evaluated once per model.",
             SCORE_NOTE]
    if sources:
        notes.append("Anchors: other people's or earlier results on the same test split, for scale. " + " ".join(sources))
    return TableOut("headline", "Headline", pd.DataFrame(rows, columns=header), notes), gaps


def _add_winner(add: Callable, gaps: list[str], name: str, w: pd.Series, selected: str, ours: pd.DataFrame,
                metrics: Sequence[str], several: dict[str, bool]) -> None:
    """A best trial's headline rows (one test run; its configuration re-trained, when
    confirmed) and its winner's-curse gap. ``several`` says whether the report has more than
    one model family and more than one input, which the row then names."""
    best = f"Best {family_label(model_family(w['model']))} trial" if several["family"] else "Best trial"
    at = f" at {w['input']}" if several["input"] else ""
    add(name, f"{best} {w['trial_id']} ({w['model']}{at}{_alpha_text(w['alpha'])}), selected on "
              f"{w['metric']}: one test run", w["best_value"],
        {m: format_pm(float_or_none(w[f"test_{m}"])) for m in metrics})
    confirmed = ours[(ours["trial_id"] == w["trial_id"]) & (ours["source"] == "confirm")]
    what = f"{name} {w['model']}{at}" if several["family"] or several["input"] else name
    if confirmed.empty:
        gaps.append(f"{what}: the winner's-curse gap needs the best configuration re-trained with fresh "
                    f"seeds (medsweep confirm SWEEP_DIR), then this report with --confirm.")
        return
    c = confirmed.iloc[0]
    add(name, f"Best configuration re-trained: mean ± std over {c['n']} seeds", None,
        {m: format_pm(float_or_none(c[f"{m}_mean"]), float_or_none(c[f"{m}_std"])) for m in metrics})
    if c["ensemble_n"]:
        add(name, f"Best configuration, seed ensemble: the {c['ensemble_n']} re-trained models' probabilities "
                  "averaged", None, {m: format_pm(float_or_none(c[f"ensemble_{m}"])) for m in metrics})
    test = float_or_none(c.get(f"{selected}_mean"))
    if selected in _TEST_METRICS and test is not None:
        gaps.append(f"{what}: winner's-curse gap {w['best_value'] - test:+.3f} = the winner's "
                    f"{score_name(w['metric'])} {w['best_value']:.3f} minus its confirmed test {selected.upper()} "
                    f"{test:.3f} ({c['n']} seeds): how much picking the best of many noisy validation "
                    "scores flatters it.")


def _ensemble_tables(e: Ensemble, df: pd.DataFrame) -> tuple[TableOut, TableOut]:
    """(validation and test metrics of one ensemble, its members)."""
    names = {"acc": "ACC", "auc": "AUC", "qwk": "QWK", "mae": "MAE", "qwk_decoded": "QWK (decoded)",
             "mae_decoded": "MAE (decoded)"}
    keys = [k for k in names if k in e.val or k in e.test]
    splits = [("validation", e.val), ("test", e.test)]
    if e.winner is not None:
        splits += [(f"{name}, winner {e.winner['trial_id']} alone", e.winner[key])
                   for name, key in (("validation", "val"), ("test", "test"))]
    rows = [[split] + [format_pm(d.get(k)) for k in keys] for split, d in splits]
    notes = [f"From {e.path.name}: greedy ensemble selection with replacement on the validation split; the test "
             "split evaluated once, after the members were fixed."]
    if e.winner is not None:
        notes.append("Winner: the sweep's best trial by the ranking (the trial the tables name), for "
                     "comparison; over 20 RetinaMNIST sweeps the ensemble did not beat it (reports/recipe/README.md).")
    if any(k.endswith("_decoded") for k in keys):
        notes.append("Decoded: expected grade with cut-points tuned on the validation split (ACC stays argmax).")
    metrics = TableOut(f"ensemble_{e.sweep}", f"{ref.display_name(e.dataset)}: ensemble of sweep {e.sweep}",
                       pd.DataFrame(rows, columns=["Split"] + [names[k] for k in keys]), notes)
    trials = df[(df["sweep"] == e.sweep)].set_index("trial_id")
    member_rows = []
    for m in e.members:
        t = trials.loc[m["trial_id"]] if m["trial_id"] in trials.index else None
        member_rows.append([str(m["trial_id"]), MISSING if t is None else f"{t['model']}{_alpha_text(t['alpha'])}",
                            f"{float(m['weight']):.3g}", format_pm(float_or_none(m.get("val_acc")))])
    members = TableOut(f"ensemble_members_{e.sweep}", "Members",
                       pd.DataFrame(member_rows, columns=["Trial", "Model", "Weight", "Val ACC (alone)"]),
                       ["Weight: the member's share of the averaged probabilities."])
    return metrics, members


def _relative_checkpoints(df: pd.DataFrame) -> pd.Series:
    """Checkpoint paths relative to their sweep folder: the report must not show paths of the
    machine that made it, and the sweep folder is what a reader copies around."""
    def rel(ckpt: Any, sweep_dir: Any) -> Any:
        if not isinstance(ckpt, str):
            return ckpt
        prefix = str(sweep_dir).rstrip("/") + "/"
        # Outside its sweep folder (moved results): keep the trial folder and the checkpoint.
        return ckpt[len(prefix):] if ckpt.startswith(prefix) else "/".join(ckpt.rstrip("/").split("/")[-2:])

    return pd.Series([rel(c, d) for c, d in zip(df["checkpoint_path"], df["sweep_dir"])], index=df.index,
                     dtype=object)


def _split_columns(t: TableOut, shared: Sequence[str], moved: Sequence[str]) -> list[TableOut]:
    """A wide table as two: every column but ``moved``; then ``shared`` (they identify a row)
    and ``moved``."""
    idx = {h: i for i, h in enumerate(t.header)}
    return t.split([[i for h, i in idx.items() if h not in moved], [idx[h] for h in (*shared, *moved) if h in idx]])


# --------------------------------------------------------------------------- sections


def _sweep_sections(df: pd.DataFrame) -> list[Section]:
    overview, space = _sweep_overview(df)
    compute_items, _ = _compute_summary(df)
    return [Section("What was swept", tables=[overview]), Section("Search space", 3, tables=[space]),
            Section("Compute", items=compute_items)]


def _paper_sections(df: pd.DataFrame, conf: pd.DataFrame | None, tables: dict[str, TableOut]) -> list[Section]:
    """Tables 1 and 2, the test-selection audit, other published results and the confirm runs."""
    t1, t2 = tables["table1"], tables["table2"]
    sections = [Section("Results against the paper"), Section(t1.title, 3, tables=t1.split(table1_blocks(t1))),
                Section(t2.title, 3, tables=[t2])]
    audit = _audit_section(conf) if conf is not None and not conf.empty else None
    if audit is not None:
        sections.append(Section(audit.title, 3, tables=[audit]))
    sweep_audit = _sweep_audit_section(df)
    if sweep_audit is not None:
        sections.append(Section(sweep_audit.title, 3, tables=[sweep_audit]))
    if (df["dataset"].str.lower() == "retinamnist").any():
        sections.append(Section("Other published RetinaMNIST results", 3, text=["At 28 px, on the test split:"],
                                items=_other_retina()))
    if conf is not None and not conf.empty:
        confirmed, tests = _confirm_section(conf)
        sections.append(Section(confirmed.title, 3, tables=[confirmed], items=tests))
    return sections


def _ensemble_sections(ensembles: Sequence[Ensemble], df: pd.DataFrame) -> list[Section]:
    sections = [Section("Ensemble")] if ensembles else []
    for e in ensembles:
        metrics, members = _ensemble_tables(e, df)
        sections.append(Section(metrics.title, 3, tables=[metrics, members]))
    return sections


def _images(df: pd.DataFrame, conf: pd.DataFrame | None, out_dir: Path, figures: bool,
            extra_figures: Sequence[tuple[str | os.PathLike, str]]) -> list[Image]:
    """The report's figures (drawn into ``out_dir/figures`` when ``figures``), then the extra ones."""
    images = []
    if figures:
        from analysis.figures import write_figures

        images = [Image(png, caption, f"figures/{png.name}")
                  for png, _data, caption in write_figures(df, out_dir / "figures", conf).values()]
    return images + [Image(Path(png), caption, os.path.relpath(png, out_dir)) for png, caption in extra_figures]


def _best_config_yaml(row: pd.Series) -> str:
    """A best trial's TrainConfig as YAML, headed by what it scored and where it came from."""
    metric = str(row["metric"])
    at_epoch = float_or_none(row.get(f"best_{metric}"))
    head = (f"# {ref.display_name(row['dataset'])}: sweep {row['sweep']}, trial {row['trial_id']}: "
            f"{score_name(metric)} {row['best_value']:.4f} at epoch {int(row['best_epoch'])} (validation; "
            f"{metric} averaged over the trailing select_window epochs)"
            + ("" if at_epoch is None else f"; {metric} of that epoch alone {at_epoch:.4f}") + "\n")
    return head + dump_yaml(best_config(row))


def _best_config_sections(configs: dict[str, str], tables: dict[str, TableOut]) -> list[Section]:
    sections = [Section("Best configurations", text=[
        "The best trial per dataset by the sweep's validation selection score, as a TrainConfig YAML (also "
        "written as best_<dataset>.yaml next to this report), then its top trials; checkpoints are relative to "
        "the sweep folder."])]
    for ds, text in configs.items():
        top = tables.get(f"best_{ds}")
        # Results first, the training details and checkpoint in a second table, so neither
        # needs sideways scrolling.
        parts = [] if top is None else _split_columns(
            top, ("Rank", "Trial"), ("Sweep", "LR", "Weight decay", "Batch", "Seed", "Checkpoint"))
        sections.append(Section(ref.display_name(ds), 3, code=text, tables=parts))
    return sections


def _closing_sections(df: pd.DataFrame, conf: pd.DataFrame | None, table2_notes: list[str]) -> list[Section]:
    references = [ref.SRC_TABLE1, ref.SRC_TABLE2] + [f"{r.label}: {r.source}" for r in ref.RETINA_OTHER]
    return [Section("Caveats", items=_caveats(df, conf, ours_test_metrics(df, conf), table2_notes)),
            Section("References", items=references)]


def _subtitle(results: Any, confirm: Any, ensembles: Sequence[Ensemble]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    inputs = [_name(results)] + ([_name(confirm)] if confirm is not None else []) + [
        f"{e.path.parent.name}/{e.path.name}" for e in ensembles]
    return f"Generated {stamp} from {', '.join(inputs[:-1]) + ' and ' if len(inputs) > 1 else ''}{inputs[-1]}."


# --------------------------------------------------------------------------- main entry


def write_report(
    results_parquet: str | os.PathLike,
    out_dir: str | os.PathLike,
    confirm_parquet: str | os.PathLike | None = None,
    figures: bool = True,
    extra_figures: Sequence[tuple[str | os.PathLike, str]] = (),
    title: str = "medsweep report",
    ensembles: Sequence[str | os.PathLike] = (),
) -> tuple[Path, Path]:
    """Write the report for a results table.

    Args:
        results_parquet: the results table written by :func:`analysis.collect.collect`.
        out_dir: folder for ``report.html``, ``report.md``, the table files, ``figures/`` and
            ``best_<dataset>.yaml``; created if missing.
        confirm_parquet: optional per-seed confirm table (``dataset, label, seed, test_*``).
        figures: draw the figures (False for a quick tables-only report).
        extra_figures: more PNGs to include, as ``(path, caption)`` (e.g. the GradCAM grid).
        title: page title.
        ensembles: ``ensemble.json`` files of ``medsweep ensemble`` (or the folders holding them).

    Returns:
        ``(html_path, md_path)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = load_results_frame(results_parquet)
    if df.empty:
        raise ValueError(f"{results_parquet}: the results table has no trials")
    df = with_inputs(df)  # once: every table and section reads what each trial's model saw
    df["checkpoint_path"] = _relative_checkpoints(df)
    conf = load_confirm_frame(confirm_parquet)
    ens = [read_ensemble(p) for p in ensembles]
    tables = write_tables(df, out_dir, conf)
    configs = {str(row["dataset"]).lower(): _best_config_yaml(row) for _, row in best_trials(df).iterrows()}
    for ds, text in configs.items():
        write_text_atomic(out_dir / f"best_{ds}.yaml", text)
    headline, gaps = _headline(df, conf, ens)  # first, what a reader came for
    images = _images(df, conf, out_dir, figures, extra_figures)
    sections = [Section(headline.title, tables=[headline], items=gaps), *_sweep_sections(df),
                *_paper_sections(df, conf, tables), *_ensemble_sections(ens, df),
                *([Section("Figures", images=images)] if images else []), *_best_config_sections(configs, tables),
                *_closing_sections(df, conf, tables["table2"].notes)]
    subtitle = _subtitle(results_parquet, confirm_parquet, ens)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(render_markdown(sections, title, subtitle), encoding="utf-8")
    html_path.write_text(render_html(sections, title, subtitle), encoding="utf-8")
    return html_path, md_path
