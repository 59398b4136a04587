"""Figures for the report (PNG, matplotlib's Agg backend, no pyplot global state).

Every function writes one PNG and returns the DataFrame it drew, so tests and the report can
check the numbers without reading pixels:

* :func:`heatmap_alpha_margin` -- validation metric over alpha x margin bins of one sweep.
* :func:`heatmap_model_augment` -- validation metric over model (depth) x augmentation preset.
* :func:`heatmap_vs_paper` -- datasets x published methods, ours minus paper (AUC and ACC).
* :func:`learning_curves` -- validation curves of the top-k trials, and where the scheduler
  (ASHA) stopped the others.

Cells of a heatmap show the mean over the trials in the cell and their count ``n``; only
cells that hold a trial are drawn. Errored trials are left out. A trial's number in a heatmap
is its selection score (``best_value``: the sweep's metric averaged over the trailing
``select_window`` epochs, at its best), named so; the curves show the metric of each epoch.

Size: the report shows a figure at its size in inches (96 CSS px per inch, from the PNG's DPI:
:class:`analysis.render.Image`); every figure is at most 6 in wide, drawn at 150 DPI, with
text of 10.5 pt or more. On a 390-px phone screen a 6-in figure is scaled to 358/576 = 0.62 of
that, where 10.5 pt is still 8.7 CSS px and the 12-pt labels 10 px.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from analysis import reference as ref
from analysis.collect import float_or_none
from analysis.tables import (
    load_results_frame,
    model_family,
    family_label,
    ours_test_metrics,
    rank_trials,
    score_name,
    selection_metric,
)

__all__ = [
    "heatmap_alpha_margin",
    "heatmap_model_augment",
    "heatmap_vs_paper",
    "learning_curves",
    "write_figures",
    "AUGMENT_ORDER",
]

AUGMENT_ORDER = ("off", "light", "medium", "strong")
_DPI = 150
_MAX_WIDTH_IN = 6.0
_STYLE = {"font.size": 12, "axes.titlesize": 12, "axes.labelsize": 12, "xtick.labelsize": 11,
          "ytick.labelsize": 11, "legend.fontsize": 10.5, "figure.titlesize": 13}
# Every public figure function draws under this style (rcParams are read when text is made).
_styled = matplotlib.rc_context(_STYLE)


def _figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(min(width_in, _MAX_WIDTH_IN), height_in), dpi=_DPI, layout="constrained")


def _ink(im: Any, value: float) -> str:
    """Black or white, whichever reads on the colour ``value`` is painted in."""
    r, g, b, _ = im.cmap(im.norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


# --------------------------------------------------------------------------- selection helpers


def _select(df: pd.DataFrame, sweep: str | None, dataset: str | None) -> tuple[pd.DataFrame, str, str, str]:
    """Non-errored trials of one sweep/dataset with a value, on one selection metric."""
    if sweep is not None:
        df = df[df["sweep"] == sweep]
    if dataset is not None:
        df = df[df["dataset"].str.lower() == dataset.lower()]
    df = df[(df["stop_reason"] != "errored") & df["best_value"].notna()]
    sel = selection_metric(df)
    if sel is None:
        raise ValueError(
            f"no usable trials for sweep={sweep!r} dataset={dataset!r} (all errored or none collected)"
        )
    metric, mode = sel
    df = df[(df["metric"] == metric) & (df["mode"] == mode)]
    scope = sweep or (ref.display_name(dataset) if dataset else "all sweeps")
    return df, metric, mode, scope


def _fmt_level(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def _margin_levels(values: pd.Series, max_levels: int = 4) -> tuple[pd.Series, list]:
    """Margin levels: the raw values when few, else quantile bins (about equally many trials
    each, so a handful of continuously sampled margins fills a few rows instead of many
    empty ones), each labelled by the range of the margins actually in it."""
    v = values.astype(float)
    if v.nunique() <= max_levels:
        return v, sorted(v.dropna().unique())
    codes = pd.qcut(v, max_levels - 1, labels=False, duplicates="drop")
    label = {c: f"{g.min():.2g}–{g.max():.2g}" for c, g in v.groupby(codes)}
    return codes.map(label), [label[c] for c in sorted(label)]


def _cell_table(df: pd.DataFrame, rkey: pd.Series, ckey: pd.Series) -> pd.DataFrame:
    """Mean, std and count of ``best_value`` per (row, col) cell that holds a trial."""
    g = pd.DataFrame({"row": rkey.values, "col": ckey.values, "v": df["best_value"].values})
    agg = g.groupby(["row", "col"], dropna=False, sort=False)["v"].agg(["mean", "std", "count"]).reset_index()
    return pd.DataFrame(dict(row=agg["row"], col=agg["col"], mean=agg["mean"].astype(float),
                             std=agg["std"].where(agg["count"] > 1).astype(float), n=agg["count"].astype(int)))


def _cell_norm(cells: pd.DataFrame):
    """One colour scale for every panel of a figure."""
    lo, hi = float(cells["mean"].min()), float(cells["mean"].max())
    return Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-9)


def _paint_cells(ax, cells: pd.DataFrame, rows: list, cols: list, cmap, norm) -> Any:
    """Draw the cells that hold trials (mean and n); cells without a trial stay blank."""
    mat = np.full((len(rows), len(cols)), np.nan)
    for rec in cells.itertuples():
        mat[rows.index(rec.row), cols.index(rec.col)] = rec.mean
    im = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, norm=norm, aspect="auto")
    for rec in cells.itertuples():
        ax.text(cols.index(rec.col), rows.index(rec.row), f"{rec.mean:.3f}\nn={rec.n}", ha="center", va="center",
                fontsize=10.5, color=_ink(im, rec.mean))
    rotate = len(cols) > 4
    ax.set_xticks(range(len(cols)), [_fmt_level(c) for c in cols], rotation=30 if rotate else 0,
                  ha="right" if rotate else "center")
    ax.set_yticks(range(len(rows)), [_fmt_level(r) for r in rows])
    return im


def _save(fig: Figure, out_png: str | os.PathLike) -> None:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, format="png")


# --------------------------------------------------------------------------- public figures


@_styled
def heatmap_alpha_margin(results: Any, out_png: str | os.PathLike, sweep: str | None = None,
                         dataset: str | None = None) -> pd.DataFrame:
    """Mean validation metric (best epoch) per alpha x margin cell of one sweep or dataset.

    The margin only acts when alpha > 0, so alpha = 0 (plain cross-entropy) trials form one
    cell of their own, in a panel without a margin axis. Alpha is binned to the nearest 0.1;
    margin is used as is when it has at most 4 distinct values, else cut into 3 quantile bins.
    Only cells that hold a trial are drawn.

    Returns:
        One row per cell with trials: ``row`` (margin level; None for alpha = 0), ``col``
        (alpha bin), ``mean``, ``std`` (NaN for a single trial), ``n``.
    """
    df, metric, mode, scope = _select(load_results_frame(results), sweep, dataset)
    df = df[df["alpha"].notna()]
    alpha = (df["alpha"].astype(float) * 10).round() / 10
    ce = df[alpha == 0]
    ordinal = df[(alpha > 0) & df["margin"].notna()]
    parts, rows = [], []
    if len(ce):
        parts.append(_cell_table(ce, pd.Series([None] * len(ce)), pd.Series([0.0] * len(ce))))
    if len(ordinal):
        margin, rows = _margin_levels(ordinal["margin"])
        parts.append(_cell_table(ordinal, margin, alpha[ordinal.index]))
    if not parts:
        raise ValueError(f"no trials with an alpha for sweep={sweep!r} dataset={dataset!r}")
    cells = pd.concat(parts, ignore_index=True)
    mcells = cells[cells["row"].notna()]
    cols = sorted(mcells["col"].unique())
    panels = ([("ce", 1)] if len(ce) else []) + ([("ordinal", len(cols))] if len(ordinal) else [])
    fig = _figure(0.62 * sum(n for _, n in panels) + 2.6, max(3.6, 0.75 * max(len(rows), 1) + 2.3))
    axes = fig.subplots(1, len(panels), width_ratios=[n for _, n in panels], squeeze=False)[0]
    cmap = _cmap("viridis" if mode == "max" else "viridis_r", bad="white")
    norm = _cell_norm(cells)
    for ax, (kind, _) in zip(axes, panels):
        if kind == "ce":
            im = _paint_cells(ax, cells[cells["row"].isna()].assign(row="any"), ["any"], [0.0], cmap, norm)
            ax.set_xlabel("α = 0\n(cross-\nentropy,\nno margin)")
        else:
            im = _paint_cells(ax, mcells, rows, cols, cmap, norm)
            ax.set_xlabel("α, Ordinal Loss weight\n(binned to 0.1)")
            ax.set_ylabel("margin (α > 0 only)")
    cb = fig.colorbar(im, ax=list(axes))
    cb.set_label(_cbar(metric, mode))
    fig.suptitle(f"{scope}:\n{score_name(metric)} by α and margin")
    _save(fig, out_png)
    return cells


def _cbar(metric: str, mode: str) -> str:
    better = "higher" if mode == "max" else "lower"
    return f"{score_name(metric)}\nmean over trials, {better} is better"


@_styled
def heatmap_model_augment(results: Any, out_png: str | os.PathLike, sweep: str | None = None,
                          dataset: str | None = None) -> pd.DataFrame:
    """Mean validation metric (best epoch) per model (depth) x augmentation preset cell.

    Returns one row per cell with trials: ``row`` (model), ``col`` (augment preset), ``mean``,
    ``std``, ``n``.
    """
    df, metric, mode, scope = _select(load_results_frame(results), sweep, dataset)
    df = df[df["model"].notna() & df["augment"].notna()]
    models = sorted(df["model"].unique(), key=_model_sort_key)
    augs = [x for x in AUGMENT_ORDER if x in set(df["augment"])] + sorted(set(df["augment"]) - set(AUGMENT_ORDER))
    cells = _cell_table(df, df["model"], df["augment"])
    fig = _figure(0.9 * len(augs) + 3.4, max(3.6, 0.75 * len(models) + 2.2))
    ax = fig.add_subplot()
    im = _paint_cells(ax, cells, models, augs, _cmap("viridis" if mode == "max" else "viridis_r", bad="white"),
                      _cell_norm(cells))
    fig.colorbar(im, ax=ax).set_label(_cbar(metric, mode))
    ax.set_xlabel("augmentation preset\n(off < light < medium < strong)")
    ax.set_ylabel("model (depth)")
    ax.set_title(f"{scope}:\n{score_name(metric)} by model and augmentation")
    _save(fig, out_png)
    return cells


def _ok(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _cmap(name: str, bad: str = "#d9d9d9"):
    return matplotlib.colormaps[name].with_extremes(bad=bad)


def _model_sort_key(name: str) -> tuple:
    depth = {"tiny": 0, "small": 1, "base": 2, "large": 3}
    parts = str(name).split("_")
    return (model_family(name), next((depth[p] for p in parts if p in depth), 9), str(name))


@_styled
def heatmap_vs_paper(results: Any, out_png: str | os.PathLike, confirm: Any = None,
                     family: str = "medvit") -> pd.DataFrame:
    """Published methods x (dataset, AUC / ACC): ours (test split, best-by-validation trial)
    minus paper. Only datasets we have a test number for are columns.

    Returns:
        ``dataset, input, method, metric, ours, paper, diff`` for every dataset x method x metric
        (``diff`` NaN where either side is missing).
    """
    data = _vs_paper_data(results, confirm, family)
    methods = list(ref.TABLE1_METHODS)
    datasets = [d for d in ref.ALL_DATASETS if d in set(data["dataset"])] + sorted(
        set(data["dataset"]) - set(ref.ALL_DATASETS))
    datasets = datasets or ["(no test results yet)"]
    columns = [(ds, metric) for ds in datasets for metric in ("auc", "acc")]
    fig = _figure(3.0 + 0.8 * len(columns), 2.4 + 0.42 * len(methods))
    ax = fig.add_subplot()
    finite = data["diff"].dropna()
    lim = float(finite.abs().max()) if len(finite) else 0.05
    im = _paint_differences(ax, data, methods, columns, TwoSlopeNorm(vmin=-(lim or 0.01), vcenter=0.0,
                                                                     vmax=lim or 0.01))
    top = ax.secondary_xaxis("top")  # each dataset's name over its AUC and ACC columns
    top.set_xticks([2 * k + 0.5 for k in range(len(datasets))], [ref.display_name(d) for d in datasets])
    top.tick_params(length=0)
    for k in range(1, len(datasets)):
        ax.axvline(2 * k - 0.5, color="white", linewidth=4)
    ax.set_xlabel("test metric; grey hatched: no value on one side")
    fig.colorbar(im, ax=ax).set_label("ours − paper (0–1 scale)\n> 0: ours better")
    inputs = ", ".join(dict.fromkeys(data["input"]))
    title = (f"medsweep {family_label(family)} (best by validation" + (f"; {inputs}" if inputs else "")
             + ")\nminus published results, test split")
    if not len(finite):
        title += "\n(no test-split results yet: run the evaluation step)"
    fig.suptitle(title)
    _save(fig, out_png)
    return data


def _vs_paper_data(results: Any, confirm: Any, family: str) -> pd.DataFrame:
    """Our test AUC/ACC of one family (the first present when it is absent) minus each published
    method's; where the family was trained at several inputs, the one best by validation."""
    ours = ours_test_metrics(results, confirm)
    if not ours.empty:
        fams = list(ours["family"].unique())
        ours = ours[ours["family"] == (family if family in fams else fams[0])]
        ours = ours.assign(rank=[-v if m == "max" else v for v, m in zip(ours["best_value"], ours["mode"])])
        ours = ours.sort_values("rank", kind="stable").drop_duplicates("dataset")
    recs = []
    for o in ours.itertuples():
        ds = str(o.dataset).lower()
        for metric in ("auc", "acc"):
            mine = float_or_none(getattr(o, f"{metric}_mean"))
            for method in ref.TABLE1_METHODS:
                published = ref.table1_value(method, ds, metric)
                paper = published.value if published else None
                diff = mine - paper if (mine is not None and paper is not None) else math.nan
                recs.append(dict(dataset=ds, input=o.input, method=method, metric=metric, ours=mine, paper=paper,
                                 diff=diff))
    return pd.DataFrame(recs, columns=["dataset", "input", "method", "metric", "ours", "paper", "diff"])


