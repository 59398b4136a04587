"""sweeps.folder.read_result_lines / trial_id_from_folder: the one reader of a trial's result.json."""

from __future__ import annotations

import json

import pytest

from sweeps.folder import RESULT_FILE, read_result_lines, trial_id_from_folder


def _write(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RESULT_FILE).write_text(text)
    return folder / RESULT_FILE


def test_a_last_line_cut_short_is_skipped_and_a_broken_line_before_it_refused(tmp_path):
    lines = [json.dumps({"trial_id": "abcde_00001", "epoch": e}) for e in (1, 2)]
    path = _write(tmp_path / "t", "\n".join(lines) + '\n{"trial_id": "abc')
    assert [r["epoch"] for r in read_result_lines(path)] == [1, 2]
    _write(tmp_path / "t", lines[0] + "\n{not json\n" + lines[1] + "\n")
    with pytest.raises(ValueError, match=r"corrupted result \(line 2 is not a JSON object\)"):
        read_result_lines(path)
    assert read_result_lines(tmp_path / "missing" / RESULT_FILE) == []


def test_a_trials_id_is_its_first_reports_else_its_folders_name(tmp_path):
    named = tmp_path / "train_medvit_abcde_00003_3_alpha=0.2"
    _write(named, json.dumps({"trial_id": "fffff_00009", "epoch": 1}) + "\n")
    assert trial_id_from_folder(named) == "fffff_00009"
    _write(named, '{"epoch": 1, "trial_id": "ff')  # its only line still being written
    assert trial_id_from_folder(named) == "abcde_00003"
    assert trial_id_from_folder(tmp_path / "no_id_here") is None
