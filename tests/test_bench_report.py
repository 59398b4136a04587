"""The report benchmark's quick form runs: its synthetic sweep folders are what the launcher
writes today (the packaged specs, params.json holding only searched values), so collect and the
report read them as real ones. It once wrote a spec without `search`, and failed unnoticed."""

from __future__ import annotations

import pytest

from benchmarks.bench_report import main


# A file left open warns only when it is collected; as an error here the bench cannot leak one.
@pytest.mark.filterwarnings("error::ResourceWarning", "error::pytest.PytestUnraisableExceptionWarning")
def test_quick_form_collects_every_synthetic_trial_and_prints_its_table(capsys):
    main(["--trials", "12", "--epochs", "6", "--repeat", "1"])
    out = capsys.readouterr().out
    assert "synthesised 12 trials" in out
    assert "| collect 12 trials -> new Parquet" in out
    assert "| write_report, tables + figures + HTML" in out
