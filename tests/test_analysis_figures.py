"""Figures: each PNG is written and the data behind it matches the results table (the real
sweeps of the session fixture, or the hand-built table shaped like the shipped example)."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from analysis import reference as ref
from analysis.figures import (
    heatmap_alpha_margin,
    heatmap_model_augment,
    heatmap_vs_paper,
    learning_curves,
    write_figures,
)
from analysis_sweeps import PNEUMONIA, RETINA, confirm_frame
from hand_results import retina_results


def _png_ok(path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, path


def _usable(df, sweep):
    return df[(df["sweep"] == sweep) & (df["stop_reason"] != "errored")]


def test_alpha_margin_heatmap(analysis_results, tmp_path):
    path, df = analysis_results
    cells = heatmap_alpha_margin(path, tmp_path / "am.png", sweep=RETINA)
    _png_ok(tmp_path / "am.png")
    ok = _usable(df, RETINA)
    alpha = ok["alpha"].round(1)
    assert cells["n"].sum() == len(ok) and (cells["n"] >= 1).all()  # only cells with trials
    ce = cells[cells["row"].isna()]  # alpha = 0: one cell, no margin
    assert len(ce) == int((alpha == 0).any()) and (ce["n"].sum() == (alpha == 0).sum())
    for a, g in ok[alpha > 0].groupby(alpha[alpha > 0]):
        assert cells.loc[np.isclose(cells["col"].astype(float), a), "n"].sum() == len(g)


def test_alpha_margin_heatmap_hand_built(tmp_path):
    df = retina_results()
    cells = heatmap_alpha_margin(df, tmp_path / "am.png")
    _png_ok(tmp_path / "am.png")
    ce = cells[cells["row"].isna()].iloc[0]
    assert ce["col"] == 0 and ce["n"] == 2
    assert ce["mean"] == pytest.approx(df.loc[df["alpha"] == 0, "best_value"].mean())
    ordinal = cells[cells["row"].notna()]
    # 10 alpha > 0 trials with 10 distinct margins: 3 margin bins of about equal size, and only
    # the (alpha, margin) cells that hold a trial
    assert ordinal["row"].nunique() == 3 and len(ordinal) == 7 and ordinal["n"].sum() == 10
    assert set(ordinal["col"]) == {0.1, 0.2, 0.3, 0.4, 0.5}
    a01 = df[df["alpha"] == 0.1]
    assert ordinal.loc[ordinal["col"] == 0.1, "n"].sum() == len(a01)


def test_model_augment_heatmap(analysis_results, tmp_path):
    path, df = analysis_results
    cells = heatmap_model_augment(df, tmp_path / "ma.png", sweep=PNEUMONIA)
    _png_ok(tmp_path / "ma.png")
    ok = _usable(df, PNEUMONIA)
    assert set(cells["row"]) == set(ok["model"]) and set(cells["col"]) == set(ok["augment"]) == {"shift"}
    for r in cells.itertuples():
        g = ok[(ok["model"] == r.row) & (ok["augment"] == r.col)]
        assert r.n == len(g) and r.mean == pytest.approx(g["best_value"].mean())


def test_vs_paper_heatmap(analysis_results, tmp_path):
    path, df = analysis_results
    data = heatmap_vs_paper(path, tmp_path / "vs.png")
    _png_ok(tmp_path / "vs.png")
    ours = df[(df["dataset"] == "retinamnist") & df["test_acc"].notna()].iloc[0]["test_acc"]
    r = data[(data["dataset"] == "retinamnist") & (data["method"] == "MedViT") & (data["metric"] == "acc")].iloc[0]
    assert r["paper"] == ref.TABLE2[0.0].value and r["diff"] == pytest.approx(ours - 0.552)
    medvit = df["model"].str.startswith("medvit")
    p = df[(df["dataset"] == "pneumoniamnist") & df["test_auc"].notna() & medvit].iloc[0]["test_auc"]
    for meth in ref.TABLE1_METHODS:
        r = data[(data["dataset"] == "pneumoniamnist") & (data["method"] == meth) & (data["metric"] == "auc")].iloc[0]
        assert r["diff"] == pytest.approx(p - ref.TABLE1[meth]["pneumoniamnist"]["auc"].value)
    # with seeds confirmed, ours is the mean over seeds
    conf = confirm_frame()
    data2 = heatmap_vs_paper(path, tmp_path / "vs2.png", confirm=conf)
    r2 = data2[(data2["dataset"] == "retinamnist") & (data2["method"] == "MedViT") & (data2["metric"] == "acc")]
    assert r2["ours"].iloc[0] == pytest.approx(conf[conf["label"] == "best"]["test_acc"].mean())


def test_learning_curves(analysis_results, tmp_path):
    path, df = analysis_results
    data = learning_curves(path, tmp_path / "lc.png", sweep=RETINA, top_k=3)
    _png_ok(tmp_path / "lc.png")
    ok = _usable(df, RETINA)
    assert data["trial_id"].nunique() == len(ok)
    assert data[data["group"] == "top"]["trial_id"].nunique() == 3
    ranked = ok.sort_values(["best_value", "best_epoch", "trial_id"], ascending=[False, True, True])
    top_ids = set(ranked["trial_id"].head(3))  # ties: the earlier best epoch, then the smaller id
    assert set(data[data["group"] == "top"]["trial_id"]) == top_ids
    stops = data[data["stop_marker"]]
    early = ok[ok["stop_reason"] == "early_stopped"]
    assert set(stops["trial_id"]) == set(early["trial_id"])
    for t in early.itertuples():
        s = stops[stops["trial_id"] == t.trial_id].iloc[0]
        assert s["epoch"] == t.epochs_run < t.epochs_max
        assert s["value"] == t.history_val_metric[-1]


def test_model_augment_heatmap_only_cells_with_trials(tmp_path):
    df = retina_results()
    cells = heatmap_model_augment(df, tmp_path / "ma.png")
    counts = df.groupby(["model", "augment"]).size()
    assert len(cells) == len(counts) == 5  # medvit_28_small never ran with "light"
    for r in cells.itertuples():
        assert r.n == counts[(r.row, r.col)]


def test_one_dataset_has_no_ours_minus_paper(tmp_path):
    figs = write_figures(retina_results(), tmp_path)
    assert "ours_minus_paper" not in figs and not (tmp_path / "ours_minus_paper.png").exists()
    assert set(figs) == {"curves_retinamnist-cpu", "alpha_margin_retinamnist-cpu", "model_augment_retinamnist-cpu"}


def test_figures_are_drawn_for_the_width_the_report_shows(tmp_path):
    # at most 6 in at 150 DPI: the report shows a figure at its size in inches, so its 12-pt
    # labels stay 10 CSS px high when a 390-px phone screen scales a 6-in figure to 358 px
    figs = write_figures(retina_results(), tmp_path)
    for png, _, _ in figs.values():
        with PIL.Image.open(png) as image:
            dpi = image.info["dpi"][0]
            assert round(dpi) == 150 and image.width / dpi <= 6.0 + 1e-6, (png, image.size, dpi)


def test_write_figures_all(analysis_results, tmp_path):
    path, _ = analysis_results
    _, df = analysis_results
    figs = write_figures(path, tmp_path)
    retina = _usable(df, RETINA)
    assert retina["model"].nunique() == 1 and retina["augment"].nunique() > 1  # Optuna's draws (seed 0)
    assert set(figs) == {f"curves_{RETINA}", f"alpha_margin_{RETINA}", f"model_augment_{RETINA}",
                         f"curves_{PNEUMONIA}", f"model_augment_{PNEUMONIA}", "ours_minus_paper"}
    for png, data, caption in figs.values():
        _png_ok(png)
        assert len(data) and caption


def test_no_usable_trials_is_a_clear_error(analysis_results, tmp_path):
    _, df = analysis_results
    with pytest.raises(ValueError, match="no usable trials"):
        heatmap_alpha_margin(df, tmp_path / "x.png", sweep="no-such-sweep")
