"""studies/recipe/rank_metric.py: a sweep ranked on validation ACC or QWK, replayed on whole
recorded trials, each choice scored on the other training seeds."""

from __future__ import annotations

import gzip
import json

import pytest

from studies.recipe import rank_metric
from sweeps.spec import load_spec

# config index: alpha, validation ACC, validation QWK, test ACC, test QWK (every epoch alike)
CONFIGS = {0: (0.0, 0.60, 0.30, 0.50, 0.40),  # best on validation ACC
           1: (0.2, 0.50, 0.60, 0.55, 0.60),  # best on validation QWK
           2: (0.1, 0.40, 0.20, 0.45, 0.30)}


def record(index: int, seed: int, epochs: int = 20) -> dict:
    alpha, val_acc, val_qwk, test_acc, test_qwk = CONFIGS[index]
    test_acc += 0.01 * seed  # so a choice is seen to be scored on the other seed
    epoch = {f"{prefix}{split}_{m}": v for prefix in ("", "bn_")
             for split, m, v in (("val", "acc", val_acc), ("val", "qwk", val_qwk),
                                 ("test", "acc", test_acc), ("test", "qwk", test_qwk))}
    return {"arm": "retinamnist-cpu", "seed": seed, "config_index": index,
            "config": {"alpha": alpha, "select_window": 5, "seed": seed}, "epochs": [epoch] * epochs}


def write(path, records) -> str:
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return str(path)


def test_each_metric_keeps_its_own_config_scored_on_the_other_seeds():
    runs = rank_metric.draw_runs([record(i, s) for i in CONFIGS for s in (0, 1)])
    spec = load_spec("retinamnist-cpu")
    on_acc = rank_metric.outcomes([runs], "bn_", "acc", spec, orders=5)
    on_qwk = rank_metric.outcomes([runs], "", "qwk", spec, orders=5)
    for scheduler in ("FIFO", "ASHA"):
        # choosing on seed 0 scores seed 1's runs (+0.01), and the other way round
        assert on_acc[scheduler]["acc"] == pytest.approx([0.51, 0.50])
        assert on_acc[scheduler]["qwk"] == pytest.approx([0.40, 0.40]) and on_acc[scheduler]["alpha"] == [0.0, 0.0]
        assert on_qwk[scheduler]["acc"] == pytest.approx([0.56, 0.55])
        assert on_qwk[scheduler]["qwk"] == pytest.approx([0.60, 0.60]) and on_qwk[scheduler]["alpha"] == [1.0, 1.0]


def test_main_prints_both_tables(tmp_path, capsys):
    first = write(tmp_path / "a.jsonl.gz", [record(i, s) for i in CONFIGS for s in (0, 1)])
    second = write(tmp_path / "b.jsonl.gz", [record(i, 2) for i in CONFIGS])
    rank_metric.main(["--spec", "retinamnist-cpu", "--orders", "3", "--draw", first, second])
    out = capsys.readouterr().out
    assert "1 draws of trial configs, 3 sweeps (draw, training seed)" in out
    # seed 0's choice scored on seeds 1 and 2 (0.565), seed 1's on 0 and 2 (0.56), seed 2's on 0 and 1 (0.555)
    assert "| recomputed (bn_recompute) | val qwk | FIFO | 0.560 +- 0.005 | 0.600 +- 0.000 | 100% |" in out
    assert "| running statistics | val acc | ASHA | 0.510 +- 0.005 | 0.400 +- 0.000 | 0% |" in out
    # QWK-ranked minus ACC-ranked: +0.05 ACC and +0.2 QWK in every sweep
    assert "| running statistics | FIFO | 0.050 +- 0.000 | 0.200 +- 0.000 | +0.050, +0.050, +0.050 |" in out


def test_records_of_two_draws_given_as_one_or_a_run_twice_are_refused(tmp_path):
    other = record(0, 1)
    other["config"]["alpha"] = 0.5
    with pytest.raises(ValueError, match="config 0 differs between runs: give each draw its own --draw"):
        rank_metric.draw_runs([record(0, 0), other])
    with pytest.raises(ValueError, match="config 0 with seed 0 is recorded twice"):
        rank_metric.draw_runs([record(0, 0), record(0, 0)])
    one_seed = write(tmp_path / "one.jsonl.gz", [record(i, 0) for i in CONFIGS])
    with pytest.raises(SystemExit, match="draw 1 has one training seed"):
        rank_metric.main(["--spec", "retinamnist-cpu", "--draw", one_seed])


def test_a_missing_record_file_is_one_line(tmp_path, capsys):
    present = write(tmp_path / "a.jsonl.gz", [record(0, 0)])
    with pytest.raises(SystemExit) as stop:
        rank_metric.main(["--spec", "retinamnist-cpu", "--draw", present, str(tmp_path / "gone.jsonl.gz")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"error: --draw: no such file: {tmp_path / 'gone.jsonl.gz'}")


def test_a_binary_task_s_records_are_one_line(tmp_path):
    """Ranking on QWK needs an ordinal task: PneumoniaMNIST's records carry no val_qwk."""
    records = [record(i, s) for i in CONFIGS for s in (0, 1)]
    for r in records:
        r["epochs"] = [{k: v for k, v in e.items() if "qwk" not in k} for e in r["epochs"]]
    draw = write(tmp_path / "binary.jsonl.gz", records)
    with pytest.raises(SystemExit, match="records without val_qwk .*allowed: an ordinal task's records"):
        rank_metric.main(["--spec", "retinamnist-cpu", "--draw", draw])
