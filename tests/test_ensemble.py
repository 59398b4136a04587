"""Greedy ensemble selection (Caruana et al. 2004) on constructed validation scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import analysis.ensemble as ens
from analysis.ensemble import Candidate, build_ensemble, select_members
from medvit.selection import METRICS
from medvit.tasks import BINARY, MULTI_CLASS, ORDINAL


def _one_hot_scores(pred: np.ndarray, k: int, confidence: float) -> np.ndarray:
    scores = np.full((len(pred), k), (1 - confidence) / (k - 1))
    scores[np.arange(len(pred)), pred] = confidence
    return scores


def _complementary_case(n: int = 40, k: int = 3):
    """A: right on 60 %. B and C: each right on its own 55 %, confidently, and weakly wrong
    elsewhere, so B + C together are right everywhere. D: always wrong."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, n)
    wrong = (y + 1) % k
    a = _one_hot_scores(np.where(np.arange(n) < 0.6 * n, y, wrong), k, 0.6)
    b = np.where((np.arange(n) < 0.55 * n)[:, None], _one_hot_scores(y, k, 0.95), _one_hot_scores(wrong, k, 0.4))
    c = np.where((np.arange(n) >= 0.45 * n)[:, None], _one_hot_scores(y, k, 0.95), _one_hot_scores(wrong, k, 0.4))
    d = _one_hot_scores(wrong, k, 0.9)
    candidates = [Candidate(name, None, scores, {}) for name, scores in zip("ABCD", (a, b, c, d))]
    return y, candidates


def test_greedy_selection_finds_the_complementary_pair():
    y, candidates = _complementary_case()
    members = select_members(MULTI_CLASS, candidates, y, "acc")
    # A, the best single trial, is where greedy selection starts; D never helps
    assert {"B", "C"} <= set(members) and "D" not in members
    by_id = {c.trial_id: c for c in candidates}
    ensemble = ens.weighted_scores(members, {t: by_id[t].val_scores for t in members})
    assert (ensemble.argmax(1) == y).mean() == 1.0
    assert max((c.val_scores.argmax(1) == y).mean() for c in candidates) < 0.7
    # the best single trial is A (60 %, B and C 55 %), greedy's first pick, so a member
    assert ens.first_pick(MULTI_CLASS, candidates, y) == "A" and "A" in members
    assert ens.first_pick(MULTI_CLASS, candidates[1:], y) == "B"  # B and C tie: the earliest


def test_a_single_dominant_trial_is_the_whole_ensemble():
    y, candidates = _complementary_case()
    perfect = Candidate("P", None, _one_hot_scores(y, 3, 0.99), {})
    assert set(select_members(MULTI_CLASS, candidates + [perfect], y, "acc")) == {"P"}


def test_test_split_is_scored_only_after_members_are_fixed(monkeypatch):
    y, candidates = _complementary_case()
    fixed = []
    real_select = ens.select_members
    monkeypatch.setattr(ens, "select_members", lambda *a, **k: fixed.append(real_select(*a, **k)) or fixed[-1])
    scored = []

    def test_scores_of(candidate):
        assert fixed, "the test split was read before the members were chosen"
        scored.append(candidate.trial_id)
        return candidate.val_scores

    result = build_ensemble(MULTI_CLASS, candidates, y, y, test_scores_of)
    assert sorted(scored) == sorted(fixed[0])  # each member scored once, nobody else
    assert "D" not in scored
    assert {m["trial_id"] for m in result["members"]} == set(fixed[0])
    assert sum(m["weight"] for m in result["members"]) == pytest.approx(1.0)
    assert result["test"]["acc"] == 1.0


def test_ordinal_ensembles_report_decoded_metrics():
    y, candidates = _complementary_case(k=5)
    result = build_ensemble(ORDINAL, candidates, y, y, lambda c: c.val_scores)
    assert {"acc", "auc", "qwk", "mae", "qwk_decoded", "mae_decoded"} <= set(result["test"])


def test_the_winner_is_reported_beside_the_ensemble_and_scored_on_test_once():
    y, candidates = _complementary_case()
    scored = []
    result = build_ensemble(MULTI_CLASS, candidates, y, y, lambda c: scored.append(c.trial_id) or c.val_scores,
                            winner="D")
    assert "D" not in {m["trial_id"] for m in result["members"]} and scored.count("D") == 1
    assert result["winner"]["trial_id"] == "D" and result["winner"]["test"]["acc"] == 0.0
    assert "winner" not in build_ensemble(MULTI_CLASS, candidates, y, y, lambda c: c.val_scores)


def _validation_value(task, y, scores, metric):
    """The metric of averaged probabilities, computed here as the trainer would: MedMNIST
    metrics from the scores, the evaluation loss from their logarithm (softmax(log p) = p)."""
    import torch

    from medvit.losses import loss_for_task
    from medvit.metrics import evaluate

    if metric.from_scores:
        return evaluate(task, y, scores)[metric.key]
    return loss_for_task(task)(torch.from_numpy(np.log(scores)), torch.from_numpy(y)).item()


