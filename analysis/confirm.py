"""Confirm a sweep's winner: retrain its best configuration with fresh seeds.

``confirm(sweep_dir, seeds=5, out="confirm.parquet")`` reads the sweep's trials
(:func:`analysis.collect.read_sweep`), takes the best one by the sweep's validation metric
(:func:`analysis.tables.rank_trials`) and trains its configuration again with seeds
``1000, 1001, ...`` (:data:`SEED_START`; fresh, so no re-run repeats a sweep trial's seed) through
:func:`medvit.train.train`: the epoch is selected on the validation split and the test split is
evaluated once per run, at that epoch.

For an ordinal dataset (RetinaMNIST) a second configuration runs beside it with the SAME
seeds, so the two are paired:

* best config with alpha > 0 -> the sweep's best alpha = 0 trial (label ``best alpha=0``), or,
  when the sweep has no alpha = 0 trial, the best config with alpha set to 0 (label
  ``best with alpha=0``);
* best config with alpha = 0 -> the sweep's best alpha > 0 trial (label
  ``best alpha>0 (alpha=<x>)``).

The partner trial is taken among the trials of the winner's model family at the winner's input
(:func:`analysis.tables.with_inputs`), so a sweep that searches ``model`` or ``resize`` never
pairs a 224 px winner with a 28 px partner: the pair differs in the loss and what the sweep
tuned with it, not in the protocol.

Each run appends one row to the confirm Parquet table (:data:`analysis.schema.CONFIRM_SCHEMA`;
a re-run of the same sweep, label and seed replaces its row), written after every run so an
interrupted confirm keeps what finished. The summary gives mean ± std and the 95% Student-t
interval per configuration (:func:`analysis.stats.mean_ci`) and, for the ordinal pair, the
paired bootstrap of Ordinal Loss minus cross-entropy (:func:`analysis.stats.paired_bootstrap`):
the gain is larger than seed noise only when that interval excludes 0. That interval speaks of
this one test split; the summary also resamples its images with the seeds
(:func:`analysis.tables.image_interval`), for each configuration's ACC (and QWK) and for the pair's
difference: whether the result would hold on another draw of patients. Each row keeps the
run's test probabilities, so the summary (and the report) also give the seed ensemble: the
runs of a configuration averaged into one model (:func:`analysis.tables.seed_ensemble`),
what deploying all of them would score; a paper's single number may be either.

With the test-selection audit on (``audit_test``: the sweep's own configs, or ``audit_test=True``)
each run also records the epoch that choosing on the test split would have picked and its
test metrics (``audit_epoch``, ``audit_test_*``); the summary puts "epoch chosen on
validation" (the honest number) beside "epoch chosen on test" (what a paper selecting on test
would report), mean ± std over seeds. Nothing is selected on the audit.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from analysis.collect import _write_atomic, read_sweep
from analysis.schema import AUDIT_COLUMNS, CONFIRM_SCHEMA, read_table
from analysis.reference import table2_gain
from analysis.stats import BootstrapResult, format_pm, mean_ci, power_sentence
from analysis.tables import (decision_audit, family_label, image_interval, model_family, paired_difference, rank_trials,
                             seed_ensemble, with_inputs)
from medvit.config import build_config
from medvit.selection import SCORE_METRICS

__all__ = ["SEED_START", "RUNNER_UP", "Arm", "ConfirmResult", "confirm", "plan_arms", "read_confirm", "audit_lines"]

SEED_START = 1000
# The role of a configuration ranked below the winner, re-run to see whether the winner's lead
# on validation holds on test.
RUNNER_UP = "runner-up"
_METRICS = SCORE_METRICS
_KEY = ("dataset", "sweep", "label", "seed")


@dataclass(frozen=True)
class Arm:
    """One configuration to re-run: its label, the trial it comes from and its TrainConfig values."""

    label: str
    trial_id: str
    values: dict[str, Any]
    note: str
    role: str = "best"  # "best", "ce" (alpha = 0), "ordinal" (alpha > 0) or RUNNER_UP


@dataclass
class ConfirmResult:
    rows: pd.DataFrame  # the rows this call wrote, in run order
    summary: list[str]
    path: Path
    arms: list[Arm]


def _train_values(row: pd.Series) -> dict[str, Any]:
    """TrainConfig fields of a trial, from its config_json (collect stores the full config)."""
    from medvit.config import TrainConfig

    cfg = json.loads(row["config_json"] or "{}")
    values = {k: v for k, v in cfg.items() if k in TrainConfig.model_fields}
    values.setdefault("dataset", row["dataset"])
    if "epochs" not in values and row.get("epochs_max") is not None and not pd.isna(row.get("epochs_max")):
        values["epochs"] = int(row["epochs_max"])
    return values


def _describe(row: pd.Series) -> str:
    text = (f"trial {row['trial_id']}: {row['metric']} {row['best_value']:.4f} "
            f"(validation, epoch {int(row['best_epoch'])})")
    alpha = row.get("alpha")
    return text if alpha is None or pd.isna(alpha) else f"{text}, alpha {float(alpha):g}"


def plan_arms(trials: pd.DataFrame, top: int = 1) -> list[Arm]:
    """The configurations :func:`confirm` re-runs for one sweep's trials (see the module doc):
    the winner, its ordinal partner, and the configurations ranked 2nd to ``top``th."""
    ranked = with_inputs(rank_trials(trials))
    if ranked.empty:
        raise ValueError("no usable trial to confirm (every trial errored or none reported an epoch)")
    arms = _winner_arms(ranked)
    return arms + _runner_up_arms(ranked, top, {arm.trial_id for arm in arms})


def _runner_up_arms(ranked: pd.DataFrame, top: int, confirmed: set[str]) -> list[Arm]:
    """The configurations ranked 2nd to ``top``th (with repeats, each by its best trial), but
    none that another arm already re-runs (the ordinal partner may be one)."""
    # With repeats a configuration's trials follow one another in the ranking, its best first.
    configuration = (ranked["config_group"].fillna(ranked["trial_id"]) if "config_group" in ranked
                     else ranked["trial_id"])
    firsts = ranked[~configuration.duplicated()]
    return [Arm(f"rank {rank}", row["trial_id"], _train_values(row), f"the sweep's rank {rank}, {_describe(row)}",
                RUNNER_UP)
            for rank, (_, row) in enumerate(firsts.iloc[1:top].iterrows(), start=2) if row["trial_id"] not in confirmed]


def _winner_arms(ranked: pd.DataFrame) -> list[Arm]:
    """The best configuration and, on an ordinal dataset, its partner across the Ordinal Loss."""
    from medvit.data import dataset_info
    from medvit.tasks import ORDINAL

    best = ranked.iloc[0]
    values = _train_values(best)
    family = model_family(best["model"])
    label = "best" if family == "medvit" else f"best {family}"
    arms = [Arm(label, best["trial_id"], values, _describe(best), "best")]
    if dataset_info(values["dataset"]).task != ORDINAL:
        return arms
    alpha = float(values.get("alpha") or 0.0)
    # The partner differs from the winner in the loss only as far as the sweep allows: the same
    # model family at the same input (a sweep searching ``resize`` or ``model`` holds others).
    peers = ranked[(ranked["model"].map(model_family) == family) & (ranked["input"] == best["input"])]
    alphas = peers["alpha"].fillna(0.0)
    if alpha > 0:
        arms[0] = Arm(label, best["trial_id"], values, arms[0].note, "ordinal")
        zero = peers[alphas == 0]
        if not zero.empty:
            z = zero.iloc[0]
            arms.append(Arm(f"{label} alpha=0", z["trial_id"], _train_values(z),
                            f"the sweep's best alpha=0 {_describe(z)}", "ce"))
        else:
            arms.append(Arm(f"{label} with alpha=0", best["trial_id"], {**values, "alpha": 0.0},
                            "the best configuration with alpha set to 0 (the sweep has no alpha=0 trial "
                            f"of {family_label(family)} at {best['input']})",
                            "ce"))
    else:
        arms[0] = Arm(label, best["trial_id"], values, arms[0].note, "ce")
        pos = peers[alphas > 0]
        if not pos.empty:
            p = pos.iloc[0]
            arms.append(Arm(f"{label} alpha>0 (alpha={float(p['alpha']):g})", p["trial_id"], _train_values(p),
                            f"the sweep's best alpha>0 {_describe(p)}", "ordinal"))
    return arms


def read_confirm(path: str | os.PathLike) -> pa.Table:
    """A confirm table, conformed to :data:`CONFIRM_SCHEMA` (one-line ValueError when unreadable)."""
    return read_table(path, CONFIRM_SCHEMA, "confirm table")


def _append(path: Path, row: dict[str, Any]) -> None:
    new = pa.Table.from_pylist([row], schema=CONFIRM_SCHEMA)
    if path.exists():
        old = read_confirm(path)
        key = tuple(row[k] for k in _KEY)
        cols = [old.column(k).to_pylist() for k in _KEY]
        keep = [i for i, k in enumerate(zip(*cols)) if k != key]
        new = pa.concat_tables([old.take(pa.array(keep, pa.int64())), new])
    _write_atomic(new, path)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return None if math.isnan(v) else v


def _fmt_ci(values: list[float], digits: int = 4) -> str:
    ci = mean_ci(values)
    if ci.n < 2:
        return f"{ci.mean:.{digits}f} (1 seed: no spread)"
    return (f"{ci.mean:.{digits}f} ± {ci.std:.{digits}f} "
            f"(95% CI [{ci.ci_low:.{digits}f}, {ci.ci_high:.{digits}f}])")


def _finite(values: Any) -> list[float]:
    return [float(v) for v in values if v is not None and not pd.isna(v)]


def audit_lines(rows: pd.DataFrame, label: str) -> list[str]:
    """The test-selection audit of one configuration's runs: the test metrics at the epoch
    chosen on validation beside those at the epoch chosen on test, mean ± std over seeds, and the
    ACC with the decision rule chosen on test (:func:`analysis.tables.decision_audit`); nothing
    when its runs had no audit."""
    if not set(AUDIT_COLUMNS) <= set(rows.columns) or not _finite(rows["audit_test_acc"]):
        return []
    parts = []
    for m in _METRICS:
        honest, oracle = _finite(rows[f"test_{m}"]), _finite(rows[f"audit_test_{m}"])
        if honest and oracle:
            on_val, on_test = mean_ci(honest), mean_ci(oracle)
            parts.append(f"{m.upper()} {format_pm(on_val.mean, on_val.std, 4)} on validation, "
                         f"{format_pm(on_test.mean, on_test.std, 4)} on test")
    rule_accs = decision_audit(rows)
    if rule_accs:
        on_test = mean_ci(rule_accs)
        parts.append(f"ACC {format_pm(on_test.mean, on_test.std, 4)} with the decision rule (threshold or class "
                     "offsets) chosen on test (at the epoch chosen on validation)")
    epochs = f"epochs {', '.join(map(str, rows['selected_epoch']))} on validation, " \
             f"{', '.join(map(str, rows['audit_epoch']))} on test"
    return [f"{label}, audit over {len(rows)} seeds, test metrics with the epoch chosen on validation "
            f"(the honest number) beside the epoch chosen on test (what selecting on test would report; "
            f"never a result): " + "; ".join(parts) + f" ({epochs})"]


def _audit_row(audit: dict | None) -> dict[str, Any]:
    """The confirm row's audit columns: the epoch chosen on test and its test metrics."""
    if audit is None or audit["test_selected"] is None:
        return {"audit_epoch": None, **dict.fromkeys(AUDIT_COLUMNS)}
    return {"audit_epoch": audit["test_selected_epoch"],
            **{f"audit_test_{m}": _num(audit["test_selected"].get(m)) for m in _METRICS}}


