"""The studies' command lines (studies/, reproduced by the commands in reports/): bad input the
product refuses is one line and exit code 2, as from medsweep, not a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medvit.data import DataError
from studies import run_main

REPO = Path(__file__).resolve().parents[1]


def study(*args: str) -> subprocess.CompletedProcess:
    """A study run as reports/ says, in a subprocess that inherits this test's environment."""
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_a_user_error_is_one_line_and_exit_2(capsys):
    def main(flag: str) -> None:
        raise DataError(f"{flag} not found;\n  fetch it")

    with pytest.raises(SystemExit) as exit_:
        run_main("x.py", main, "/data/retinamnist.npz")
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "x.py: error: /data/retinamnist.npz not found; fetch it\n"


def test_a_bug_is_not_dressed_up_as_bad_input():
    def main() -> None:
        raise KeyError("a study's own bug keeps its traceback")

    with pytest.raises(KeyError):
        run_main("x.py", main)


def test_summarize_without_the_data_names_the_file_and_the_command_that_fetches_it(tmp_path, monkeypatch):
    records = tmp_path / "a.jsonl"
    records.write_text(json.dumps({"arm": "a", "seed": 0, "config": {"dataset": "retinamnist"},
                                   "result": {"test": {"acc": 0.5}, "selected_epoch": 1}, "epochs": []}) + "\n")
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("MEDMNIST_ROOT", str(empty))
    run = study("studies.recipe.summarize", str(records))
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""  # no half table before the error
    (line,) = run.stderr.splitlines()
    assert line.startswith("summarize.py: error: ") and f"{empty}/retinamnist.npz not found" in line
    assert "medsweep data download --dataset retinamnist" in line


def test_run_arm_with_a_bad_field_names_it_and_writes_nothing(tmp_path):
    out = tmp_path / "arm.jsonl"
    run = study("studies.recipe.run_arm", "--arm", "b", "--set", "model=nope", "--seeds", "0", "--out", str(out))
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("run_arm.py: error: model: unknown 'nope'; allowed: ")
    assert not out.exists()


def test_summarize_names_a_missing_record_file_and_has_help(tmp_path):
    run = study("studies.recipe.summarize", str(tmp_path / "none.jsonl"))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines()[-1] == f"summarize.py: error: records: no such file: {tmp_path / 'none.jsonl'}"
    assert "Traceback" not in run.stderr
    help_ = study("studies.recipe.summarize", "--help")
    assert help_.returncode == 0 and "records" in help_.stdout
