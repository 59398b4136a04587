"""studies/recipe/summarize.py: the paired difference between arms and the test-selected rule."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analysis.stats import expected_best_of, seeds_needed
from medvit.data import load_dataset
from medvit.metrics import best_class_offsets
from studies.recipe import summarize
from studies.recipe.records import read_records
from studies.recipe.run_arm import append_record


def _record(arm: str, seed: int, acc: float, test_accs: list[float], selected: int, auc: float | None = None,
            val_accs: list[float] | None = None) -> dict:
    epochs = [{"val_acc": v, "test_acc": a, "test_qwk": None} for a, v in zip(test_accs, val_accs or [0.5] * len(test_accs))]
    test = {"acc": acc} | ({"auc": auc} if auc is not None else {})
    return {"arm": arm, "seed": seed, "config": {"dataset": "retinamnist", "select_window": 1},
            "result": {"test": test, "selected_epoch": selected}, "epochs": epochs}


def test_paired_differences_use_the_seeds_both_arms_ran():
    runs = {
        "retinamnist a": [_record("a", 0, 0.50, [0.5], 1), _record("a", 1, 0.52, [0.5], 1),
                          _record("a", 2, 0.54, [0.5], 1)],
        "retinamnist b": [_record("b", 1, 0.55, [0.5], 1), _record("b", 2, 0.53, [0.5], 1),
                          _record("b", 3, 0.60, [0.5], 1)],
    }
    ((arm, base, seeds, diffs),) = summarize.paired_differences(runs)
    assert (arm, base, seeds) == ("retinamnist b", "retinamnist a", [1, 2])
    assert [round(d, 6) for d in diffs] == [0.03, -0.01]


def test_a_named_baseline_is_paired_with_every_other_arm_of_its_dataset(tmp_path, monkeypatch, capsys, real_root):
    monkeypatch.setenv("MEDMNIST_ROOT", str(real_root))
    runs = {
        "retinamnist a": [_record("a", 0, 0.50, [0.5], 1), _record("a", 1, 0.52, [0.5], 1)],
        "retinamnist b": [_record("b", 0, 0.55, [0.5], 1), _record("b", 1, 0.53, [0.5], 1)],
        "retinamnist c": [_record("c", 0, 0.60, [0.5], 1), _record("c", 1, 0.50, [0.5], 1)],
    }
    rows = summarize.paired_differences(runs, baseline="retinamnist b")
    assert [(arm, base) for arm, base, *_ in rows] == [("retinamnist a", "retinamnist b"),
                                                        ("retinamnist c", "retinamnist b")]
    assert [round(d, 6) for d in rows[1][3]] == [0.05, -0.03]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for records in runs.values() for r in records))
    assert summarize.parse_args([str(path), "--baseline", "b"]) == ([str(path)], "b")
    summarize.main([str(path)], baseline="b")
    assert "| retinamnist c | retinamnist b | 0 1 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        summarize.main([str(path)], baseline="d")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "summarize.py: error: --baseline: no arm 'd' in the records; allowed: a, b, c\n"


def test_paired_auc_differences_skip_the_seeds_without_an_auc():
    runs = {
        "retinamnist a": [_record("a", 0, 0.5, [0.5], 1, auc=0.70), _record("a", 1, 0.5, [0.5], 1, auc=0.72)],
        "retinamnist b": [_record("b", 0, 0.5, [0.5], 1, auc=0.75), _record("b", 1, 0.5, [0.5], 1)],
    }
    ((_, _, seeds, diffs),) = summarize.paired_differences(runs, summarize.selected("auc"))
    assert seeds == [0] and [round(d, 6) for d in diffs] == [0.05]


def rule_rows(tmp_path, record: dict) -> tuple[dict[str, str], str]:
    """summarize.py's output for one record: its selection rules' test ACC cells, and all of it."""
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(record) + "\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summarize.main([str(path)])
    rows = {line.split(" | ")[1]: line.split(" | ")[2] for line in out.getvalue().splitlines()
            if line.startswith(f"| {record['config']['dataset']} a | ")}
    return rows, out.getvalue()


def test_selecting_on_test_is_its_own_rule(tmp_path, monkeypatch, real_root):
    monkeypatch.setenv("MEDMNIST_ROOT", str(real_root))
    rows, out = rule_rows(tmp_path, _record("a", 0, 0.50, [0.40, 0.61, 0.50], selected=3))
    assert rows["best epoch on test (what selecting on test would report)"].startswith("0.610")
    assert rows["trailing mean of 1 (what ran)"].startswith("0.500")
    assert rows["last epoch"].startswith("0.500")
    assert "paired difference" not in out  # one arm: nothing to pair


def test_a_binary_run_has_the_decision_threshold_chosen_on_validation_and_on_test(tmp_path, monkeypatch, real_root):
    monkeypatch.setenv("MEDMNIST_ROOT", str(real_root))
    labels = load_dataset("pneumoniamnist").labels
    y_val, y_test = (labels[split].numpy().ravel() for split in ("val", "test"))
    # validation puts its cut at 0.25; on test every score is under 0.5 and 0.25 calls every image pneumonia
    val = np.where(y_val == 1, 0.3, 0.2)
    test = np.where(y_test == 1, 0.45, 0.3)
    record = _record("a", 0, float((y_test == 0).mean()), [0.5], 1) | {
        "scores": {"val_scores": np.stack([1 - val, val], 1).tolist(), "test_scores": np.stack([1 - test, test], 1).tolist()}}
    record["config"]["dataset"] = "pneumoniamnist"
    rows, _ = rule_rows(tmp_path, record)
    assert rows["decision threshold chosen on validation (the selected epoch)"] == f"{(y_test == 1).mean():.3f} +- 0.000"
    assert rows["decision threshold chosen on test (what tuning it on test would report)"] == "1.000 +- 0.000"
    # the test split's pneumonia share (62.5 %, below training's 74 %) moves the cut above 0.45: all healthy
    assert rows["threshold for the test split's positive share (a test-label statistic)"] == f"{(y_test == 0).mean():.3f} +- 0.000"
    assert "threshold for the positive share EM estimates from the unlabeled test scores" in rows
    retina = _record("a", 0, 0.5, [0.5], 1) | {"scores": {f"{split}_scores": np.full((n, 5), 0.2).tolist()
                                                         for split, n in (("val", 120), ("test", 400))}}
    assert "decision threshold" not in rule_rows(tmp_path, retina)[1]  # a binary task's rule only


def test_choices_on_test_stack_into_the_best_run_of_three_and_of_all(tmp_path, monkeypatch, real_root):
    monkeypatch.setenv("MEDMNIST_ROOT", str(real_root))
    y_test = load_dataset("retinamnist").labels["test"].numpy()
    rng = np.random.default_rng(0)
    records = []
    both = [0.60, 0.56, 0.61, 0.57]  # each run's best epoch with the rule chosen on test at every epoch
    for seed, (honest, on_test) in enumerate([(0.50, 0.55), (0.52, 0.53), (0.51, 0.58), (0.49, 0.54)]):
        scores = rng.dirichlet(np.ones(5), (len(y_test)))
        record = _record("a", seed, honest, [honest, on_test], 1) | {
            "scores": {"val_scores": rng.dirichlet(np.ones(5), 120).tolist(), "test_scores": scores.tolist()}}
        for epoch, rule_acc in zip(record["epochs"], (both[seed] - 0.02, both[seed])):
            epoch["test_rule_acc"] = rule_acc
        records.append(record)
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summarize.main([str(path)])
    lines = out.getvalue().splitlines()
    rule = [best_class_offsets(y_test, np.array(r["scores"]["test_scores"]))[1] for r in records]
    assert all(r > 0.2 for r in rule)  # chance is 0.2: the offsets find the labels' largest class at least
    (rule_row,) = [line for line in lines if "class offsets chosen on test" in line]
    assert rule_row.split(" | ")[2] == summarize.fmt(rule)
    header = next(i for i, line in enumerate(lines) if "test acc, epoch chosen on val (honest)" in line)
    cells = lines[header + 2].split(" | ")
    epoch = [0.55, 0.53, 0.58, 0.54]
    assert cells[2:6] == [summarize.fmt([0.50, 0.52, 0.51, 0.49]), summarize.fmt(epoch), summarize.fmt(rule),
                          summarize.fmt(both)]
    assert cells[6] == " / ".join(f"{expected_best_of(v, 3):.3f}" for v in (epoch, rule, both))
    assert cells[7].removesuffix(" |") == f"{max(epoch):.3f} / {max(rule):.3f} / {max(both):.3f}"
    # records without the rule's ACC at every epoch cannot stack the two: their cells say so
    for record in records:
        del record["epochs"][0]["test_rule_acc"]
    assert summarize.both_chosen_on_test(records[0]) is None


def test_the_paired_table_has_every_shared_test_metric_against_the_first_arm(tmp_path, monkeypatch, real_root):
    # The recipe README states paired QWK and MAE; the command it gives must print them.
    monkeypatch.setenv("MEDMNIST_ROOT", str(real_root))
    lines = []
    for arm, acc, qwk, mae, test_accs in (("a", 0.50, 0.40, 0.70, [0.40, 0.55]), ("b", 0.53, 0.46, 0.60, [0.50, 0.62])):
        for seed in (0, 1):
            record = _record(arm, seed, acc + seed / 100, test_accs, 1, auc=0.7)
            record["result"]["test"] |= {"qwk": qwk, "mae": mae}
            lines.append(json.dumps(record))
    lines.append(json.dumps(_record("c", 1000, 0.5, [0.5], 1)))  # fresh seeds: nothing to pair with
    path = tmp_path / "ab.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summarize.main([str(path)])
    header = next(line for line in out.getvalue().splitlines() if "| against |" in line)
    assert re.findall(r"of test (\w+)", header) == ["acc", "auc", "qwk", "mae", "acc"]
    assert header.split(" | ")[-2] == "paired difference of test acc, epoch chosen on test"
    assert header.split(" | ")[-1].startswith("seeds to find that ACC difference")
    (row,) = [line for line in out.getvalue().splitlines() if line.startswith("| retinamnist b | retinamnist a |")]
    assert row.split(" | ")[2:] == ["0 1", "0.030 +- 0.000 (+0.030, +0.030)", "0.000 +- 0.000", "0.060 +- 0.000", "-0.100 +- 0.000",
                                   "0.070 +- 0.000", "- |"]  # no spread: no t-test
    assert "| retinamnist c | retinamnist a | none shared | - | - | - | - | - | - |" in out.getvalue()


def test_a_paired_cell_gives_the_95_percent_interval_of_the_mean_difference():
    # The README's intervals for the Ordinal Loss come from this cell: the Student-t interval of
    # the per-seed differences' mean.
    diffs = [0.037, -0.022, 0.005, 0.020]
    t = stats.t.ppf(0.975, len(diffs) - 1) * np.std(diffs, ddof=1) / np.sqrt(len(diffs))
    mean = np.mean(diffs)
    assert summarize.paired_cell(diffs) == (f"{mean:.3f} +- {np.std(diffs, ddof=1):.3f} "
                                            f"[{mean - t:+.3f}, {mean + t:+.3f}]")
    assert summarize.paired_cell([0.03, 0.03]) == "0.030 +- 0.000"  # no spread: no interval
    assert summarize.paired_cell([]) == "-"


def test_seeds_to_find_a_paired_difference():
    diffs = [0.037, -0.022, 0.005]
    assert summarize.seeds_to_find(diffs) == str(seeds_needed(float(np.std(diffs, ddof=1)), float(np.mean(diffs))))
    assert summarize.seeds_to_find([0.03, -0.03, 0.0001]) == "more than 1,000"
    assert summarize.seeds_to_find([0.03]) == summarize.seeds_to_find([0.01, 0.01]) == "-"


def test_gzipped_records_read_as_plain_ones(tmp_path, monkeypatch, real_root):
    monkeypatch.setenv("MEDMNIST_ROOT", str(real_root))
    line = json.dumps(_record("a", 0, 0.50, [0.40, 0.61, 0.50], selected=3)) + "\n"
    (tmp_path / "a.jsonl").write_text(line)
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write(line)
    outputs = []
    for name in ("a.jsonl", "a.jsonl.gz"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            summarize.main([str(tmp_path / name)])
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] and "0.610" in outputs[0]


def test_run_arm_appends_to_a_gzipped_record_file_that_reads_back_whole(tmp_path, capsys):
    # The shipped records are gzipped; a study that adds seeds to one appends a gzip member.
    path = tmp_path / "a.jsonl.gz"
    records = [_record("a", seed, 0.5, [0.4, 0.5], selected=2) | {"wall_s": 1.0} for seed in (0, 1)]
    for record in records:
        append_record(str(path), record)
    assert list(read_records([path])) == records
    assert gzip.open(path, "rt").read().count("\n") == 2


def test_a_run_of_another_window_is_also_read_with_the_default_rule(tmp_path, monkeypatch, real_root):
    """The paper's recipe selects the best single epoch; the table adds what our default's
    trailing mean of 5 would have picked from the same runs."""
    monkeypatch.setenv("MEDMNIST_ROOT", str(real_root))
    val = [0.2] * 5 + [0.9] + [0.5] * 5  # one lucky epoch (index 5), then a plateau
    rows, _ = rule_rows(tmp_path, _record("a", 0, 0.05, [i / 100 for i in range(11)], 6, val_accs=val))
    assert rows["best single epoch (raw val_acc)"].startswith("0.050")
    assert rows["trailing mean of 5 of val_acc (the default rule)"].startswith("0.090")  # 0.9 and four 0.5


def test_trailing_pick_is_the_trainers_selection():
    """On the shipped runs of the default recipe, the epoch each Trainer selected."""
    records = [r for r in read_records([Path(__file__).resolve().parents[1] / "reports/recipe/b.jsonl.gz"])
               if r["config"]["select_metric"] == "val_acc" and not any(e.get("diverged") for e in r["epochs"])]
    assert len(records) >= 5 and {r["config"]["select_window"] for r in records} == {5}
    for r in records:
        val = np.array([e["val_acc"] for e in r["epochs"]])
        assert summarize.trailing_pick(val, 5) == r["result"]["selected_epoch"] - 1


def test_prior_threshold_moves_the_cut_with_the_positive_share():
    assert summarize.prior_threshold(0.74, 0.74) == pytest.approx(0.5)
    assert summarize.prior_threshold(0.5, 0.25) == pytest.approx(0.75)  # odds 1:3 against: three times as sure
    assert summarize.prior_threshold(0.5, 0.75) == pytest.approx(0.25)


def test_em_finds_the_positive_share_of_unlabeled_images_from_calibrated_scores():
    rng = np.random.default_rng(0)
    y = rng.random(20_000) < 0.3  # trained on half positives, tested on 30 %
    x = rng.normal(np.where(y, 1.0, -1.0), 1.0)
    calibrated = 1 / (1 + np.exp(-2 * x))  # the posterior for two unit Gaussians at +-1 under a 50 % prior
    assert summarize.em_positive_share(calibrated, 0.5) == pytest.approx(0.3, abs=0.01)
    assert calibrated.mean() > 0.33  # the plain average is pulled towards the training share