def _verdict(res: BootstrapResult, noise: str) -> str:
    """What a paired interval of Ordinal Loss minus cross-entropy says against ``noise`` (what its
    resamples vary)."""
    if res.ci_low > 0:
        return f"the Ordinal Loss gain is larger than {noise} (the interval excludes 0)"
    if res.ci_high < 0:
        return f"the Ordinal Loss is worse by more than {noise} (the interval excludes 0)"
    return f"the difference is not larger than {noise} (the interval includes 0)"


def _image_sentence(res: BootstrapResult | None) -> str:
    """The paired difference over seeds and test images (:func:`image_interval`); empty without one."""
    if res is None:
        return ""
    return (f" Resampling the test images too (the split is one draw of patients): 95% CI "
            f"[{res.ci_low:+.4f}, {res.ci_high:+.4f}] ({res.n_resamples} resamples): "
            f"{_verdict(res, 'seed and test-image noise')}.")


def _summary(rows: pd.DataFrame, arms: list[Arm], head: str) -> list[str]:
    lines = [head]
    for arm in arms:
        g = rows[rows["label"] == arm.label]
        parts = []
        for m in _METRICS:
            vals = _finite(g[f"test_{m}"])
            if vals:
                parts.append(f"{m.upper()} {_fmt_ci(vals)}")
        lines.append(f"{arm.label} [{arm.note}], test over {len(g)} seeds: " + "; ".join(parts))
        images = [f"{m.upper()} [{res.ci_low:.4f}, {res.ci_high:.4f}]" for m in ("acc", "qwk")
                  if (res := image_interval(g, metric=m)) is not None]
        if images:
            lines.append(f"{arm.label}, 95% interval over seeds and test images (another draw of "
                         f"{len(g['test_labels'].iloc[0])} test images, not only this split's): " + "; ".join(images))
        ensemble = seed_ensemble(g)
        if ensemble:
            lines.append(f"{arm.label}, seed ensemble (the {ensemble['n']} runs' test probabilities averaged into "
                         "one model; nothing chosen): " + "; ".join(
                             f"{m.upper()} {ensemble[m]:.4f}" for m in _METRICS if m in ensemble))
        elif len(g) > 1 and arm.values.get("subset") is not None:
            lines.append(f"{arm.label}: no seed ensemble, each run was tested on its own subset of the test split "
                         f"(subset {arm.values['subset']} is drawn per seed)")
    lines += [line for arm in arms for line in audit_lines(rows[rows["label"] == arm.label], arm.label)]
    lines += _runner_up_lines(rows, arms)
    ordinal = next((a for a in arms if a.role == "ordinal"), None)
    ce = next((a for a in arms if a.role == "ce"), None)
    if ordinal is None or ce is None:
        if arms[0].role in ("ordinal", "ce"):
            lines.append("No Ordinal Loss comparison: the sweep has no trial with alpha > 0.")
        return lines
    alpha = float(ordinal.values.get("alpha") or 0.0)
    for m in ("acc", "qwk"):
        name = f"Ordinal Loss (alpha={alpha:g}, '{ordinal.label}') minus cross-entropy ('{ce.label}'), test {m.upper()}"
        pair = paired_difference(rows[rows["label"] == ordinal.label], rows[rows["label"] == ce.label], m)
        res = pair.over_seeds
        if res is None:
            lines.append(f"{name}: {pair.diffs[0]:+.4f} on 1 seed; no bootstrap interval with one seed, "
                         "so nothing is known about seed noise (run --seeds 5)." if pair.seeds else f"{name}: no paired runs.")
            continue
        gain = table2_gain(alpha) if m == "acc" and rows["dataset"].iloc[0] == "retinamnist" else None
        power = power_sentence(pair.diffs, {} if gain is None else {f"the paper's Table 2 gain at alpha {alpha:g}": gain})
        lines.append(f"{name}, paired over {res.n} seeds: {res.mean_diff:+.4f}, 95% paired bootstrap CI "
                     f"[{res.ci_low:+.4f}, {res.ci_high:+.4f}] ({res.n_resamples} resamples): "
                     f"{_verdict(res, 'seed noise')}.{_coarse(res)}"
                     + _image_sentence(pair.over_seeds_and_images) + (f" {power}" if power else ""))
    return lines