def _paint_differences(ax, data: pd.DataFrame, methods: list[str], columns: list[tuple[str, str]], norm) -> Any:
    """A method per row, a (dataset, metric) per column; hatched where a side has no value."""
    mat = np.full((len(methods), len(columns)), np.nan)
    for r in data.itertuples():
        mat[methods.index(r.method), columns.index((r.dataset, r.metric))] = r.diff
    im = ax.imshow(np.ma.masked_invalid(mat), cmap=_cmap("RdBu"), norm=norm, aspect="auto")
    for i, j in np.ndindex(mat.shape):
        if np.isfinite(mat[i, j]):
            ax.text(j, i, f"{mat[i, j]:+.3f}", ha="center", va="center", fontsize=10.5, color=_ink(im, mat[i, j]))
        else:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#9a9a9a",
                                   linewidth=0))
    ax.set_xticks(range(len(columns)), [metric.upper() for _, metric in columns])
    ax.set_yticks(range(len(methods)), methods)
    return im


@_styled
def learning_curves(results: Any, out_png: str | os.PathLike, sweep: str | None = None,
                    dataset: str | None = None, top_k: int = 5) -> pd.DataFrame:
    """Validation metric per epoch: the ``top_k`` trials in colour, the others in grey with a
    marker at the epoch where the scheduler stopped them (early_stopped trials).

    Returns:
        Long frame ``trial_id, epoch, value, group ('top' or 'other'), rank, stop_reason,
        stop_marker`` (True at the last epoch of an early-stopped trial).
    """
    df, metric, mode, scope = _select(load_results_frame(results), sweep, dataset)
    df = rank_trials(df)
    df = df.assign(rank=range(1, len(df) + 1))
    recs = []
    for t in df.itertuples():
        ep = list(t.history_epoch)
        vals = list(t.history_val_metric)
        for k, (e, v) in enumerate(zip(ep, vals)):
            recs.append(dict(trial_id=t.trial_id, epoch=int(e), value=v,
                             group="top" if t.rank <= top_k else "other", rank=t.rank,
                             stop_reason=t.stop_reason,
                             stop_marker=bool(t.stop_reason == "early_stopped" and k == len(ep) - 1)))
    data = pd.DataFrame(recs, columns=["trial_id", "epoch", "value", "group", "rank", "stop_reason", "stop_marker"])

    fig = _figure(_MAX_WIDTH_IN, 4.0 + 0.25 * (min(top_k, len(df)) + 2))
    ax = fig.add_subplot()
    others = data[data["group"] == "other"]
    for tid, g in others.groupby("trial_id", sort=False):
        ax.plot(g["epoch"], g["value"], color="#b0b0b0", linewidth=0.9, zorder=1)
    stops = data[data["stop_marker"]]
    if len(stops):
        ax.scatter(stops["epoch"], stops["value"], marker="x", color="#d62728", s=28, zorder=3,
                   label=f"stopped early by the scheduler ({len(stops)} trials)")
    top = df[df["rank"] <= top_k]
    for t in top.itertuples():
        g = data[data["trial_id"] == t.trial_id]
        desc = ", ".join(x for x in (
            t.model, f"α={t.alpha:g}" if _ok(t.alpha) else None,
            f"m={t.margin:g}" if _ok(t.margin) else None,
            f"lr={t.lr:.1g}" if _ok(t.lr) else None) if x)
        ax.plot(g["epoch"], g["value"], marker="o", markersize=3, linewidth=1.8, zorder=2,
                label=f"#{t.rank} {t.trial_id} ({desc})")
    if len(others):
        ax.plot([], [], color="#b0b0b0", label=f"other trials ({others['trial_id'].nunique()})")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{metric} (validation split)")
    ax.set_title(f"{scope}: {metric} per epoch,\ntop {min(top_k, len(df))} of {len(df)} trials")
    ax.grid(True, alpha=0.3)
    fig.legend(loc="outside lower center")  # below the plot: inside, it would hide curves
    _save(fig, out_png)
    return data


