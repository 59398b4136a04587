"""analysis.confirm: which configurations are re-run, and what the summary concludes.

The end-to-end run (training, Parquet rows, CLI) is in test_analysis_cli.py; here the choice
of arms is checked on the fixture's real RetinaMNIST trials with their alphas and outcomes
rewritten, and the summary on hand-made per-seed results."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.collect import read_sweep
from analysis.confirm import RUNNER_UP, Arm, _summary, plan_arms
from analysis_sweeps import PNEUMONIA, RETINA


@pytest.fixture(scope="module")
def retina(analysis_sweeps):
    df = read_sweep(analysis_sweeps.dirs[RETINA]).to_pandas()
    # a known order: trial k has best value 0.5 - 0.1 k (the first is the best)
    df = df.sort_values("trial_id").reset_index(drop=True)
    df["best_value"] = [0.5 - 0.1 * k for k in range(len(df))]
    return df


def _with(df: pd.DataFrame, **fields: list) -> pd.DataFrame:
    """``df`` with these TrainConfig fields per trial, in their columns and in config_json."""
    df = df.copy()
    configs = [json.loads(c) for c in df["config_json"]]
    for field, values in fields.items():
        df[field] = values
        for config, value in zip(configs, values):
            config[field] = value
    df["config_json"] = [json.dumps(c) for c in configs]
    return df


def _with_alphas(df: pd.DataFrame, alphas: list[float]) -> pd.DataFrame:
    return _with(df, alpha=alphas)


def test_best_ordinal_with_an_alpha0_trial(retina):
    df = _with_alphas(retina, [0.2, 0.3, 0.0, 0.0])
    arms = plan_arms(df)
    assert [a.label for a in arms] == ["best", "best alpha=0"]
    assert [a.trial_id for a in arms] == [df["trial_id"][0], df["trial_id"][2]]  # the better alpha=0 trial
    assert arms[0].values["alpha"] == 0.2 and arms[1].values["alpha"] == 0.0
    assert [a.role for a in arms] == ["ordinal", "ce"]
    assert "best alpha=0 trial" in arms[1].note


def test_best_ordinal_without_alpha0_trial(retina):
    df = _with_alphas(retina, [0.2, 0.3, 0.1, 0.4])
    arms = plan_arms(df)
    assert [a.label for a in arms] == ["best", "best with alpha=0"]
    assert arms[1].trial_id == arms[0].trial_id and arms[1].values == {**arms[0].values, "alpha": 0.0}
    assert "alpha set to 0" in arms[1].note


def test_best_is_cross_entropy(retina):
    df = _with_alphas(retina, [0.0, 0.3, 0.1, 0.0])
    arms = plan_arms(df)
    assert [a.label for a in arms] == ["best", "best alpha>0 (alpha=0.3)"]
    assert [a.role for a in arms] == ["ce", "ordinal"]


def test_the_partner_is_of_the_winners_family_and_input(retina):
    # The better alpha=0 trial saw 224 px (a sweep searching resize): the winner, at 28 px,
    # is paired with the alpha=0 trial at its own input.
    df = _with(retina, alpha=[0.2, 0.0, 0.3, 0.0], resize=[None, 224, None, None])
    arms = plan_arms(df)
    assert [a.trial_id for a in arms] == [df["trial_id"][0], df["trial_id"][3]]
    # No alpha=0 MedViT trial at 28 px (the other is a ResNet): the winner with alpha set to 0.
    df = _with(df, model=[*df["model"][:3], "resnet18_28"])
    arms = plan_arms(df)
    assert arms[1].label == "best with alpha=0" and arms[1].trial_id == arms[0].trial_id
    assert "MedViT at 28 px" in arms[1].note
    # A winner at 224 px with alpha 0: its alpha>0 partner is the best alpha>0 trial at 224 px.
    df = _with(retina, alpha=[0.0, 0.3, 0.2, 0.1], resize=[224, None, 224, 224])
    arms = plan_arms(df)
    assert arms[1].label == "best alpha>0 (alpha=0.2)" and arms[1].trial_id == df["trial_id"][2]
    assert arms[1].values["resize"] == 224


def test_errored_and_tied_trials(retina):
    df = _with_alphas(retina, [0.2, 0.3, 0.0, 0.0])
    df.loc[0, "stop_reason"] = "errored"  # the best value, but errored: never chosen
    df.loc[1, "best_value"] = df.loc[2, "best_value"] = 0.45
    df.loc[1, "best_epoch"], df.loc[2, "best_epoch"] = 2, 1  # tie: the earlier epoch wins
    arms = plan_arms(df)
    assert arms[0].trial_id == df["trial_id"][2] and arms[0].role == "ce"
    df["stop_reason"] = "errored"
    with pytest.raises(ValueError, match="no usable trial"):
        plan_arms(df)


def test_not_ordinal_has_one_arm(analysis_sweeps):
    arms = plan_arms(read_sweep(analysis_sweeps.dirs[PNEUMONIA]).to_pandas())
    assert len(arms) == 1 and arms[0].label in ("best", "best resnet")
    assert arms[0].values["dataset"] == "pneumoniamnist" and arms[0].values["subset"] == 32


def test_top_adds_the_runners_up_but_not_the_partner_twice(retina):
    df = _with_alphas(retina, [0.2, 0.3, 0.0, 0.0])
    assert [a.label for a in plan_arms(df, top=1)] == ["best", "best alpha=0"]
    arms = plan_arms(df, top=4)
    # the 3rd configuration is the alpha=0 partner already: not run twice
    assert [a.label for a in arms] == ["best", "best alpha=0", "rank 2", "rank 4"]
    assert [a.trial_id for a in arms[2:]] == [df["trial_id"][1], df["trial_id"][3]]
    assert [a.role for a in arms[2:]] == [RUNNER_UP, RUNNER_UP] and arms[2].values["alpha"] == 0.3
    assert arms[2].note.startswith("the sweep's rank 2, trial ")
    assert len(plan_arms(df, top=20)) == 4  # no more configurations than the sweep has


def test_with_repeats_a_runner_up_is_the_next_configuration(retina):
    df = _with_alphas(retina, [0.2, 0.2, 0.3, 0.3]).assign(config_group=["g1", "g1", "g2", "g2"], repeats=2,
                                                           stop_reason="finished")
    arms = plan_arms(df, top=2)
    # not the winner's own second seed: the best trial of the second configuration
    assert [a.label for a in arms] == ["best", "best with alpha=0", "rank 2"]
    assert arms[2].trial_id == df["trial_id"][2]


def _rows(ordinal: list[float], ce: list[float]) -> pd.DataFrame:
    seeds = list(range(1000, 1000 + len(ordinal)))
    rec = [dict(dataset="retinamnist", label="best", seed=s, test_acc=a, test_qwk=a - 0.2, test_auc=0.7, test_mae=0.6)
           for s, a in zip(seeds, ordinal)]
    rec += [dict(dataset="retinamnist", label="best alpha=0", seed=s, test_acc=b, test_qwk=b - 0.2, test_auc=0.7, test_mae=0.6)
            for s, b in zip(seeds, ce)]
    return pd.DataFrame(rec)


ARMS = [Arm("best", "t1", {"alpha": 0.2}, "n", "ordinal"), Arm("best alpha=0", "t2", {"alpha": 0.0}, "n", "ce")]


def test_summary_gain_larger_than_seed_noise():
    lines = _summary(_rows([0.60, 0.62, 0.61, 0.63, 0.60], [0.55, 0.56, 0.55, 0.57, 0.54]), ARMS, "head")
    acc = next(ln for ln in lines if "test ACC, paired over 5 seeds" in ln)
    assert "+0.0580" in acc and "larger than seed noise (the interval excludes 0)" in acc
    assert any(ln.startswith("best [n], test over 5 seeds: ACC 0.6120 ± ") and "95% CI [" in ln for ln in lines)


def test_summary_within_seed_noise_and_one_seed():
    lines = _summary(_rows([0.60, 0.55, 0.62], [0.58, 0.60, 0.57]), ARMS, "head")
    assert any("not larger than seed noise (the interval includes 0)" in ln and "coarse" in ln for ln in lines)
    acc = next(ln for ln in lines if "test ACC, paired over 3 seeds" in ln)
    qwk = next(ln for ln in lines if "test QWK, paired over 3 seeds" in ln)
    # the seeds it would take: for the observed difference, and for the paper's +0.042 at alpha 0.2
    assert "finding the observed +0.007 would take" in acc and "the paper's Table 2 gain at alpha 0.2 (+0.042)" in acc
    assert "finding the observed +0.007 would take" in qwk and "Table 2" not in qwk
    lines = _summary(_rows([0.60], [0.58]), ARMS, "head")
    assert any("on 1 seed; no bootstrap interval" in ln for ln in lines)


def test_summary_pairs_each_runner_up_with_the_winner():
    seeds = list(range(1000, 1005))
    rows = pd.DataFrame([dict(dataset="pneumoniamnist", label=label, seed=s, test_acc=acc, test_auc=0.9,
                              test_qwk=None, test_mae=None)
                         for label, accs in (("best", [0.87, 0.86, 0.88, 0.87, 0.86]),
                                             ("rank 2", [0.90, 0.91, 0.90, 0.92, 0.90]),
                                             ("rank 3", [0.86, 0.88, 0.87, 0.86, 0.88]))
                         for s, acc in zip(seeds, accs)])
    arms = [Arm("best", "t1", {}, "n"), Arm("rank 2", "t2", {}, "n", RUNNER_UP), Arm("rank 3", "t3", {}, "n", RUNNER_UP)]
    lines = _summary(rows, arms, "head")
    second = next(ln for ln in lines if ln.startswith("'rank 2' minus the winner 'best', test ACC, paired over 5 seeds"))
    assert "+0.0380" in second and "the runner-up tests better beyond seed noise (the interval excludes 0)" in second
    assert "Over seeds and test images" not in second  # these rows keep no test probabilities
    third = next(ln for ln in lines if ln.startswith("'rank 3' minus the winner 'best'"))
    assert "cannot be told apart on test" in third
    lines = _summary(rows.assign(test_acc=lambda d: d["test_acc"].where(d["label"] != "best", 0.95)), arms, "head")
    assert any("the winner's lead on validation holds on test" in ln for ln in lines)


def test_runner_up_over_seeds_and_test_images():
    """With the runs' test probabilities kept, the runner-up's difference is also resampled over
    the test images: a clear lead stays clear."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(200, 1))

    def run(label: str, seed: int, accuracy: float) -> dict:
        right = rng.random(len(labels)) < accuracy
        positive = np.where((labels[:, 0] == 1) == right, 0.9, 0.1)
        scores = np.stack([1 - positive, positive], axis=1)
        return dict(dataset="pneumoniamnist", label=label, seed=seed, test_acc=float(right.mean()), test_auc=0.9,
                    test_qwk=None, test_mae=None, test_scores=scores.tolist(), test_labels=labels.tolist())

    seeds = list(range(1000, 1005))
    rows = pd.DataFrame([run("best", s, 0.80) for s in seeds] + [run("rank 2", s, 0.95) for s in seeds])
    lines = _summary(rows, [Arm("best", "t1", {}, "n"), Arm("rank 2", "t2", {}, "n", RUNNER_UP)], "head")
    line = next(ln for ln in lines if ln.startswith("'rank 2' minus the winner"))
    assert ("Over seeds and test images: [+0." in line
            and line.endswith("the runner-up tests better beyond seed and test-image noise (the interval excludes 0): "
                              "validation chose the worse."))
