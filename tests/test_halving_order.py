"""studies/recipe/halving_order.py: ASHA's winner over arrival orders against synchronous
halving and FIFO, and ASHA's top K re-ranked on another seed's validation, all replayed on
whole recorded trials and scored on the other training seeds."""

from __future__ import annotations

import gzip
import json

import pytest

from studies.recipe import halving_order
from studies.recipe.rung_readout import asha_ranking, rungs
from sweeps.spec import load_spec

SPEC = "retinamnist-cpu"  # ASHA grace 4, reduction 2, rungs 4, 8, 16 of 20 epochs


def test_synchronous_halving_judges_every_trial_at_once_whatever_the_order():
    late = [0.5] * 4 + [0.9] * 16  # a late bloomer: the lowest-but-one at the first rung, the best after it
    scores = [late, [0.6] * 20, [0.7] * 20, [0.4] * 20]
    spec = load_spec(SPEC)
    # ASHA: arriving first, the late bloomer meets no cut and wins; arriving after two better
    # trials, it is stopped at epoch 4 and the steady 0.7 wins
    assert asha_ranking(scores, [0, 1, 2, 3], spec)[0][0] == 0
    assert asha_ranking(scores, [2, 1, 0, 3], spec)[0][0] == 2
    # synchronous: at epoch 4 the cut is the median of all four (0.55), so 0 and 3 stop there,
    # 1 at epoch 8 (the median of 0.6 and 0.7), 2 runs to the end
    assert halving_order.synchronous_halving(scores, rungs(spec), 2) == (2, 4 + 8 + 20 + 4)
    reordered = [scores[i] for i in (3, 2, 1, 0)]
    assert halving_order.synchronous_halving(reordered, rungs(spec), 2) == (1, 36)  # the same trial, renumbered


# validation ACC per training seed, and test ACC, of three configs (every epoch alike): seed 0
# ranks config 1 first; seeds 1 and 2 rank config 0 first, which is also the better on test
VAL = {0: (0.50, 0.60, 0.40), 1: (0.60, 0.50, 0.40), 2: (0.60, 0.50, 0.40)}
TEST = (0.55, 0.45, 0.40)


def record(index: int, seed: int) -> dict:
    """A binary task's record (no QWK, as PneumoniaMNIST's): the study reads ACC only."""
    epoch = {f"{prefix}{split}_acc": value for prefix in ("", "bn_")
             for split, value in (("val", VAL[seed][index]), ("test", TEST[index]))}
    return {"arm": SPEC, "seed": seed, "config_index": index,
            "config": {"alpha": 0.0, "margin": 0.1, "augment": "shift", "model": "medvit_28_tiny",
                       "lr": 1e-3 * (index + 1), "weight_decay": 0.05, "select_window": 5, "seed": seed},
            "epochs": [epoch] * 20}


def write(path, records) -> str:
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return str(path)


def test_main_scores_each_choice_on_the_other_seeds(tmp_path, capsys):
    draw = write(tmp_path / "draw.jsonl.gz", [record(i, s) for i in range(3) for s in VAL])
    halving_order.main(["--spec", SPEC, "--orders", "4", "--draw", draw, "--by-config"])
    out = capsys.readouterr().out
    # seed 0's sweep chooses config 1 (0.45 on test), seeds 1 and 2 choose config 0 (0.55), in
    # every order and under every scheduler
    assert "| 1, 0 | 1 of 3 | 100% | 0.450 [0.450, 0.450] | 0.450 | 0.450 | yes |" in out
    assert "| 1, 2 | 1 of 3 | 100% | 0.550 [0.550, 0.550] | 0.550 | 0.550 | yes |" in out
    assert "| synchronous minus ASHA | 0.000 +- 0.000 | |" in out
    # --by-config: the one config each sweep's orders name, with the spec's searched values
    assert "| 1, 0 | 1 | 100% | 0.450 | 0 | 0.1 | shift | medvit_28_tiny | 0.002 | 0.05 |" in out
    assert "| 1, 1 | 0 | 100% | 0.550 | 0 | 0.1 | shift | medvit_28_tiny | 0.001 | 0.05 |" in out
    # re-ranking the top 2 on another seed's validation: seed 0's sweep takes config 0 on either
    # fresh seed (+0.10); seed 1's takes config 1 on seed 0 (-0.10) and keeps config 0 on seed 2 (0)
    assert "| 2 | 0.000 +- 0.087 [-0.215, +0.215] | +0.100, -0.050, -0.050 |" in out


@pytest.mark.parametrize("argv, message", [
    (["--orders", "1"], "--orders: 1; allowed: 2 or more (the orders are what is compared)"),
    (["--spec", "retinamnist-table2"], "--spec: retinamnist-table2 uses scheduler 'fifo'; allowed: a spec with ASHA"),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, argv, message):
    draw = write(tmp_path / "draw.jsonl.gz", [record(i, s) for i in range(3) for s in VAL])
    with pytest.raises(SystemExit) as stop:
        halving_order.main(["--spec", SPEC, "--draw", draw, *argv])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)


def test_a_draw_whose_seeds_ran_different_configs_is_refused(tmp_path):
    draw = write(tmp_path / "draw.jsonl.gz", [record(i, s) for i in range(3) for s in (0, 1)] + [record(0, 2)])
    with pytest.raises(SystemExit, match="draw 1's training seeds ran different configs"):
        halving_order.main(["--spec", SPEC, "--draw", draw])
