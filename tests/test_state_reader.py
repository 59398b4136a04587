"""sweeps.folder.read_experiment_state: Ray rewrites its experiment state in place after every
result, so `status`, `collect` and `report` beside a running sweep can catch it half written
(25 of 263,571 reads in 25 s of a real 2-trial sweep). A half-written read is read again."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from sweeps import folder
from sweeps.folder import parse_experiment_state, read_experiment_state

STATE = json.dumps({"trial_data": [["{}", "{}"]] * 200, "runner_data": {"x": "y" * 20000}})


# Ray's copy, as a process of its own: truncate, write half, a moment later the rest, every 50 ms.
REWRITE_IN_PLACE = """
import sys, time
path, state = sys.argv[1], open(sys.argv[1]).read()
print("rewriting", flush=True)
while True:
    with open(path, "w") as f:
        f.write(state[: len(state) // 2])
        f.flush()
        time.sleep(0.002)
        f.write(state[len(state) // 2:])
    time.sleep(0.05)
"""


def test_a_state_read_while_it_is_rewritten_in_place_is_read_whole(tmp_path, monkeypatch):
    # The writer's half-written moment is 2 ms; 5 reads 50 ms apart outlast a busy machine's stall.
    monkeypatch.setattr(folder, "STATE_READ_PAUSE_S", 0.05)
    path = tmp_path / "experiment_state-2026-12-06_16-00-00.json"
    path.write_text(STATE)
    writer = subprocess.Popen([sys.executable, "-c", REWRITE_IN_PLACE, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "rewriting"
        half_read = 0
        for _ in range(80):
            try:
                parse_experiment_state(path.read_text(), str(path))
            except ValueError:
                half_read += 1  # what a single read meets
            assert read_experiment_state(path)["runner_data"] == {"x": "y" * 20000}
            time.sleep(0.001)
    finally:
        writer.kill()
        writer.wait()
    assert half_read > 0, "the writer never left the file half written: the test shows nothing"


def test_a_state_that_stays_corrupted_is_still_refused(tmp_path):
    path = tmp_path / "experiment_state-2026-12-06_16-00-00.json"
    path.write_text(STATE[:100])
    start = time.monotonic()
    with pytest.raises(ValueError, match="corrupted experiment state"):
        read_experiment_state(path)
    assert time.monotonic() - start < 2


def test_the_state_names_the_trial_folders_a_resume_continues(tmp_path):
    """What the fault tests wait for before they kill a driver: Ray saves its state at most every
    few seconds, and a trial started since would be started anew by the resume."""
    assert folder.state_trial_folders(tmp_path) == set()
    items = [[json.dumps({"trial_id": "a", "relative_logdir": "train_a"}), "{}"],
             [json.dumps({"trial_id": "b"}), "{}"], ["not json", "{}"]]
    older = [[json.dumps({"trial_id": "c", "relative_logdir": "train_c"}), "{}"]]
    (tmp_path / "experiment_state-2026-12-06_10-00-00.json").write_text(json.dumps({"trial_data": older,
                                                                                    "runner_data": {}}))
    (tmp_path / "experiment_state-2026-12-06_10-00-05.json").write_text(json.dumps({"trial_data": items,
                                                                                    "runner_data": {}}))
    assert folder.state_trial_folders(tmp_path) == {"train_a"}  # the newest by name; b has no folder yet