def _coarse(res: BootstrapResult) -> str:
    return " With fewer than 5 seeds the bootstrap is coarse." if res.n < 5 else ""


def _runner_up_lines(rows: pd.DataFrame, arms: list[Arm]) -> list[str]:
    """Each runner-up minus the winner, test ACC paired over the seeds and then over seeds and test
    images: whether the winner's lead on validation holds on test, or the sweep's choice between
    them was a draw."""
    winner = arms[0]
    lines = []
    for arm in (arm for arm in arms if arm.role == RUNNER_UP):
        name = f"'{arm.label}' minus the winner '{winner.label}', test ACC"
        pair = paired_difference(rows[rows["label"] == arm.label], rows[rows["label"] == winner.label])
        res, images = pair.over_seeds, pair.over_seeds_and_images
        if res is None:
            lines.append(f"{name}: no interval with {len(pair.seeds)} paired seed(s) (run --seeds 5).")
            continue
        lines.append(f"{name}, paired over {res.n} seeds: {res.mean_diff:+.4f}, 95% paired bootstrap CI "
                     f"[{res.ci_low:+.4f}, {res.ci_high:+.4f}]: {_lead_verdict(res, 'seed noise')}.{_coarse(res)}"
                     + ("" if images is None else
                        f" Over seeds and test images: [{images.ci_low:+.4f}, {images.ci_high:+.4f}]: "
                        f"{_lead_verdict(images, 'seed and test-image noise')}."))
    return lines


