"""Intervals over seeds AND test images for confirmed configurations: the test split is one draw
of patients, so `confirm` and the report say what another draw could show beside the interval
over seeds (which speaks of this split only). Built from the probabilities every confirm row
keeps; the bootstrap itself is tested in test_analysis_stats.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analysis.confirm import Arm, _score_columns, _summary
from analysis.report import IMAGE_CI, RUNNER_UP_NOTE, write_report
from analysis.schema import CONFIRM_SCHEMA
from analysis.stats import mean_ci
from analysis.tables import image_interval, load_confirm_frame, paired_difference
from hand_results import BEST, SWEEP, retina_confirm, retina_results
from medvit.metrics import evaluate

N_IMAGES = 200
GRADES = np.arange(N_IMAGES) % 5


def probabilities(predicted: np.ndarray) -> np.ndarray:
    """Five-grade probabilities whose most probable grade is ``predicted``."""
    scores = np.full((len(predicted), 5), 0.1)
    scores[np.arange(len(predicted)), predicted] = 0.6
    return scores


def run(right: int, shift: int = 0) -> np.ndarray:
    """A run's probabilities: the first ``right`` images (after rolling by ``shift``) graded
    right, the others one grade off."""
    wrong = np.roll(np.arange(N_IMAGES) >= right, shift)
    return probabilities(np.where(wrong, (GRADES + 1) % 5, GRADES))


def rows(runs: list[np.ndarray], label: str = "best", seeds=None, labels=GRADES, dataset="retinamnist") -> pd.DataFrame:
    """Confirm rows as `medsweep confirm` writes them (test metrics from the probabilities)."""
    seeds = seeds or [1000 + i for i in range(len(runs))]
    out = []
    for seed, scores in zip(seeds, runs):
        metrics = evaluate("ordinal-regression", labels, scores)
        out.append({"dataset": dataset, "sweep": SWEEP, "label": label, "seed": seed, "trial_id": BEST,
                    **{f"test_{m}": metrics[m] for m in ("acc", "auc", "qwk", "mae")},
                    **_score_columns(scores, labels)})
    return load_confirm_frame(pa.Table.from_pylist(out, schema=CONFIRM_SCHEMA))


def test_a_configuration_over_seeds_and_images_is_wider_than_over_seeds_alone():
    g = rows([run(120), run(122, 7), run(118, 31)])
    over_seeds = mean_ci(g["test_acc"])
    res = image_interval(g, n_resamples=1000)
    assert res.n == 3 and res.mean_diff == pytest.approx(g["test_acc"].mean())
    assert res.ci_low < over_seeds.ci_low < over_seeds.ci_high < res.ci_high
    # 60% right on 200 images: about the binomial half-width 0.068 at 95%
    assert res.ci_high - res.ci_low == pytest.approx(2 * 1.96 * np.sqrt(0.6 * 0.4 / N_IMAGES), rel=0.25)
    qwk = image_interval(g, metric="qwk", n_resamples=300)
    assert qwk.mean_diff == pytest.approx(g["test_qwk"].mean()) and qwk.ci_low < qwk.mean_diff < qwk.ci_high


def test_a_pair_is_matched_by_seed():
    ours = rows([run(130), run(128, 3), run(126, 9)], "ordinal")
    theirs = rows([run(120, 5), run(121), run(119, 2), run(100)], "ce", seeds=[1002, 1000, 1001, 1003])
    res = image_interval(ours, theirs, n_resamples=500)
    paired = ours.set_index("seed")["test_acc"] - theirs.set_index("seed")["test_acc"]
    assert res.n == 3 and res.mean_diff == pytest.approx(paired.dropna().mean())
    assert res.ci_low < res.mean_diff < res.ci_high
    same = image_interval(ours, ours, n_resamples=50)
    assert (same.mean_diff, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)


def test_no_interval_without_every_runs_probabilities_of_the_same_images():
    assert image_interval(retina_confirm()) is None  # a table from before the probabilities were kept
    assert image_interval(rows([run(120)])) is None  # one seed
    mixed = pd.concat([rows([run(120)]), rows([run(120)], seeds=[1001], labels=np.roll(GRADES, 1))])
    assert image_interval(mixed) is None  # `subset` draws other images per seed
    assert image_interval(rows([run(120), run(110)], dataset="pneumoniamnist"), metric="qwk") is None  # not graded
    with pytest.raises(ValueError, match="metric: expected 'acc' or 'qwk', got 'auc'"):
        image_interval(retina_confirm(), metric="auc")


def test_confirm_and_the_report_give_both_intervals(tmp_path):
    ordinal = rows([run(132), run(130, 3), run(129, 9)], "best")
    ce = rows([run(120, 5), run(121), run(119, 2)], "best alpha=0")
    both = pd.concat([ordinal, ce], ignore_index=True)
    arms = [Arm("best", BEST, {"alpha": 0.2}, "note", "ordinal"), Arm("best alpha=0", BEST, {"alpha": 0.0}, "n", "ce")]
    lines = _summary(both, arms, "head")
    assert any(line.startswith("best, 95% interval over seeds and test images (another draw of 200 test images, "
                               "not only this split's): ACC [") and "; QWK [" in line for line in lines)
    acc = next(line for line in lines if "minus cross-entropy ('best alpha=0'), test ACC, paired" in line)
    assert "Resampling the test images too (the split is one draw of patients): 95% CI [" in acc
    # +0.05 from 10 images more right, the rest graded alike: it would hold on another draw
    assert "the Ordinal Loss gain is larger than seed and test-image noise" in acc
    # the same +0.05 with the two losses right on other images: another draw could undo it
    elsewhere = pd.concat([rows([run(132, 80), run(130, 83), run(129, 89)], "best"), ce], ignore_index=True)
    acc = next(line for line in _summary(elsewhere, arms, "head") if "test ACC, paired" in line)
    assert "+0.0517" in acc and "not larger than seed and test-image noise" in acc
    _, md_path = write_report(retina_results(), tmp_path, confirm_parquet=both, figures=False)
    confirm = md_path.read_text().split("Confirmed configurations", 1)[1]
    assert f"| {IMAGE_CI} |" in confirm and "the Student-t interval speaks of this split only" in confirm
    assert "Over seeds and test images: [" in confirm
    # an older table, without the probabilities: the column says there is no value
    _, md_path = write_report(retina_results(), tmp_path / "old", confirm_parquet=retina_confirm(), figures=False)
    old = md_path.read_text().split("Confirmed configurations", 1)[1]
    assert "Over seeds and test images" not in old and "speaks of this split only" not in old


def test_the_report_says_what_a_runner_up_is_and_pairs_it_with_the_winner(tmp_path):
    both = pd.concat([rows([run(120), run(121, 4), run(119, 7)], "best"),
                      rows([run(130, 3), run(131), run(129, 9)], "rank 2")], ignore_index=True)
    _, md_path = write_report(retina_results(), tmp_path, confirm_parquet=both, figures=False)
    confirm = md_path.read_text().split("Confirmed configurations", 1)[1]
    assert RUNNER_UP_NOTE in confirm
    assert "test ACC of 'best' minus 'rank 2', paired over 3 seeds: -0.050" in confirm
    _, md_path = write_report(retina_results(), tmp_path / "winner", confirm_parquet=both[both["label"] == "best"],
                              figures=False)
    assert RUNNER_UP_NOTE not in md_path.read_text()


def test_paired_difference_pairs_the_seeds_both_ran():
    ours = rows([run(132), run(130, 3), run(129, 9)], "best")
    theirs = rows([run(120, 5), run(121)], "rank 2", seeds=[1001, 1000])  # seed 1002 missing, other order
    pair = paired_difference(ours, theirs)
    assert pair.seeds == [1000, 1001]
    assert np.allclose(pair.diffs, [(132 - 121) / N_IMAGES, (130 - 120) / N_IMAGES])
    assert pair.over_seeds.n == 2 and pair.over_seeds_and_images is not None
    assert paired_difference(ours, theirs, "auc").over_seeds_and_images is None  # no image interval for AUC
    one = paired_difference(ours, theirs[theirs["seed"] == 1000])
    assert one.seeds == [1000] and one.over_seeds is None and one.over_seeds_and_images is None
