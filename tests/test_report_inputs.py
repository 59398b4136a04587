"""The paper's protocol beside ours in one report: a 28 px sweep and a 224 px-from-28 sweep of
the same dataset are two results, never ranked or averaged together, and each confirmed
configuration keeps its own seeds."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from analysis.report import write_report
from analysis.tables import best_table, input_label, model_input, ours_test_metrics, table1, table2
from analysis.evaluate import trials_to_evaluate
from analysis.figures import _vs_paper_data
from hand_results import BEST, SWEEP, retina_confirm, retina_results, with_checkpoints

PAPER_SWEEP = "paper-retinamnist"
PAPER_BEST = "p" + BEST


def two_protocols() -> pd.DataFrame:
    """The 28 px sweep beside a paper-protocol sweep (medvit_base at 224 px from 28), whose
    winner is ahead on validation by 0.01 and was tested once."""
    ours = retina_results()
    paper = retina_results().assign(
        sweep=PAPER_SWEEP, sweep_dir=f"/tmp/real/{PAPER_SWEEP}", model="medvit_base", resize=224,
        resize_mode="nearest", trial_id=lambda d: "p" + d["trial_id"], best_value=lambda d: d["best_value"] + 0.01)
    paper["config_json"] = [json.dumps({**json.loads(c), "model": "medvit_base", "resize": 224}, sort_keys=True)
                            for c in paper["config_json"]]
    paper.loc[paper["trial_id"] == PAPER_BEST, ["test_acc", "test_auc"]] = [0.565, 0.760]
    return pd.concat([ours, paper], ignore_index=True)


def two_confirms() -> pd.DataFrame:
    """`medsweep confirm` of each sweep: 3 seeds of its best (and the 28 px sweep's alpha > 0)."""
    paper = retina_confirm().query("label == 'best'").assign(
        sweep=PAPER_SWEEP, trial_id=PAPER_BEST, test_acc=[0.570, 0.575, 0.580], test_auc=[0.77, 0.78, 0.79])
    return pd.concat([retina_confirm().assign(trial_id=BEST), paper], ignore_index=True)


def pm(values: pd.Series) -> str:
    return f"{values.mean():.3f} ± {values.std():.3f}"


def test_the_input_a_model_saw_is_named_from_its_columns_or_its_config():
    assert input_label(model_input({"img_size": 28})) == "28 px"
    assert input_label(model_input({"img_size": 28, "resize": 224})) == "224 px from 28"
    bilinear = {"img_size": 28, "resize": 56, "resize_mode": "bilinear"}
    assert input_label(model_input(bilinear)) == "56 px from 28, bilinear"
    assert input_label(model_input({"img_size": 64, "resize": 64})) == "64 px"
    # a results table from before the resize columns: the trial's config says it
    assert input_label(model_input({"config_json": '{"resize": 224, "img_size": 28}'})) == "224 px from 28"
    assert input_label(model_input({})) == "28 px"  # TrainConfig's defaults


def test_table1_has_a_row_per_input_each_with_its_own_seeds():
    df, conf = two_protocols(), two_confirms()
    frame = table1(df, conf).frame.set_index("Method")
    ours = conf[(conf["sweep"] == SWEEP) & (conf["label"] == "best")]
    paper = conf[conf["sweep"] == PAPER_SWEEP]
    assert frame.loc["medsweep MedViT (ours, 28 px)", "RetinaMNIST ACC"] == pm(ours["test_acc"])
    assert frame.loc["medsweep MedViT (ours, 224 px from 28)", "RetinaMNIST ACC"] == pm(paper["test_acc"])
    assert frame.loc["medsweep MedViT (ours, 224 px from 28)", "RetinaMNIST AUC"] == pm(paper["test_auc"])
    # one report of one protocol still says which
    assert "medsweep MedViT (ours, 28 px)" in table1(retina_results(), retina_confirm()).frame["Method"].tolist()


def test_another_sweeps_confirm_rows_never_stand_for_a_winner():
    # only the 224 px sweep was confirmed: the 28 px winner keeps its one test run
    df, conf = two_protocols(), two_confirms()
    rows = ours_test_metrics(df, conf[conf["sweep"] == PAPER_SWEEP]).set_index("input")
    assert rows.loc["28 px", "source"] == "trial" and rows.loc["28 px", "acc_mean"] == pytest.approx(0.547)
    assert rows.loc["224 px from 28", "source"] == "confirm" and rows.loc["224 px from 28", "n"] == 3
    # confirm rows of an earlier best trial of the same sweep are another configuration too
    stale = conf[conf["sweep"] == PAPER_SWEEP].assign(trial_id="an-older-best")
    assert ours_test_metrics(df, stale).set_index("input").loc["224 px from 28", "source"] == "trial"


def test_table2_keeps_each_inputs_trials_and_seeds_apart():
    df, conf = two_protocols(), two_confirms()
    t2 = table2(df, conf).data.set_index(["input", "alpha"])
    ours = conf[(conf["sweep"] == SWEEP) & (conf["label"] == "best")]
    paper = conf[conf["sweep"] == PAPER_SWEEP]
    # both winners have alpha 0: each input's alpha-0 row holds its own sweep's seeds
    assert t2.loc[("28 px", 0.0), "test_acc_mean"] == pytest.approx(ours["test_acc"].mean())
    assert t2.loc[("224 px from 28", 0.0), "test_acc_mean"] == pytest.approx(paper["test_acc"].mean())
    # and the validation columns count each input's trials only
    n_alpha0 = int((retina_results()["alpha"] == 0).sum())
    assert t2.loc[("28 px", 0.0), "n_trials"] == t2.loc[("224 px from 28", 0.0), "n_trials"] == n_alpha0
    assert pd.isna(t2.loc[("224 px from 28", 0.1), "test_acc_mean"])  # the 28 px sweep's alpha>0 seeds stay there
    assert t2.loc[("28 px", 0.1), "test_acc_mean"] == pytest.approx(
        conf[conf["label"].str.startswith("best alpha>0")]["test_acc"].mean())


def test_a_sweep_that_searched_resize_puts_each_confirmed_trial_at_its_input():
    # one sweep holding both inputs (the paper sweep's trials renamed into the 28 px sweep)
    df = two_protocols().assign(sweep=SWEEP, sweep_dir=retina_results()["sweep_dir"].iloc[0])
    conf = two_confirms().assign(sweep=SWEEP)
    t2 = table2(df, conf).data.set_index(["input", "alpha"])
    paper = conf[conf["trial_id"] == PAPER_BEST]
    ours = conf[(conf["trial_id"] == BEST) & (conf["label"] == "best")]
    assert t2.loc[("224 px from 28", 0.0), "test_acc_mean"] == pytest.approx(paper["test_acc"].mean())
    assert t2.loc[("28 px", 0.0), "test_acc_mean"] == pytest.approx(ours["test_acc"].mean())
    assert t2.loc[("28 px", 0.0), "n_test"] == 3


def test_the_report_names_the_input_of_every_winner_and_confirmed_configuration(tmp_path):
    _, md_path = write_report(two_protocols(), tmp_path, confirm_parquet=two_confirms(), figures=False)
    md = md_path.read_text()
    head = md[md.index("## Headline"):md.index("## What was swept")]
    assert f"Best trial {BEST} (medvit_28_small at 28 px, α 0), selected on val_acc" in head
    assert f"Best trial {PAPER_BEST} (medvit_base at 224 px from 28, α 0), selected on val_acc" in head
    gap = 0.6267 - two_confirms().query("sweep == @PAPER_SWEEP")["test_acc"].mean()
    assert f"RetinaMNIST medvit_base at 224 px from 28: winner's-curse gap {gap:+.3f}" in head
    confirmed = md[md.index("### Confirmed configurations"):md.index("## Figures") if "## Figures" in md else None]
    assert f"| RetinaMNIST | {SWEEP} | best | 3 |" in confirmed
    assert f"| RetinaMNIST | {PAPER_SWEEP} | best | 3 |" in confirmed
    # the best configuration (the 224 px trial, ahead on validation) trains at 224 px again
    best = yaml.safe_load((tmp_path / "best_retinamnist.yaml").read_text())
    assert (best["model"], best["resize"], best["resize_mode"]) == ("medvit_base", 224, "nearest")
    top = best_table(two_protocols(), "retinamnist", top_k=4).frame  # the 224 px sweep's top 3, then ours
    assert top["Input"].tolist() == ["224 px from 28"] * 3 + ["28 px"] and top["Trial"].iloc[3] == BEST


def test_the_figure_against_the_paper_takes_one_input_per_dataset():
    data = _vs_paper_data(two_protocols(), two_confirms(), "medvit")
    retina = data[data["dataset"] == "retinamnist"]
    assert set(retina["input"]) == {"224 px from 28"}  # ahead on validation
    assert len(retina) == len(retina[["method", "metric"]].drop_duplicates())


def test_evaluate_tests_the_winner_of_each_input():
    picks = trials_to_evaluate(two_protocols())
    assert set(zip(picks["trial_id"], picks["input"])) == {(BEST, "28 px"), (PAPER_BEST, "224 px from 28")}


def test_gradcam_pairs_the_losses_at_one_input(tmp_path):
    from analysis.cli import auto_gradcam_checkpoints

    df = two_protocols()
    # the 224 px sweep trained the 28 px sweep's architecture: still not the same model
    df.loc[df["sweep"] == PAPER_SWEEP, "model"] = df.loc[df["sweep"] == SWEEP, "model"].to_numpy()
    df = with_checkpoints(df, tmp_path)
    # the best alpha = 0 trial is the 224 px one; its alpha > 0 partner is at 224 px too
    ce, ordinal, caption = auto_gradcam_checkpoints(df)
    assert (ce, ordinal) == (str(tmp_path / PAPER_BEST), str(tmp_path / "pe47d7b0f"))
    assert caption.startswith("GradCAM of medvit_28_small at 224 px from 28 trained with cross-entropy")
    # without a 224 px alpha > 0 trial, the 224 px winner has no partner: the pair is the 28 px one
    ce, ordinal, caption = auto_gradcam_checkpoints(df[(df["sweep"] == SWEEP) | (df["alpha"] == 0)])
    assert (ce, ordinal) == (str(tmp_path / BEST), str(tmp_path / "e47d7b0f"))
    assert caption.startswith("GradCAM of medvit_28_small trained with cross-entropy")


def test_the_caveats_name_each_winner_left_at_one_seed(tmp_path):
    only_paper = two_confirms().query("sweep == @PAPER_SWEEP")
    _, md_path = write_report(two_protocols(), tmp_path, confirm_parquet=only_paper, figures=False)
    caveats = md_path.read_text().split("## Caveats")[1]
    assert "Single seed: the test numbers of RetinaMNIST (MedViT, 28 px) come from one training run" in caveats
    assert "224 px from 28)" not in caveats.split("Single seed")[1].split("\n")[0]
