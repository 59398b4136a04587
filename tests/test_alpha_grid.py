"""studies/recipe/alpha_grid.py: the paper's Table 2 over seeds, and how each way of choosing
alpha (fixed, on validation, on test) reads the same runs."""

from __future__ import annotations

import pytest

from studies.recipe import alpha_grid
from studies.recipe.records import record_line

CONFIG = {"dataset": "retinamnist", "model": "medvit_28_tiny", "margin": 0.1, "epochs": 30}


def run(alpha: float, seed: int, val: float, acc: float, **config) -> dict:
    return {"arm": f"a{alpha}", "seed": seed, "config": {**CONFIG, "alpha": alpha, "seed": seed, **config},
            "result": {"select_score": val, "test": {"acc": acc, "auc": 0.7, "qwk": 0.5, "mae": 0.8}}}


# (alpha, seed, validation selection score, test ACC): validation prefers alpha 0 in seed 0 and
# 0.2 in seed 1; test prefers 0.4 in seed 0 and ties 0.2 and 0.4 in seed 1; seed 2 lacks 0.4.
RUNS = [run(0.0, 0, 0.60, 0.50), run(0.0, 1, 0.50, 0.52), run(0.0, 2, 0.5, 0.5),
        run(0.2, 0, 0.55, 0.53), run(0.2, 1, 0.58, 0.56), run(0.2, 2, 0.5, 0.5),
        run(0.4, 0, 0.52, 0.55), run(0.4, 1, 0.51, 0.56)]


def write(tmp_path, records) -> str:
    path = tmp_path / "r.jsonl"
    path.write_text("".join(record_line(r) for r in records))
    return str(path)


def test_each_alpha_is_paired_with_alpha_0_over_the_seeds_both_ran():
    rows = alpha_grid.per_alpha_rows(alpha_grid.grid(RUNS))
    assert rows[0].startswith("| 0 | 3 | ") and rows[0].endswith("| - | 0.552 |")
    # alpha 0.2 against 0 over seeds 0-2: +0.03, +0.04, 0
    assert rows[1].startswith("| 0.2 | 3 | 0.543 +- 0.040 | 0.530 +- 0.030 |")
    assert "| 0.023 +- 0.021 [-0.028, +0.075] (2 / 0) | 0.594 |" in rows[1]
    # alpha 0.4 over seeds 0-1 only: +0.05, +0.04
    assert "| 0.045 +- 0.007 [-0.019, +0.109] (2 / 0) | 0.557 |" in rows[2]


def test_alpha_is_chosen_per_seed_on_validation_or_on_test_over_the_seeds_that_ran_every_alpha():
    fixed, on_val, on_val_for_all, on_test, on_test_for_all = alpha_grid.choice_rows(alpha_grid.grid(RUNS))
    assert fixed.startswith("| fixed at 0 (cross-entropy) | 0: 2 | 0.510 +- 0.014 | - |")
    # validation keeps alpha 0 in seed 0 (test 0.50) and 0.2 in seed 1 (0.56)
    assert "| 0: 1, 0.2: 1 | 0.530 +- 0.042 | 0.020 +- 0.028 [" in on_val
    # test keeps 0.4 in seed 0 and, of the tie in seed 1, the smaller alpha 0.2
    assert "| 0.2: 1, 0.4: 1 | 0.555 +- 0.007 | 0.045 +- 0.007 [" in on_test
    # mean selection scores over seeds 0-1: 0.55, 0.565, 0.515; mean test ACC: 0.51, 0.545, 0.555
    assert "| 0.2: 2 | 0.545 +- 0.021 | 0.035 +- 0.007 [" in on_val_for_all
    assert "| 0.4: 2 | 0.555 +- 0.007 | 0.045 +- 0.007 [" in on_test_for_all


def test_main_prints_both_tables(capsys):
    alpha_grid.main(alpha_grid.grid(RUNS))
    out = capsys.readouterr().out
    assert "Choosing alpha among 0, 0.2, 0.4, per seed, over the 2 seeds that ran every alpha:" in out
    assert out.count("\n| ") == (1 + 3) + (1 + 5)  # each table's header and rows


@pytest.mark.parametrize("records, message", [
    ([*RUNS, run(0.2, 3, 0.5, 0.5, epochs=50)], "records: epochs differs (30 and 50); the grid compares runs"),
    ([*RUNS, run(0.2, 1, 0.5, 0.5)], "records: alpha 0.2 seed 1 recorded twice"),
    (RUNS[3:], "records: no run at alpha 0, the baseline every row is paired with"),
    ([RUNS[0], run(0.2, 1, 0.5, 0.5)], "records: no seed ran every alpha"),
])
def test_records_that_do_not_form_a_grid_are_one_line_with_exit_2(tmp_path, capsys, records, message):
    with pytest.raises(SystemExit) as exit_info:
        alpha_grid.parse_args([write(tmp_path, records)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"alpha_grid.py: error: {message}")
