"""The sweep report: one self-contained HTML page and a Markdown twin.

``write_report(results_parquet, out_dir)`` writes into ``out_dir``:

* ``report.html`` -- a single file: figures embedded as base64 PNG, inline CSS, no scripts,
  no external resources (it opens offline and can be mailed around);
* ``report.md`` -- the same content, figures linked from ``figures/``;
* ``table1.md/.csv``, ``table1_long.csv``, ``table2.md/.csv``, ``best_<dataset>.md/.csv``
  (see :mod:`analysis.tables`), ``figures/*.png`` (see :mod:`analysis.figures`);
* ``best_<dataset>.yaml`` -- the best configuration per dataset, with TrainConfig keys.
"""

from __future__ import annotations

import base64
import html
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import yaml

from analysis import reference as ref
from analysis.schema import CONFIG_COLUMNS
from analysis.stats import binomial_se, format_pm, mean_ci, paired_bootstrap
from analysis.tables import (
    TableOut,
    best_config,
    best_trials,
    load_confirm_frame,
    load_results_frame,
    ours_test_metrics,
    write_tables,
)

__all__ = ["write_report", "test_split_size"]


# --------------------------------------------------------------------------- blocks


@dataclass
class _Block:
    kind: str  # h, p, ul, table, img, code
    payload: Any
    extra: Any = None


def _h(level: int, text: str) -> _Block:
    return _Block("h", text, level)


def _p(text: str) -> _Block:
    return _Block("p", text)


def _ul(items: Sequence[str]) -> _Block:
    return _Block("ul", list(items))


def _render_md(blocks: list[_Block], title: str) -> str:
    out = [f"# {title}", ""]
    for b in blocks:
        if b.kind == "h":
            out += ["#" * b.extra + " " + b.payload, ""]
        elif b.kind == "p":
            out += [b.payload, ""]
        elif b.kind == "ul":
            out += [f"- {x}" for x in b.payload] + [""]
        elif b.kind == "table":
            t: TableOut = b.payload
            parts = b.extra or [t]
            for part in parts:
                out += [part.markdown_table(), ""]
            out += [f"- {n}" for n in t.notes] + [""]
        elif b.kind == "img":
            png, caption, rel = b.payload
            out += [f"![{caption}]({rel})", "", f"*{caption}*", ""]
        elif b.kind == "code":
            lang, text = b.payload
            out += [f"```{lang}", text.rstrip("\n"), "```", ""]
    return "\n".join(out)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#1d1d1d;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.3rem}
