"""The sweep-efficiency benchmark's replay of Ray Tune's ASHA on recorded curves: the tool
that chooses the packaged specs' ASHA defaults feeds the real scheduler, so it stops what ASHA
would stop."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_sweep_efficiency as bench


CURVES = [  # four trials, four epochs each
    [0.1, 0.2, 0.3, 0.4],
    [0.5, 0.5, 0.5, 0.5],
    [0.4, 0.6, 0.7, 0.9],
    [0.3, 0.1, 0.1, 0.1],
]


def test_asha_judges_each_trial_against_those_that_reached_the_rung_before_it():
    # Ray's ASHA, grace 1 x reduction 2 over 4 epochs: rungs at epochs 1 and 2. Trial 0 meets
    # empty rungs and runs on; trial 3 (0.3) is below the median of the three before it (0.4)
    spent, best = bench.replay_asha(CURVES, grace=1, reduction=2, mode="max")
    assert spent == 4 + 4 + 4 + 1 and best == 0.9


def test_a_stopped_trial_keeps_the_best_it_reached():
    curves = [[0.5, 0.5, 0.5, 0.5], [0.9, 0.1, 0.1, 0.1]]
    assert bench.replay_asha(curves, grace=2, reduction=2, mode="max") == (4 + 2, 0.9)  # 0.9 seen before the rung


def test_a_late_bloomer_is_lost_at_the_first_rung():
    curves = [[0.3] * 4, [0.1, 0.9, 0.9, 0.9], [0.2] * 4, [0.25] * 4]
    # trial 1 stops at epoch 1 (0.1 < 0.3); trial 2 passes epoch 1 (at the median 0.2), not epoch 2
    assert bench.replay_asha(curves, grace=1, reduction=2, mode="max") == (4 + 1 + 2 + 4, 0.3)


def test_min_mode_and_no_rung_inside_the_budget():
    losses = [[1 - v for v in curve] for curve in CURVES]
    assert bench.replay_asha(losses, grace=1, reduction=2, mode="min") == (13, pytest.approx(0.1))
    assert bench.replay_asha(CURVES, grace=4, reduction=2, mode="max") == (16, 0.9)  # FIFO


def test_asha_settings_parse_and_refuse():
    assert bench.asha_settings("4x2,2x3", {}) == [(4, 2), (2, 3)]
    spec = {"scheduler": {"type": "asha", "grace_period": 4, "reduction_factor": 2}}
    assert bench.asha_settings(None, spec) == [(4, 2)]
    with pytest.raises(SystemExit, match="--asha"):
        bench.asha_settings("four", spec)


def test_ties_stop_nothing_and_a_rung_metric_breaks_them():
    # every trial scores 0.2 for two epochs (EMA weights predicting one class): no rung stops any
    tied = [[0.2, 0.2, 0.5, 0.6], [0.2, 0.2, 0.3, 0.3], [0.2, 0.2, 0.4, 0.4], [0.2, 0.2, 0.7, 0.8]]
    assert bench.replay_asha(tied, grace=1, reduction=2, mode="max") == (16, 0.8)
    # compared on AUC instead: trial 1 (0.5 < 0.6) stops at epoch 1, trial 2 passes epoch 1 at the
    # median (0.55) and stops at epoch 2 (below 0.6); the best stays a score
    aucs = [[0.6] * 4, [0.5] * 4, [0.55] * 4, [0.7] * 4]
    assert bench.replay_asha(tied, 1, 2, "max", rungs=aucs, rung_mode="max") == (4 + 1 + 2 + 4, 0.8)
    losses = [[1 - v for v in curve] for curve in aucs]
    assert bench.replay_asha(tied, 1, 2, "max", rungs=losses, rung_mode="min") == (11, 0.8)


def test_replay_reads_finished_fifo_sweeps_and_refuses_others(tmp_path, capsys):
    from sweeps.folder import SPEC_FILE
    from sweeps.spec import load_spec, spec_from_dict

    def sweep(name, scheduler, epochs_run):
        data = load_spec("retinamnist-cpu").to_dict() | {"name": name, "scheduler": scheduler}
        data["train"]["epochs"] = 4
        folder = tmp_path / name
        folder.mkdir()
        (folder / SPEC_FILE).write_text(spec_from_dict(data).to_yaml())
        for i, (curve, auc) in enumerate(zip(CURVES, (0.6, 0.5, 0.7, 0.4))):
            trial = folder / f"trial_{i}"
            trial.mkdir()
            (trial / "params.json").write_text("{}")
            lines = [{"select_score": v, "val_auc": auc} for v in curve[:epochs_run]]
            (trial / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
        return str(folder)

    runs = bench.recorded_fifo_runs([sweep("fifo", {"type": "fifo"}, 4)])
    assert [[line["select_score"] for line in lines] for _, lines in runs[0][2]] == CURVES
    bench.print_replay(runs, bench.rung_metrics(None))
    table = capsys.readouterr().out
    assert "| select_score | 1 | 2 | 81% | +0.0000 | +0.0000 |" in table  # 13 of 16, as the first test
    assert "| val_auc | 1 | 2 |" in table
    with pytest.raises(SystemExit, match="needs a FIFO sweep"):
        bench.recorded_fifo_runs([sweep("asha", {"type": "asha", "grace_period": 1, "reduction_factor": 2}, 4)])
    with pytest.raises(SystemExit, match="needs a FIFO sweep whose trials all ran 4 epochs"):
        bench.recorded_fifo_runs([sweep("short", {"type": "fifo"}, 2)])
    with pytest.raises(SystemExit, match="no medsweep_spec.yaml"):
        bench.recorded_fifo_runs([str(tmp_path)])


def test_pooled_replay_draws_sweeps_of_each_size():
    from sweeps.spec import load_spec

    spec = load_spec("retinamnist-cpu")
    runs = [(0, spec, [({}, [{"select_score": v} for v in curve]) for curve in CURVES])]
    rows = bench.pooled_replay(runs, [2, 4, 5], draws=50)
    by_key = {(n, g, r): (share, gap, below) for n, g, r, share, gap, below in rows}
    assert {n for n, *_ in rows} == {2, 4}  # no sweep larger than the pool
    # all four trials: one draw, the same numbers as the plain replay
    assert by_key[(4, 1, 2)] == (13 / 16, 0.0, 0.0)
    # pairs: the second trial of a pair stops at epoch 1 below the first; 0.9 is lost when trial 2 follows trial 1
    share, gap, below = by_key[(2, 1, 2)]
    assert 0 < below < 1 and gap < 0 and share < 1


def test_pool_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert bench.pool_sizes("8,16,32") == [8, 16, 32]
    for text in ("x", "8,1", ""):
        with pytest.raises(SystemExit, match="--pool: .*allowed: trial counts of at least 2"):
            bench.pool_sizes(text)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--pool", "8"])
    assert exit_info.value.code == 2 and "--pool needs --replay" in capsys.readouterr().err
    from sweeps.folder import SPEC_FILE
    from sweeps.spec import load_spec

    (tmp_path / SPEC_FILE).write_text(load_spec("retinamnist-cpu").to_yaml())
    with pytest.raises(SystemExit, match="no trial with results in it"):
        bench.recorded_fifo_runs([str(tmp_path)])


def test_fifo_from_reuses_a_matching_fifo_run_and_refuses_another(tmp_path, capsys, monkeypatch):
    import tempfile
    from argparse import Namespace

    from sweeps.folder import SPEC_FILE
    from sweeps.spec import load_spec

    base = load_spec("retinamnist-cpu").to_dict()

    def options(trials):
        return Namespace(trials=trials, epochs=4, subset=None, max_concurrent=2, rung_metric=None)

    recorded = bench.make_spec(base, str(tmp_path), "fifo-0", 0, None, options(4))
    folder = tmp_path / "fifo-0"
    folder.mkdir()
    (folder / SPEC_FILE).write_text(recorded.to_yaml())
    for i, curve in enumerate(CURVES):
        (folder / f"trial_{i}").mkdir()
        (folder / f"trial_{i}" / "params.json").write_text(json.dumps({"lr": i}))
        (folder / f"trial_{i}" / "result.json").write_text("".join(json.dumps({"select_score": v}) + "\n" for v in curve))

    # a new temporary storage each run: only the name and storage may differ
    wanted = bench.make_spec(base, str(tmp_path / "elsewhere"), "fifo-0", 0, None, options(4))
    spec, trials = bench.reused_fifo(str(folder), wanted)
    assert spec.num_samples == 4 and [params["lr"] for params, _ in trials] == [0, 1, 2, 3]
    assert [[line["select_score"] for line in lines] for _, lines in trials] == CURVES
    with pytest.raises(SystemExit, match=r"--fifo-from: .*fifo-0: its num_samples, searcher differ"):
        bench.reused_fifo(str(folder), bench.make_spec(base, str(tmp_path), "fifo-0", 0, None, options(5)))
    # through the command line: refused before Ray starts (five trials asked, four recorded),
    # and before the sweeps' temporary folder is made
    import ray

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(SystemExit, match="its num_samples, searcher differ"):
        bench.main(["--seeds", "0", "--trials", "5", "--epochs", "4", "--fifo-from", str(folder)])
    assert not ray.is_initialized() and list(scratch.iterdir()) == []
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--seeds", "0,1", "--fifo-from", str(folder)])
    assert exit_info.value.code == 2 and "--fifo-from: 1 folders for 2 seeds" in capsys.readouterr().err


@pytest.mark.slow  # starts Ray
def test_the_replay_stops_what_a_real_tune_run_stops(tmp_path):
    """The same curves reported by a real ``tune.Tuner`` with ASHA, one trial at a time in the
    recorded order: every trial runs exactly the epochs the replay gives it."""
    import ray
    from ray import tune

    curves = [[0.3] * 4, [0.1, 0.9, 0.9, 0.9], [0.2] * 4, [0.25] * 4, [0.5, 0.1, 0.6, 0.7], [0.35, 0.4, 0.1, 0.1]]

    def report_curve(config):
        for value in curves[config["trial"]]:
            tune.report({"score": value})

    scheduler = bench.ASHAScheduler(time_attr="training_iteration", max_t=4, grace_period=1, reduction_factor=2)
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        results = tune.Tuner(
            report_curve, param_space={"trial": tune.grid_search(list(range(len(curves))))},
            tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler, max_concurrent_trials=1),
            run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
        ).fit()
    finally:
        ray.shutdown()
    epochs_run = {result.config["trial"]: len(result.metrics_dataframe) for result in results}
    # rungs at epochs 1 and 2: trial 1 stops below 0.3 at once, trials 2 and 4 below the rung-2 median
    assert epochs_run == {0: 4, 1: 1, 2: 2, 3: 4, 4: 2, 5: 4}
    assert bench.replay_asha(curves, grace=1, reduction=2, mode="max") == (sum(epochs_run.values()), 0.5)