# --------------------------------------------------------------------------- all figures


def write_figures(results: Any, out_dir: str | os.PathLike, confirm: Any = None, top_k: int = 5
                  ) -> dict[str, tuple[Path, pd.DataFrame, str]]:
    """Every figure that applies to the results, as ``{name: (png, data, caption)}``.

    Per sweep: learning curves; alpha x margin when the sweep varies alpha or margin;
    model x augment when it varies model or augment. Once, when at least two datasets have
    test results: ours minus paper (for one dataset it would be a single row, mostly empty).
    """
    df = load_results_frame(results)
    out_dir = Path(out_dir)
    figs: dict[str, tuple[Path, pd.DataFrame, str]] = {}
    for sweep in sorted(df["sweep"].unique()):
        sub = df[(df["sweep"] == sweep) & (df["stop_reason"] != "errored") & df["best_value"].notna()]
        if sub.empty:
            continue
        name = f"curves_{sweep}"
        p = out_dir / f"{name}.png"
        figs[name] = (p, learning_curves(df, p, sweep=sweep, top_k=top_k),
                      f"Sweep {sweep}: validation curves of the top {top_k} trials; red x = stopped early.")
        if sub["alpha"].nunique() > 1 or sub["margin"].nunique() > 1:
            name = f"alpha_margin_{sweep}"
            p = out_dir / f"{name}.png"
            figs[name] = (p, heatmap_alpha_margin(df, p, sweep=sweep),
                          f"Sweep {sweep}: mean selection score (validation) per alpha x margin cell (n = trials); "
                          "alpha = 0 trials on the left, where the margin has no effect.")
        if sub["model"].nunique() > 1 or sub["augment"].nunique() > 1:
            name = f"model_augment_{sweep}"
            p = out_dir / f"{name}.png"
            figs[name] = (p, heatmap_model_augment(df, p, sweep=sweep),
                          f"Sweep {sweep}: mean selection score (validation) per model x augmentation cell.")
    ours = ours_test_metrics(df, confirm)
    if not ours.empty and ours.loc[ours["acc_mean"].notna() | ours["auc_mean"].notna(), "dataset"].nunique() >= 2:
        p = out_dir / "ours_minus_paper.png"
        figs["ours_minus_paper"] = (p, heatmap_vs_paper(df, p, confirm=confirm),
                                    "Test metrics of our best-by-validation MedViT minus each published method.")
    return figs
