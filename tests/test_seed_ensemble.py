"""The seed ensemble of a confirmed configuration: its re-runs' test probabilities, kept in the
confirm table, averaged into one model (nothing chosen), beside the mean over seeds in the
confirm summary and the report. The end-to-end confirm run that writes the probabilities is in
test_analysis_cli.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analysis.confirm import _summary, Arm, _score_columns
from analysis.report import write_report
from analysis.schema import CONFIRM_SCHEMA
from analysis.tables import load_confirm_frame, seed_ensemble
from hand_results import BEST, SWEEP, retina_confirm, retina_results

# four test images cannot hold all five grades: their AUC is undefined, and said so
pytestmark = pytest.mark.filterwarnings("ignore:auc. ROC AUC is undefined")

LABELS = np.array([0, 1, 2, 0])
# Each run alone gets 2 of 4 right; averaged, they get all 4 (the runs err on different images).
RUN_A = [[0.7, 0.3, 0.0], [0.1, 0.2, 0.7], [0.0, 0.3, 0.7], [0.2, 0.8, 0.0]]
RUN_B = [[0.4, 0.6, 0.0], [0.1, 0.8, 0.1], [0.1, 0.5, 0.4], [0.9, 0.1, 0.0]]


def five_grades(probs: list[list[float]]) -> np.ndarray:
    """RetinaMNIST has 5 grades: the last two never predicted."""
    return np.pad(np.array(probs), ((0, 0), (0, 2)))


def confirm_rows(runs: list[list[list[float]]], labels=LABELS, dataset: str = "retinamnist") -> pd.DataFrame:
    """Confirm rows as `medsweep confirm` writes them, read back from Parquet."""
    rows = [{"dataset": dataset, "sweep": SWEEP, "label": "best", "seed": 1000 + i, "trial_id": BEST,
             **_score_columns(five_grades(run), labels)} for i, run in enumerate(runs)]
    return load_confirm_frame(pa.Table.from_pylist(rows, schema=CONFIRM_SCHEMA))


def test_the_runs_probabilities_are_averaged_into_one_model():
    ensemble = seed_ensemble(confirm_rows([RUN_A, RUN_B]))
    assert ensemble["n"] == 2 and ensemble["acc"] == 1.0 and ensemble["mae"] == 0.0
    # one run is no ensemble; runs of other test images (another subset) are not averaged
    assert seed_ensemble(confirm_rows([RUN_A])) is None
    mixed = pd.concat([confirm_rows([RUN_A]), confirm_rows([RUN_B], labels=np.array([0, 1, 2, 1]))])
    assert seed_ensemble(mixed) is None
    # a table from before the probabilities were kept, or a hand-made one
    assert seed_ensemble(retina_confirm()) is None
    assert seed_ensemble(confirm_rows([RUN_A, RUN_B]).assign(test_scores=None)) is None


def test_multi_label_runs_average_each_label():
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    a = np.array([[0.9, 0.6], [0.2, 0.9], [0.7, 0.4], [0.1, 0.2]])  # one label wrong
    b = np.array([[0.8, 0.2], [0.6, 0.7], [0.9, 0.8], [0.3, 0.1]])  # another wrong
    rows = pd.DataFrame([{"dataset": "chestmnist", "label": "best", "seed": s, **_score_columns(p, labels)}
                         for s, p in enumerate([a, b])])
    assert seed_ensemble(rows)["acc"] == 1.0


def test_confirm_summary_gives_the_ensemble_beside_the_mean():
    rows = confirm_rows([RUN_A, RUN_B]).assign(test_acc=[0.5, 0.5])
    lines = _summary(rows, [Arm("best", BEST, {"alpha": 0.0}, "note", "ce")], "head")
    assert "best [note], test over 2 seeds: ACC 0.5000 ± 0.0000" in lines[1]
    assert lines[3].startswith("best, seed ensemble (the 2 runs' test probabilities averaged into one model; "
                               "nothing chosen): ACC 1.0000")


def test_the_report_shows_the_ensemble_in_the_headline_and_the_confirm_table(tmp_path):
    conf = retina_confirm().query("label == 'best'").head(2).reset_index(drop=True)
    scored = confirm_rows([RUN_A, RUN_B])
    conf = conf.assign(trial_id=BEST, test_scores=scored["test_scores"], test_labels=scored["test_labels"])
    _, md_path = write_report(retina_results(), tmp_path, confirm_parquet=conf, figures=False)
    md = md_path.read_text()
    head = md[md.index("## Headline"):md.index("## What was swept")]
    assert "| Best configuration re-trained: mean ± std over 2 seeds |" in head
    assert "| Best configuration, seed ensemble: the 2 re-trained models' probabilities averaged | – | 1.000 |" in head
    confirm = md[md.index("Confirmed configurations"):]
    assert "Seed ensemble ACC" in confirm and "what deploying all of them would score" in confirm
    # without the probabilities (an older confirm table) neither appears
    _, md_path = write_report(retina_results(), tmp_path / "old", confirm_parquet=retina_confirm(), figures=False)
    assert "seed ensemble" not in md_path.read_text().lower()


@pytest.mark.parametrize("shape", [(4, 5), (4, 1)])
def test_a_runs_scores_and_labels_are_stored_a_list_per_image(shape):
    columns = _score_columns(np.full(shape, 0.25), np.arange(4))
    assert len(columns["test_scores"]) == len(columns["test_labels"]) == 4
    assert len(columns["test_scores"][0]) == shape[1] and columns["test_labels"][3] == [3]