def _lead_verdict(res: BootstrapResult, noise: str) -> str:
    """What a paired interval of a runner-up minus the winner says against ``noise``."""
    if res.ci_high < 0:
        return f"the winner's lead on validation holds on test beyond {noise} (the interval excludes 0)"
    if res.ci_low > 0:
        return f"the runner-up tests better beyond {noise} (the interval excludes 0): validation chose the worse"
    return f"the two cannot be told apart on test within {noise} (the interval includes 0)"


def _arm_values(arm: Arm, epochs: int | None, data_root, device: str | None, audit_test: bool | None) -> dict:
    """An arm's TrainConfig values with the caller's overrides (None: the trial's own)."""
    overrides = {"epochs": epochs, "data_root": None if data_root is None else str(data_root), "device": device,
                 "audit_test": audit_test}
    return {**arm.values, **{key: value for key, value in overrides.items() if value is not None}}


def _score_columns(scores: Any, labels: Any) -> dict[str, list]:
    """A run's test probabilities and the split's labels, a list per image, for seed ensembles."""
    n = len(labels)
    return {"test_scores": np.asarray(scores, dtype=np.float32).reshape(n, -1).tolist(),
            "test_labels": np.asarray(labels).astype(np.int16).reshape(n, -1).tolist()}


def _config_json(config) -> str:
    return json.dumps(config.model_dump(), sort_keys=True)