h2{border-bottom:1px solid #bbb;padding-bottom:.2rem;margin-top:2.2rem}
.tablewrap{overflow-x:auto;margin:.6rem 0}
table{border-collapse:collapse;font-size:.82rem}
th,td{border:1px solid #ccc;padding:.25rem .45rem;text-align:right;white-space:nowrap}
th{background:#f0f0f0;text-align:center}
td:first-child{text-align:left}
td.missing{color:#999;text-align:center}
tbody tr:nth-child(even){background:#fafafa}
ul.notes{font-size:.82rem;color:#444}
figure{margin:1rem 0}
figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.85rem;color:#444}
pre{background:#f6f8fa;border:1px solid #ddd;padding:.7rem;overflow-x:auto;font-size:.85rem}
.meta{color:#666;font-size:.85rem}
"""


def _render_html(blocks: list[_Block], title: str, subtitle: str) -> str:
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{html.escape(subtitle)}</p>']
    for b in blocks:
        if b.kind == "h":
            body.append(f"<h{b.extra}>{html.escape(b.payload)}</h{b.extra}>")
        elif b.kind == "p":
            body.append(f"<p>{html.escape(b.payload)}</p>")
        elif b.kind == "ul":
            body.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b.payload) + "</ul>")
        elif b.kind == "table":
            t: TableOut = b.payload
            for part in b.extra or [t]:
                body.append(f'<div class="tablewrap">{part.html_table()}</div>')
            if t.notes:
                body.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in t.notes) + "</ul>")
        elif b.kind == "img":
            png, caption, _ = b.payload
            data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption, quote=True)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        elif b.kind == "code":
            lang, text = b.payload
            body.append(f'<pre><code class="language-{html.escape(lang)}">{html.escape(text)}</code></pre>')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


# --------------------------------------------------------------------------- content helpers


def test_split_size(dataset: str) -> int | None:
    """Number of test images of a MedMNIST dataset (from ``medmnist.INFO``), or None."""
    try:
        import medmnist

        return int(medmnist.INFO[dataset.lower()]["n_samples"]["test"])
    except Exception:  # unknown flag or medmnist missing
        return None


def _range_text(s: pd.Series) -> str:
    v = s.dropna()
    if v.empty:
        return "–"
    uniq = sorted(v.unique(), key=lambda x: (str(type(x)), x))
    if pd.api.types.is_numeric_dtype(v):
        if len(uniq) <= 6:
            return "{" + ", ".join(f"{x:g}" for x in uniq) + "}"
        return f"{v.min():g} – {v.max():g} ({len(uniq)} values)"
    return "{" + ", ".join(str(x) for x in uniq) + "}"


def _sweep_overview(df: pd.DataFrame) -> tuple[TableOut, TableOut]:
    """(trial counts per sweep, search space per sweep)."""
    from analysis.tables import Cell

    header = ["Sweep", "Dataset", "Metric (validation)", "Trials", "Finished", "Early-stopped", "Errored",
              "Unfinished", "Epochs max"]
    space_header = ["Sweep"] + list(CONFIG_COLUMNS)
    rows, space = [], []
    for sweep, g in df.groupby("sweep", sort=True):
        counts = g["stop_reason"].value_counts()
        r = [sweep, ", ".join(ref.display_name(d) for d in sorted(g["dataset"].unique())),
             f"{g['metric'].iloc[0]} ({g['mode'].iloc[0]})", str(len(g))]
        r += [str(int(counts.get(k, 0))) for k in ("finished", "early_stopped", "errored", "unfinished")]
        r += [_range_text(g["epochs_max"])]
        rows.append([Cell(x) for x in r])
        space.append([Cell(sweep)] + [Cell(_range_text(g[c])) for c in CONFIG_COLUMNS])
    return (
        TableOut("sweeps", "Sweeps", header, rows,
                 ["Finished = ran all epochs; early-stopped = stopped by the scheduler (e.g. ASHA)."]),
        TableOut("search_space", "Search space", space_header, space,
                 ["The values the trials actually used: {…} lists the distinct values, a – b gives the "
                  "range of a continuously sampled one."]),
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


def _confirm_section(conf: pd.DataFrame) -> tuple[TableOut, list[str]]:
    from analysis.tables import Cell

    header = ["Dataset", "Label", "Seeds", "ACC mean ± std", "ACC 95% CI", "AUC mean ± std", "AUC 95% CI",
              "QWK mean ± std", "MAE mean ± std"]
    rows, data = [], []
    for (ds, label), g in conf.groupby(["dataset", "label"], sort=True):
        r = [ref.display_name(ds), label, str(g["seed"].nunique())]
        rec = dict(dataset=ds, label=label, n=int(g["seed"].nunique()))
        for m in ("acc", "auc", "qwk", "mae"):
            vals = g[f"test_{m}"].dropna().to_numpy(float)
            if vals.size == 0:
                r += ["–", "–"] if m in ("acc", "auc") else ["–"]
                continue
            ci = mean_ci(vals)
            r.append(format_pm(ci.mean, ci.std))
            if m in ("acc", "auc"):
                r.append("–" if math.isnan(ci.ci_low) else f"[{ci.ci_low:.3f}, {ci.ci_high:.3f}]")
            rec[f"{m}_mean"], rec[f"{m}_std"], rec[f"{m}_ci"] = ci.mean, ci.std, (ci.ci_low, ci.ci_high)
        rows.append([Cell(x) for x in r])
        data.append(rec)
    tests = []
    for ds, g in conf.groupby("dataset", sort=True):
        labels = sorted(g["label"].unique())
        if "best" not in labels:
            continue
        a = g[g["label"] == "best"].set_index("seed")
        for other in labels:
            if other == "best":
                continue
            b = g[g["label"] == other].set_index("seed")
            seeds = sorted(set(a.index) & set(b.index))
            if len(seeds) < 2:
                continue
            res = paired_bootstrap(a.loc[seeds, "test_acc"].to_numpy(float), b.loc[seeds, "test_acc"].to_numpy(float),
                                   n_resamples=10_000, seed=0)
            tests.append(
                f"{ref.display_name(ds)}: test ACC of 'best' minus '{other}', paired over {res.n} seeds: "
                f"{res.mean_diff:+.3f}, 95% bootstrap CI [{res.ci_low:+.3f}, {res.ci_high:+.3f}], "
                f"{res.frac_le_zero:.1%} of resamples ≤ 0"
                + (" (with this few seeds the bootstrap is coarse)" if res.n < 5 else "") + "."
            )
    t = TableOut("confirm", "Confirmed configurations (test split, per-seed re-runs)", header, rows,
                 ["Std over seeds (ddof 1); 95% CI = Student-t interval over seeds."], pd.DataFrame(data))
    return t, tests


def _caveats(df: pd.DataFrame, conf: pd.DataFrame | None, ours: pd.DataFrame, table2_notes: list[str]) -> list[str]:
    items = []
    confirmed = set(conf["dataset"].str.lower()) if conf is not None else set()
    single = sorted(set(df["dataset"].str.lower()) - confirmed)
    if single:
        items.append(
            "Single seed: every number for " + ", ".join(ref.display_name(d) for d in single)
            + " comes from one training run; seed-to-seed spread is unknown until the best configuration is "
            "re-run with several seeds (confirm step)."
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


# --------------------------------------------------------------------------- main entry


def write_report(
    results_parquet: str | os.PathLike,
    out_dir: str | os.PathLike,
    confirm_parquet: str | os.PathLike | None = None,
    figures: bool = True,
    extra_figures: Sequence[tuple[str | os.PathLike, str]] = (),
    title: str = "medsweep report",
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

    Returns:
        ``(html_path, md_path)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = load_results_frame(results_parquet)
    if df.empty:
        raise ValueError(f"{results_parquet}: the results table has no trials")
    conf = load_confirm_frame(confirm_parquet)

    tables = write_tables(df, out_dir, conf)
    ours = ours_test_metrics(df, conf)
    blocks: list[_Block] = []

    # What was swept
    blocks.append(_h(2, "What was swept"))
    overview, space = _sweep_overview(df)
    blocks.append(_Block("table", overview))
    blocks.append(_h(3, "Search space"))
    blocks.append(_Block("table", space))
    blocks.append(_h(2, "Compute"))
    compute_items, _ = _compute_summary(df)
    blocks.append(_ul(compute_items))

    # Tables
    blocks.append(_h(2, "Results against the paper"))
    t1 = tables["table1"]
    n_groups = (len(t1.header) - 1) // 2
    halves = [t1.column_slice([0] + [1 + 2 * g + k for g in range(s, min(s + 6, n_groups)) for k in (0, 1)])
              for s in range(0, n_groups, 6)]
    blocks.append(_h(3, t1.title))
    blocks.append(_Block("table", t1, halves))
    t2 = tables["table2"]
    blocks.append(_h(3, t2.title))
    blocks.append(_Block("table", t2))
    if (df["dataset"].str.lower() == "retinamnist").any():
        blocks.append(_p("Other published RetinaMNIST results at 28 px (test split):"))
        blocks.append(_ul(_other_retina()))
    if conf is not None and not conf.empty:
        ct, tests = _confirm_section(conf)
        blocks.append(_h(3, ct.title))
        blocks.append(_Block("table", ct))
        if tests:
            blocks.append(_ul(tests))

    # Figures
    if figures or extra_figures:
        blocks.append(_h(2, "Figures"))
    if figures:
        from analysis.figures import write_figures

        figs = write_figures(df, out_dir / "figures", conf)
        for name, (png, _data, caption) in figs.items():
            blocks.append(_Block("img", (png, caption, f"figures/{png.name}")))
    for png, caption in extra_figures:
        png = Path(png)
        rel = os.path.relpath(png, out_dir)
        blocks.append(_Block("img", (png, caption, rel)))

    # Best configurations
    blocks.append(_h(2, "Best configurations"))
    blocks.append(_p("The best trial per dataset by the sweep's validation metric, as a TrainConfig YAML "
                     "(also written as best_<dataset>.yaml next to this report), then its top trials."))
    bt = best_trials(df)
    for _, row in bt.iterrows():
        ds = str(row["dataset"]).lower()
        cfg = best_config(row)
        head = (f"# {ref.display_name(ds)}: sweep {row['sweep']}, trial {row['trial_id']}, "
                f"{row['metric']} = {row['best_value']:.4f} (validation, epoch {int(row['best_epoch'])})\n")
        text = head + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)
        (out_dir / f"best_{ds}.yaml").write_text(text, encoding="utf-8")
        blocks.append(_h(3, ref.display_name(ds)))
        blocks.append(_Block("code", ("yaml", text)))
        bt_table = tables.get(f"best_{ds}")
        if bt_table is not None:
            blocks.append(_Block("table", bt_table))

    # Caveats
    blocks.append(_h(2, "Caveats"))
    blocks.append(_ul(_caveats(df, conf, ours, t2.notes)))
    blocks.append(_h(2, "References"))
    blocks.append(_ul([ref.SRC_TABLE1, ref.SRC_TABLE2] + [f"{r.label}: {r.source}" for r in ref.RETINA_OTHER]))

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"Generated {stamp} from {_name(results_parquet)}" + (
        f" and {_name(confirm_parquet)}" if confirm_parquet is not None else "") + "."
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(_render_md(blocks, title).replace(f"# {title}\n", f"# {title}\n\n{subtitle}\n", 1),
                       encoding="utf-8")
    html_path.write_text(_render_html(blocks, title, subtitle), encoding="utf-8")
    return html_path, md_path
