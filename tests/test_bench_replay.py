"""The sweep-efficiency benchmark's replay of successive halving on recorded curves: the
tool that chooses the packaged specs' ASHA defaults must stop what ASHA would stop."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_sweep_efficiency")


CURVES = [  # four trials, four epochs each
    [0.1, 0.2, 0.3, 0.4],
    [0.5, 0.5, 0.5, 0.5],
    [0.4, 0.6, 0.7, 0.9],
    [0.3, 0.1, 0.1, 0.1],
]


def test_halving_keeps_the_top_half_at_each_rung(bench):
    # rung 1: trials 1 (0.5) and 2 (0.4) go on; rung 2: trial 2 (0.6) beats trial 1 (0.5)
    spent, best = bench.replay_asha(CURVES, grace=1, reduction=2, mode="max")
    assert spent == 1 + 2 + 4 + 1 and best == 0.9


def test_a_stopped_trial_keeps_the_best_it_reached(bench):
    curves = [[0.9, 0.1, 0.1, 0.1], [0.2, 0.3, 0.4, 0.5], [0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 0.0]]
    spent, best = bench.replay_asha(curves, grace=2, reduction=2, mode="max")
    assert spent == 2 + 4 + 4 + 2 and best == 0.9  # trial 0 stopped at epoch 2 with 0.9 already seen


def test_min_mode_and_no_rung_inside_the_budget(bench):
    losses = [[1 - v for v in curve] for curve in CURVES]
    assert bench.replay_asha(losses, grace=1, reduction=2, mode="min") == (8, pytest.approx(0.1))
    assert bench.replay_asha(CURVES, grace=4, reduction=2, mode="max") == (16, 0.9)  # FIFO


def test_asha_settings_parse_and_refuse(bench):
    assert bench.asha_settings("4x2,2x3", {}) == [(4, 2), (2, 3)]
    spec = {"scheduler": {"type": "asha", "grace_period": 4, "reduction_factor": 2}}
    assert bench.asha_settings(None, spec) == [(4, 2)]
    with pytest.raises(SystemExit, match="--asha"):
        bench.asha_settings("four", spec)


def test_ties_stop_nothing_and_a_rung_metric_breaks_them(bench):
    # every trial scores 0.2 for two epochs (EMA weights predicting one class): no rung stops any
    tied = [[0.2, 0.2, 0.5, 0.6], [0.2, 0.2, 0.3, 0.3], [0.2, 0.2, 0.4, 0.4], [0.2, 0.2, 0.7, 0.8]]
    assert bench.replay_asha(tied, grace=1, reduction=2, mode="max") == (16, 0.8)
    # compared on AUC instead, trials 1 and 2 stop at rung 1, trial 0 at rung 2; the best stays a score
    aucs = [[0.6] * 4, [0.5] * 4, [0.55] * 4, [0.7] * 4]
    assert bench.replay_asha(tied, 1, 2, "max", rungs=aucs, rung_mode="max") == (2 + 1 + 1 + 4, 0.8)
    losses = [[1 - v for v in curve] for curve in aucs]
    assert bench.replay_asha(tied, 1, 2, "max", rungs=losses, rung_mode="min") == (8, 0.8)


def test_replay_reads_finished_fifo_sweeps_and_refuses_others(bench, tmp_path, capsys):
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
    assert "| select_score | 1 | 2 | 50% | +0.0000 | +0.0000 |" in table  # as test_halving_keeps_the_top_half...
    assert "| val_auc | 1 | 2 |" in table
    with pytest.raises(SystemExit, match="needs a FIFO sweep"):
        bench.recorded_fifo_runs([sweep("asha", {"type": "asha", "grace_period": 1, "reduction_factor": 2}, 4)])
    with pytest.raises(SystemExit, match="needs a FIFO sweep whose trials all ran 4 epochs"):
        bench.recorded_fifo_runs([sweep("short", {"type": "fifo"}, 2)])
    with pytest.raises(SystemExit, match="no medsweep_spec.yaml"):
        bench.recorded_fifo_runs([str(tmp_path)])


def test_pooled_replay_draws_sweeps_of_each_size(bench):
    from sweeps.spec import load_spec

    spec = load_spec("retinamnist-cpu")
    runs = [(0, spec, [({}, [{"select_score": v} for v in curve]) for curve in CURVES])]
    rows = bench.pooled_replay(runs, [2, 4, 5], draws=50)
    by_key = {(n, g, r): (share, gap, below) for n, g, r, share, gap, below in rows}
    assert {n for n, *_ in rows} == {2, 4}  # no sweep larger than the pool
    # all four trials: one draw, the same numbers as the plain replay
    assert by_key[(4, 1, 2)] == (8 / 16, 0.0, 0.0)
    # pairs: halving at epoch 1 keeps the better starter; it misses 0.9 whenever trial 2 starts lower
    share, gap, below = by_key[(2, 1, 2)]
    assert 0 < below < 1 and gap < 0 and share < 1


def test_pool_refuses_bad_input_in_one_line(bench, tmp_path, capsys):
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


def test_fifo_from_reuses_a_matching_fifo_run_and_refuses_another(bench, tmp_path, capsys):
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
    # through the command line: refused before Ray starts (five trials asked, four recorded)
    import ray

    with pytest.raises(SystemExit, match="its num_samples, searcher differ"):
        bench.main(["--seeds", "0", "--trials", "5", "--epochs", "4", "--fifo-from", str(folder)])
    assert not ray.is_initialized()
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--seeds", "0,1", "--fifo-from", str(folder)])
    assert exit_info.value.code == 2 and "--fifo-from: 1 folders for 2 seeds" in capsys.readouterr().err