def _earlier_runs(out: Path) -> dict[tuple, dict[str, Any]]:
    """The runs an earlier confirm wrote into ``out``, by dataset, sweep, label, seed and the
    whole config: a confirm cut short (Ctrl-C, a crash, a full disk) goes on where it stopped,
    and a run of another config (other epochs, device, data root) is trained again."""
    if not out.exists():
        return {}
    return {(*(row[k] for k in _KEY), row["config_json"]): row for row in read_confirm(out).to_pylist()}


def _run_once(config, arm: Arm, sweep: str, cache: dict[tuple, Any]) -> dict[str, Any]:
    """Train one arm at one seed (``config`` holds it): its confirm row. ``cache`` keeps each
    dataset loaded once across runs."""
    from medvit.data import load_dataset
    from medvit.train import run_data, train

    key = (config.dataset, config.data_root, config.img_size)
    if key not in cache:
        cache[key] = load_dataset(config.dataset, root=config.data_root, size=config.img_size)
    data = run_data(config, cache[key])
    start = time.perf_counter()
    result = train(config, data)
    return {
        "dataset": config.dataset, "sweep": sweep, "label": arm.label, "seed": config.seed,
        "trial_id": arm.trial_id, "config_json": _config_json(config),
        **{f"test_{m}": _num(result["test"].get(m)) for m in _METRICS},
        **{f"val_{m}": _num(result["val"].get(m)) for m in _METRICS},
        "selected_epoch": int(result["selected_epoch"]), **_audit_row(result.get("audit")),
        **_score_columns(result["test_scores"], data.labels["test"]),
        "epochs": config.epochs,
        "wall_time_s": time.perf_counter() - start,
        "environment_json": json.dumps(result["environment"], sort_keys=True), "created_at": datetime.now(timezone.utc),
    }