@pytest.mark.parametrize("metric, task", [(metric, task) for metric in METRICS.values()
                                          for task in (MULTI_CLASS, BINARY, ORDINAL) if task in metric.tasks],
                         ids=lambda value: getattr(value, "val_name", value))
def test_every_select_metric_builds_an_ensemble_no_worse_than_its_best_trial(metric, task):
    """Every metric a spec may select on (medvit.selection's table), in its own direction: the
    ensemble's validation value is at least as good as that of every trial alone."""
    y, candidates = _complementary_case(k=2 if task == BINARY else 3)
    result = build_ensemble(task, candidates, y, y, lambda c: c.val_scores, metric.val_name)
    assert result["members"] and {m["trial_id"] for m in result["members"]} <= set("ABCD")
    weights = {m["trial_id"]: m["weight"] for m in result["members"]}
    by_id = {c.trial_id: c.val_scores for c in candidates}
    ensemble = _validation_value(task, y, sum(w * by_id[t] for t, w in weights.items()), metric)
    alone = [_validation_value(task, y, c.val_scores, metric) for c in candidates]
    best_alone = max(alone) if metric.direction == "max" else min(alone)
    assert (ensemble >= best_alone - 1e-12) if metric.direction == "max" else (ensemble <= best_alone + 1e-12)


def test_no_candidates_is_one_line():
    with pytest.raises(ValueError, match="no finished trial"):
        select_members(MULTI_CLASS, [], np.zeros(3, dtype=int))


def _ensemble_cli(sweep_dir, tmp_path, capsys):
    from medsweep.cli import main

    code = main(["ensemble", str(sweep_dir), "--out", str(tmp_path / "out")])
    return code, capsys.readouterr().err.strip()


