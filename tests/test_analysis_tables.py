"""Tables: the paper's numbers exactly as printed, ours equal to the Parquet values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import reference as ref
from analysis.tables import (CSV_FLOATS_AS_WRITTEN, MISSING, TRAIN_CONFIG_KEYS, best_config, load_confirm_frame, table1,
                             table2, write_tables)
from analysis_sweeps import ERROR_MODEL, confirm_frame
from hand_results import retina_confirm, retina_results


@pytest.fixture
def evaluated(analysis_results):
    return analysis_results


def _ours_row(frame: pd.DataFrame) -> pd.Series:
    return frame[frame["Method"] == "medsweep MedViT (ours, 28 px)"].iloc[0]


def test_table1_paper_numbers_as_printed(evaluated, tmp_path):
    path, df = evaluated
    tables = write_tables(path, tmp_path)
    md = (tmp_path / "table1.md").read_text()
    wide = pd.read_csv(tmp_path / "table1.csv", dtype=str, keep_default_na=False)
    for method in ref.TABLE1_METHODS:
        row = wide[wide["Method"] == method].iloc[0]
        for ds in ref.TABLE1_DATASETS:
            for m in ("auc", "acc"):
                printed = ref.TABLE1[method][ds][m].printed
                assert row[f"{ref.display_name(ds)} {m.upper()}"] == printed
                assert f"| {printed} |" in md or f"| **{printed}** |" in md
    medvit = wide[wide["Method"] == "MedViT"].iloc[0]
    assert medvit["OrganSMNIST AUC"] == "0.975 †" and medvit["OrganSMNIST ACC"] == "0.796 †"
    assert medvit["RetinaMNIST ACC"] == "0.552 †" and medvit["RetinaMNIST AUC"] == MISSING
    assert wide[wide["Method"] == "AutoKeras"].iloc[0]["OrganSMNIST AUC"] == MISSING
    # bold marks the column best: MedViT's PathMNIST AUC 0.992, ResNet-50 (28)'s PathMNIST ACC 0.911
    assert "**0.992**" in md and "**0.911**" in md
    assert "no value" in md and MISSING in md
    assert tables["table1"].header[0] == "Method"


def test_table1_bolds_only_a_column_with_something_to_compare(tmp_path):
    t1 = table1(retina_results(), retina_confirm())
    method = t1.frame["Method"]
    # our RetinaMNIST AUC is the column's only value: not its "best"; the paper's MedViT ACC
    # (0.552) beats ours (0.507); OrganSMNIST has MedViT's numbers only
    assert not t1.best["RetinaMNIST AUC"].any()
    assert t1.best["RetinaMNIST ACC"].tolist() == (method == "MedViT").tolist()
    assert not t1.best[["OrganSMNIST AUC", "OrganSMNIST ACC"]].any().any()
    write_tables(retina_results(), tmp_path, confirm=retina_confirm())
    md = (tmp_path / "table1.md").read_text()
    ours = next(r for r in md.splitlines() if r.startswith("| medsweep MedViT (ours, 28 px) |") and "±" in r)
    assert "**" not in ours and "| **0.552 †** |" in md


def test_a_confirm_table_from_csv_has_every_float_as_written(tmp_path):
    """pandas before 3.0 (what Python 3.10 installs) read 0.38293650793650796 as
    0.3829365079365079 by default."""
    confirm = retina_confirm()
    confirm.loc[0, "test_acc"] = 0.38293650793650796
    confirm.to_csv(tmp_path / "confirm.csv", index=False)
    read = load_confirm_frame(tmp_path / "confirm.csv")
    assert read["test_acc"].tolist() == confirm["test_acc"].tolist()


def test_table1_ours_equals_parquet(evaluated, tmp_path):
    path, df = evaluated
    write_tables(path, tmp_path)
    wide = pd.read_csv(tmp_path / "table1.csv", dtype=str, keep_default_na=False)
    ours = _ours_row(wide)
    long = pd.read_csv(tmp_path / "table1_long.csv", **CSV_FLOATS_AS_WRITTEN)
    for ds in ("retinamnist", "pneumoniamnist"):
        best = df[(df["dataset"] == ds) & df["test_acc"].notna() & df["model"].str.startswith("medvit")].iloc[0]
        for m in ("auc", "acc"):
            assert ours[f"{ref.display_name(ds)} {m.upper()}"] == f"{best[f'test_{m}']:.3f}"
            hit = long[(long["method"] == "medsweep MedViT (ours, 28 px)") & (long["dataset"] == ds)
                       & (long["metric"] == m)]
            assert hit["value"].iloc[0] == best[f"test_{m}"]
            assert hit["trial_id"].iloc[0] == best["trial_id"]
    assert ours["PathMNIST AUC"] == MISSING  # not swept
    # the errored trial reported the best validation values but is never "ours"
    err = df[df["stop_reason"] == "errored"].iloc[0]
    assert err["trial_id"] not in set(long["trial_id"].dropna())


def test_table1_with_confirm_seeds(evaluated, tmp_path):
    path, _ = evaluated
    conf = confirm_frame()
    write_tables(path, tmp_path, confirm=conf)
    ours = _ours_row(pd.read_csv(tmp_path / "table1.csv", dtype=str, keep_default_na=False))
    b = conf[conf["label"] == "best"]
    assert ours["RetinaMNIST ACC"] == f"{b['test_acc'].mean():.3f} ± {b['test_acc'].std(ddof=1):.3f}"
    assert ours["RetinaMNIST AUC"] == f"{b['test_auc'].mean():.3f} ± {b['test_auc'].std(ddof=1):.3f}"


def test_table2(evaluated, tmp_path):
    path, df = evaluated
    conf = confirm_frame()
    tables = write_tables(path, tmp_path, confirm=conf)
    t2 = pd.read_csv(tmp_path / "table2.csv", dtype=str, keep_default_na=False)
    md = (tmp_path / "table2.md").read_text()
    for a, v in ref.TABLE2.items():
        row = t2[t2["α"] == f"{a:.1f}"].iloc[0]
        assert row["Paper ACC"] == v.printed
        assert v.printed in md
    retina = df[(df["dataset"] == "retinamnist") & (df["stop_reason"] != "errored")]
    for a, g in retina.groupby(retina["alpha"].round(1)):
        row = t2[t2["α"] == f"{a:.1f}"].iloc[0]
        vals = g["best_val_acc"].to_numpy()
        expect = f"{vals.mean():.3f}" + (f" ± {vals.std(ddof=1):.3f}" if len(vals) > 1 else "")
        assert row["Ours val ACC"] == expect
        assert row["n trials"] == str(len(g))
    z = conf[conf["label"] == "best alpha=0"]
    row0 = t2[t2["α"] == "0.0"].iloc[0]
    assert row0["Ours ACC (test)"] == f"{z['test_acc'].mean():.3f} ± {z['test_acc'].std(ddof=1):.3f}"
    assert row0["n test (source)"] == "3 seeds"
    assert t2[t2["α"] == "0.5"].iloc[0]["Ours ACC (test)"] == MISSING
    assert not any("binned" in n for n in tables["table2"].notes)


def test_table2_counts_its_test_source_in_the_singular_for_one():
    def sources(confirm=None):
        t2 = table2(retina_results(), confirm).frame
        return dict(zip(t2["α"], t2["n test (source)"]))

    assert sources()["0.0"] == "1 trial" and sources()["0.1"] == "0"  # only the best trial (alpha 0) was tested
    assert sources(retina_confirm())["0.1"] == "3 seeds"
    assert sources(retina_confirm().groupby("label").head(1))["0.1"] == "1 seed"


def test_table2_bins_continuous_alpha(evaluated):
    _, df = evaluated
    df = df.copy()
    df.loc[df["dataset"] == "retinamnist", "alpha"] += 0.023
    t = table2(df)
    assert any("binned to the nearest 0.1" in n for n in t.notes)
    assert set(t.data["alpha"]) >= {0.0, 0.1, 0.2, 0.3}


def test_best_tables_and_config(evaluated, tmp_path):
    path, df = evaluated
    tables = write_tables(path, tmp_path, top_k=3)
    for ds in ("retinamnist", "pneumoniamnist"):
        assert (tmp_path / f"best_{ds}.md").exists() and (tmp_path / f"best_{ds}.csv").exists()
    bt = tables["best_retinamnist"].data
    retina = df[(df["dataset"] == "retinamnist") & (df["stop_reason"] != "errored")]
    expected = retina.sort_values("best_value", ascending=False)["best_value"].head(3).tolist()
    assert bt["best_value"].tolist() == expected
    assert len(bt) == 3 and "errored" not in set(bt["stop_reason"])
    pneu = tables["best_pneumoniamnist"].data
    assert ERROR_MODEL not in set(pneu["model"])  # errored, though its reported val_auc was the highest
    cfg = best_config(retina.sort_values("best_value", ascending=False).iloc[0])
    assert list(cfg) == [key for key in TRAIN_CONFIG_KEYS if key in cfg]  # in declaration order
    assert None not in cfg.values() and "resize" not in cfg  # left out, as best_config.yaml leaves it
    assert {"dataset", "model", "alpha", "margin", "ema", "select_window"} <= set(cfg)
    assert cfg["dataset"] == "retinamnist" and cfg["epochs"] == 2 and isinstance(cfg["lr"], float)
    assert cfg["batch_size"] == 32 and cfg["seed"] == 0 and cfg["img_size"] == 28  # the spec's fixed values
    csv = pd.read_csv(tmp_path / "best_retinamnist.csv")
    assert np.allclose(csv.iloc[:, 12].astype(float), expected, atol=5e-5)