def _plan_line(sweep: str, arms: list[Arm], configs: dict[str, dict], seed_list: list[int]) -> str:
    n_epochs = sorted({v.get("epochs") for v in configs.values()})
    audited = any(v.get("audit_test") for v in configs.values())
    test = ("test split also scored at every epoch for the audit, which nothing selects on" if audited
            else "test split evaluated once per run")
    return (f"confirm {sweep} ({arms[0].values['dataset']}): {len(arms)} configuration(s) x {len(seed_list)} seeds "
            f"({seed_list[0]}..{seed_list[-1]}, fresh: not the sweep's seeds; the same seeds for every configuration, "
            f"so runs are paired), {'/'.join(map(str, n_epochs))} epoch(s) each; epoch selected on validation, {test}")


def confirm(sweep_dir: str | os.PathLike, seeds: int = 5, out: str | os.PathLike = "confirm.parquet",
            data_root: str | os.PathLike | None = None, epochs: int | None = None, *,
            seed_start: int = SEED_START, device: str | None = None, audit_test: bool | None = None,
            top: int = 1, log: Callable[[str], None] | None = print) -> ConfirmResult:
    """Retrain a sweep's best configuration (and, for ordinal datasets, its alpha = 0 partner;
    with ``top`` > 1, the configurations ranked 2nd to ``top``th too) with seeds
    ``seed_start .. seed_start + seeds - 1`` and append the runs to ``out``.

    Args:
        sweep_dir: the sweep folder ``S/N``.
        seeds: number of seeds per configuration (>= 1).
        out: the confirm Parquet file (created, or appended to).
        data_root: folder of the MedMNIST files (default: the config's, else ``$MEDMNIST_ROOT``).
        epochs: train this many epochs instead of the config's (quick checks).
        seed_start: first seed.
        device: ``auto``, ``cpu`` or ``cuda`` instead of the config's own device.
        audit_test: the test-selection audit on (True) or off (False) instead of the config's own.
        top: also re-run the configurations ranked 2nd to ``top``th (labels ``rank 2``, ...), each
            paired with the winner in the summary; one the partner already re-runs is not run twice.
        log: called with one progress line per run and each summary line (None: silent).

    Raises:
        ValueError: not a sweep folder, no usable trial, seeds < 1, epochs < 1, top < 1, or ``out``
            exists but is not a confirm table (one line each).
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds: need at least 1 seed, got {seeds!r}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top: need at least 1 (the winner), got {top!r}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs: need at least 1 epoch, got {epochs!r}")
    out = Path(out)
    if out.exists():
        read_confirm(out)  # fail before training when the file is not a confirm table
    say = log or (lambda _line: None)
    trials = read_sweep(sweep_dir).to_pandas()
    arms = plan_arms(trials, top)
    sweep = str(trials["sweep"].iloc[0])
    seed_list = list(range(seed_start, seed_start + seeds))
    configs = {arm.label: _arm_values(arm, epochs, data_root, device, audit_test) for arm in arms}
    say(_plan_line(sweep, arms, configs, seed_list))
    for arm in arms:
        say(f"config {arm.label}: {arm.note}")
    cache: dict[tuple, Any] = {}
    earlier = _earlier_runs(out)
    written = []
    for seed in seed_list:
        for arm in arms:
            config = build_config({**configs[arm.label], "seed": seed})
            row = earlier.get((config.dataset, sweep, arm.label, seed, _config_json(config)))
            kept = row is not None
            if not kept:
                row = _run_once(config, arm, sweep, cache)
                _append(out, row)
            written.append(row)
            test = "  ".join(f"{m} {row[f'test_{m}']:.4f}" for m in _METRICS if row[f"test_{m}"] is not None)
            say(f"run {len(written)}/{len(arms) * seeds}  {arm.label}  seed {seed}: test {test}  "
                f"(selected epoch {row['selected_epoch']}/{config.epochs} by {config.select_metric}, "
                f"{row['wall_time_s']:.1f}s{f', kept from {out}' if kept else ''})")
    rows = pd.DataFrame(written)
    summary = _summary(rows, arms, f"summary of {sweep}: {seeds} seeds per configuration, written to {out}")
    for line in summary:
        say(line)
    return ConfirmResult(rows=rows, summary=summary, path=out, arms=arms)