def _ensemble_json(sweep_dir, data_root, tmp_path, capsys) -> dict:
    """`medsweep ensemble` on a real sweep (CPU): its ensemble.json."""
    import json

    from medsweep.cli import main

    code = main(["ensemble", str(sweep_dir), "--out", str(tmp_path / "out"), "--data-root", str(data_root),
                 "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    return json.loads((tmp_path / "out" / ens.ENSEMBLE_FILE).read_text())


def test_a_folder_without_trials_is_one_line(tmp_path, capsys):
    code, err = _ensemble_cli(tmp_path, tmp_path, capsys)
    assert code == 2 and "\n" not in err and "no finished trial checkpoint" in err
    assert not (tmp_path / "out").exists()


def test_a_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    trial = tmp_path / "sweep" / "train_medvit_0001"
    (trial / "checkpoint_000000").mkdir(parents=True)
    (trial / "checkpoint_000000" / "state.pt").write_bytes(b"not a torch file")
    (trial / "result.json").write_text('{"trial_id": "0001"}\n')
    code, err = _ensemble_cli(tmp_path / "sweep", tmp_path, capsys)
    assert code == 2 and "\n" not in err and "not a readable medsweep checkpoint" in err


def test_ensemble_of_a_real_sweep_scores_its_members_on_test(analysis_sweeps, tmp_path, capsys):
    """`medsweep ensemble` on the real smoke sweep: members are its trials, weights sum to 1,
    and the test metrics are those of the members' test probabilities averaged by weight."""
    from analysis.evaluate import load_checkpoint, load_eval_data
    from analysis_sweeps import RETINA
    from medvit.metrics import evaluate

    sweep = analysis_sweeps.dirs[RETINA]
    result = _ensemble_json(sweep, analysis_sweeps.data_root, tmp_path, capsys)
    candidates = {c.trial_id: c for c in ens.sweep_candidates(sweep)}
    assert result["candidates"] == len(candidates) >= 2
    assert {m["trial_id"] for m in result["members"]} <= set(candidates)
    assert sum(m["weight"] for m in result["members"]) == pytest.approx(1.0)
    data = load_eval_data(load_checkpoint(next(iter(candidates.values())).checkpoint)[1], str(analysis_sweeps.data_root))
    averaged = sum(m["weight"] * ens.test_scores(candidates[m["trial_id"]], data, "cpu") for m in result["members"])
    expected = evaluate(ORDINAL, data.labels["test"].numpy(), averaged)
    assert result["test"]["acc"] == pytest.approx(expected["acc"]) and result["test"]["auc"] == pytest.approx(expected["auc"])
    assert {"qwk", "mae", "qwk_decoded", "mae_decoded"} <= set(result["test"])
    winner = result["winner"]["trial_id"]
    # the winner is the sweep's best trial by the one ranking, the trial the tables name
    from analysis.collect import read_sweep
    from analysis.tables import rank_trials

    assert winner == rank_trials(read_sweep(sweep).to_pandas())["trial_id"].iloc[0]
    assert result["winner"]["test"]["acc"] == pytest.approx(
        evaluate(ORDINAL, data.labels["test"].numpy(), ens.test_scores(candidates[winner], data, "cpu"))["acc"])
    out = capsys.readouterr().out
    assert f"winner {winner} alone: acc" in out


def test_candidates_are_read_from_the_selection_files_alone_as_from_state(analysis_sweeps, tmp_path):
    """The candidate pass reads each checkpoint's small selection file, not its state.pt (which a
    bucket sweep would fetch whole for every trial); a checkpoint written before that file is
    read from its state.pt, with the same scores and config."""
    import shutil

    from analysis_sweeps import RETINA
    from medvit.checkpoint import CHECKPOINT_FILE, SELECTION_FILE

    real = analysis_sweeps.dirs[RETINA]
    read = {c.trial_id: c for c in ens.sweep_candidates(real)}
    assert len(read) >= 2 and all(Path(c.checkpoint, SELECTION_FILE).is_file() for c in read.values())
    from_state = tmp_path / "from_state"  # checkpoints written before the selection file
    shutil.copytree(real, from_state)
    for path in from_state.glob(f"*/checkpoint_*/{SELECTION_FILE}"):
        path.unlink()
    from_selection = tmp_path / "from_selection"  # every state.pt unreadable: never opened
    shutil.copytree(real, from_selection)
    for path in from_selection.glob(f"*/checkpoint_*/{CHECKPOINT_FILE}"):
        path.write_bytes(b"")
    for sweep in (from_state, from_selection):
        again = {c.trial_id: c for c in ens.sweep_candidates(sweep)}
        assert again.keys() == read.keys(), sweep
        for trial, candidate in again.items():
            np.testing.assert_array_equal(candidate.val_scores, read[trial].val_scores)
            assert candidate.config == read[trial].config and candidate.config["dataset"] == "retinamnist"


def test_ensemble_of_a_sweep_that_selects_on_val_loss(analysis_sweeps, tmp_path, capsys):
    """What issue 22 predicted: on a sweep selecting on val_loss, `medsweep ensemble` looked up
    evaluate(...)["loss"] and ended in a KeyError. The real sweep's checkpoints, told they
    selected on val_loss, now ensemble on the run's evaluation loss."""
    import shutil

    import torch

    from analysis_sweeps import RETINA
    from medvit.checkpoint import CHECKPOINT_FILE, read_selection, write_selection

    sweep = tmp_path / "sweep"
    shutil.copytree(analysis_sweeps.dirs[RETINA], sweep)
    for path in sweep.glob(f"*/checkpoint_*/{CHECKPOINT_FILE}"):
        state = torch.load(path, weights_only=True)
        state["config"]["select_metric"] = "val_loss"
        torch.save(state, path)
        selection = read_selection(path.parent)
        write_selection(path.parent, selection._replace(config={**selection.config, "select_metric": "val_loss"}))
    result = _ensemble_json(sweep, analysis_sweeps.data_root, tmp_path, capsys)
    assert result["metric"] == "val_loss" and result["members"] and "acc" in result["test"]


def test_ensemble_rules_study_scores_every_rule_on_a_real_sweep(analysis_sweeps, tmp_path, capsys):
    """studies/recipe/ensemble_rules.py: one record per sweep with every rule, the greedy rule's
    weights those of `medsweep ensemble`, and the summary table."""
    import json

    from analysis_sweeps import RETINA
    from studies.recipe import ensemble_rules as study

    sweep = analysis_sweeps.dirs[RETINA]
    study.main([str(sweep), "--data-root", str(analysis_sweeps.data_root), "--splits", "2", "--bags", "2",
                "--out", str(tmp_path / "rules.jsonl")])
    (row,) = [json.loads(line) for line in (tmp_path / "rules.jsonl").read_text().splitlines()]
    assert row["trials"] == len(ens.sweep_candidates(sweep)) and row["metric"] == "acc"
    assert set(study.RULES) <= set(row) and row["winner"]["members"] == 1 and row["all"]["members"] == row["trials"]
    assert all(0 <= row[r]["val_b"] <= 1 and 0 <= row[r]["test"] <= 1 for r in study.RULES)
    table = capsys.readouterr().out
    greedy = f"| greedy | {row['greedy']['val_b']:.3f} | +0.000 | {row['greedy']['test']:.3f} | +0.000 |"
    assert greedy in table and "nan" not in table  # one sweep: means alone, no spread
    from analysis_sweeps import PNEUMONIA

    mixed = [str(sweep), str(analysis_sweeps.dirs[PNEUMONIA])]  # selected on val_acc and on val_auc
    for bad, message in (([str(tmp_path / "missing")], "is not a folder"), ([str(sweep), "--bags", "0"], "--bags: 0"),
                         ([str(sweep), "--splits", "0"], "--splits: 0"),
                         (mixed, "they select on val_acc, val_auc; allowed: sweeps that select on one metric")):
        with pytest.raises(SystemExit) as exit_:
            study.main(bad)
        assert exit_.value.code == 2 and message in capsys.readouterr().err.strip().splitlines()[-1]
