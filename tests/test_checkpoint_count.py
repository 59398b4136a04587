"""studies/recipe/checkpoint_count.py: the checkpoint rule replayed over recorded runs."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

from studies.recipe import checkpoint_count


def record(dataset: str, best_epochs: list[int], window: int = 1) -> dict:
    epochs = [{"epoch": e, "best_epoch": b, "diverged": False} for e, b in enumerate(best_epochs, start=1)]
    return {"config": {"dataset": dataset, "select_window": window}, "epochs": epochs}


def test_each_run_counts_its_nth_last_and_newly_selected_epochs(tmp_path, capsys):
    runs = [record("retinamnist", [1, 2, 2, 2, 2, 2]), record("retinamnist", [1, 1, 1, 4, 4, 6])]
    path = tmp_path / "runs.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in [*runs, {"config": {"dataset": "x"}, "epochs": []}])
    assert [checkpoint_count.checkpoints(r["epochs"], 4) for r in runs] == [4, 3]  # 1 2 4 6; 1 4 6
    checkpoint_count.main([str(path)], every=(1, 4, 100))
    out = capsys.readouterr().out
    assert "| retinamnist | 6 | 1 | 2 | 6.0 (6-6) | 3.5 (3-4) | 3.0 (3-3) |" in out
    assert "| x |" not in out  # a record without epochs is not a run


def test_a_bad_every_is_one_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(record("retinamnist", [1, 2])) + "\n")
    run = subprocess.run([sys.executable, "-m", "studies.recipe.checkpoint_count", str(path), "--every", "0"],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == "checkpoint_count.py: error: argument --every: a whole number >= 1, got '0'"
