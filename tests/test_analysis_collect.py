"""collect(): real Ray Tune sweep folders -> the results Parquet table."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.collect import collect, read_sweep
from analysis.schema import RESULTS_SCHEMA, STOP_REASONS
from analysis_sweeps import ERROR_MESSAGE, ERROR_MODEL, PNEUMONIA, RETINA
from sweep_helpers import results


@pytest.fixture(scope="module")
def collected(analysis_sweeps, tmp_path_factory):
    out = tmp_path_factory.mktemp("collect") / "results.parquet"
    table = collect(list(analysis_sweeps.dirs.values()), out)
    return out, table


def test_rows_and_types(analysis_sweeps, collected):
    out, table = collected
    assert table.schema.equals(RESULTS_SCHEMA, check_metadata=False)
    on_disk = pq.read_table(out)
    assert on_disk.schema.equals(RESULTS_SCHEMA, check_metadata=False)
    assert on_disk.num_rows == table.num_rows == sum(analysis_sweeps.n_trials.values())
    df = table.to_pandas()
    assert set(df["sweep"]) == {RETINA, PNEUMONIA}
    assert df.groupby("sweep").size().to_dict() == analysis_sweeps.n_trials
    assert set(df["stop_reason"]) <= set(STOP_REASONS)
    assert (df[["sweep_dir", "trial_id"]].duplicated() == False).all()  # noqa: E712
    for name, d in analysis_sweeps.dirs.items():
        sub = df[df["sweep"] == name]
        assert (sub["sweep_dir"] == str(d.resolve())).all()
        assert (sub["metric"] == analysis_sweeps.metric[name][0]).all()
        assert (sub["epochs_max"] == analysis_sweeps.epochs[name]).all()
    ok = df[df["stop_reason"] != "errored"]
    assert ok["best_value"].notna().all() and ok["checkpoint_path"].notna().all()
    for row in ok.itertuples():
        assert Path(row.checkpoint_path, "state.pt").exists()
        assert list(row.history_epoch) == list(range(1, row.epochs_run + 1))
        assert len(row.history_val_metric) == len(row.history_train_loss) == row.epochs_run
        assert row.best_value == max(row.history_val_metric)
        reported = results(Path(row.checkpoint_path).parent)
        assert row.train_time_s == pytest.approx(sum(r["epoch_time_s"] for r in reported))
        assert row.node and " / " in row.node
        assert json.loads(row.config_json)["dataset"] == row.dataset
    retina = df[df["dataset"] == "retinamnist"]
    assert retina[retina["stop_reason"] != "errored"]["best_val_qwk"].notna().all()
    pneu = df[df["dataset"] == "pneumoniamnist"]
    assert pneu["best_val_qwk"].isna().all() and pneu["best_val_mae"].isna().all()
    assert (pneu[pneu["model"] != ERROR_MODEL]["stop_reason"] == "finished").all()
    assert set(pneu["model"]) == {"medvit_28_tiny", "resnet18_28", ERROR_MODEL}
    assert set(retina["model"]) == {"medvit_28_tiny"}
    for c in ("test_acc", "test_auc", "test_qwk", "test_mae"):
        assert df[c].isna().all()


def test_config_json_is_the_trials_train_config(collected):
    """Ray's params.json holds only the searched keys; the row holds the whole TrainConfig the
    trial trained with (the spec's fixed values under the sampled ones), equal to the one
    stored in the trial's checkpoint."""
    import torch

    from medvit.config import build_config

    df = collected[1].to_pandas()
    for row in df[df["model"] == "medvit_28_tiny"].itertuples():
        params = json.loads(Path(row.checkpoint_path).parent.joinpath("params.json").read_text())
        assert set(params) < set(json.loads(row.config_json))
        stored = torch.load(Path(row.checkpoint_path, "state.pt"), map_location="cpu", weights_only=False)["config"]
        assert build_config(json.loads(row.config_json)) == build_config(stored)
        assert (row.batch_size, row.img_size, row.seed) == (stored["batch_size"], stored["img_size"], stored["seed"])
        assert row.epochs_max == stored["epochs"]


def test_best_epoch_values_match_history(collected):
    df = collected[1].to_pandas()
    for row in df[df["stop_reason"] != "errored"].itertuples():
        i = list(row.history_epoch).index(row.best_epoch)
        assert row.history_val_metric[i] == row.best_value
        if row.metric == "val_acc":
            assert row.best_val_acc == row.best_value


def test_errored_and_early_stopped(analysis_sweeps, collected):
    df = collected[1].to_pandas()
    err = df[df["stop_reason"] == "errored"]
    assert len(err) == 1
    e = err.iloc[0]
    assert e["sweep"] == PNEUMONIA and e["model"] == ERROR_MODEL
    assert ERROR_MESSAGE in e["error"]
    assert e["epochs_run"] == 1 and e["best_value"] > df[df["stop_reason"] != "errored"]["best_value"].max()
    assert df[df["stop_reason"] != "errored"]["error"].isna().all()
    retina = df[df["sweep"] == RETINA]
    early = retina[retina["stop_reason"] == "early_stopped"]
    assert len(early) >= 1, "ASHA should have stopped some trials"
    assert (early["epochs_run"] < early["epochs_max"]).all()
    finished = retina[retina["stop_reason"] == "finished"]
    assert len(finished) >= 1 and (finished["epochs_run"] == finished["epochs_max"]).all()


def test_collect_twice_no_duplicates_and_keeps_other_rows(analysis_sweeps, tmp_path):
    out = tmp_path / "r.parquet"
    first = collect(analysis_sweeps.dirs[RETINA], out)
    n_retina = first.num_rows
    # An evaluation step filled test metrics in for one trial in the meantime.
    df = first.to_pandas()
    tid = df.sort_values("best_value", ascending=False)["trial_id"].iloc[0]
    t = pq.read_table(out)
    idx = t.schema.get_field_index("test_acc")
    vals = [0.61 if x == tid else None for x in t.column("trial_id").to_pylist()]
    pq.write_table(t.set_column(idx, t.schema.field("test_acc"), pa.array(vals, pa.float64())), out)
    time.sleep(0.01)
    again = collect([analysis_sweeps.dirs[RETINA]], out)
    assert again.num_rows == n_retina
    d2 = again.to_pandas()
    assert d2.loc[d2["trial_id"] == tid, "test_acc"].iloc[0] == 0.61  # carried over, same checkpoint
    assert (d2["collected_at"] > df["collected_at"].max()).all()  # the newer rows won
    both = collect([analysis_sweeps.dirs[PNEUMONIA]], out)
    assert both.num_rows == n_retina + analysis_sweeps.n_trials[PNEUMONIA]  # nothing dropped
    assert both.to_pandas()[["sweep_dir", "trial_id"]].duplicated().sum() == 0
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file


def test_unfinished_trial(analysis_sweeps, tmp_path):
    """A trial that is still running (state RUNNING, fewer epochs) is 'unfinished'."""
    src = analysis_sweeps.dirs[PNEUMONIA]
    sweep = tmp_path / PNEUMONIA
    shutil.copytree(src, sweep, ignore=shutil.ignore_patterns("checkpoint_*"))
    before = read_sweep(src).to_pandas().set_index("trial_id")["stop_reason"]
    state_file = sorted(sweep.glob("experiment_state-*.json"))[-1]
    state = json.loads(state_file.read_text())
    k = next(i for i, item in enumerate(state["trial_data"])
             if before[json.loads(item[0])["trial_id"]] == "finished")
    meta = json.loads(state["trial_data"][k][0])
    meta["status"] = "RUNNING"
    state["trial_data"][k][0] = json.dumps(meta)
    res = sweep / meta["relative_logdir"] / "result.json"
    first_line = res.read_text().splitlines()[0]
    # Ray's own last report of a trial still running: its first epoch (collect takes the state's
    # report when it is newer than result.json's last line)
    runtime = json.loads(state["trial_data"][k][1])
    runtime["last_result"] = json.loads(first_line)
    state["trial_data"][k][1] = json.dumps(runtime)
    state_file.write_text(json.dumps(state))
    res.write_text(first_line + "\n" + '{"epoch": 2, "truncat')  # a partly written line
    df = read_sweep(sweep).to_pandas().set_index("trial_id")
    row = df.loc[meta["trial_id"]]
    assert row["stop_reason"] == "unfinished" and row["epochs_run"] == 1
    others = df.drop(index=meta["trial_id"])
    assert others["stop_reason"].to_dict() == before.drop(index=meta["trial_id"]).to_dict()


def test_a_checkpoint_cut_short_in_storage_is_passed_over_by_collect_and_ensemble(analysis_sweeps, tmp_path):
    """A node lost while Ray copied a trial's next checkpoint into a local or NFS storage leaves
    it cut short beside the one Ray keeps: collect's row and ensemble's candidate keep to that one."""
    from analysis.ensemble import sweep_candidates

    sweep = tmp_path / RETINA
    shutil.copytree(analysis_sweeps.dirs[RETINA], sweep)
    kept = read_sweep(sweep).to_pandas().set_index("trial_id")["checkpoint_path"].dropna()
    assert len(kept) >= 2
    for checkpoint in map(Path, kept):
        cut = checkpoint.with_name(f"checkpoint_{int(checkpoint.name.split('_')[1]) + 1:06d}")
        shutil.copytree(checkpoint, cut)
        whole = (cut / "state.pt").read_bytes()
        (cut / "state.pt").write_bytes(whole[:len(whole) // 2])
    rows = read_sweep(sweep).to_pandas().set_index("trial_id")["checkpoint_path"].dropna()
    assert rows.to_dict() == kept.to_dict()
    candidates = {str(c.checkpoint) for c in sweep_candidates(sweep)}
    assert candidates and candidates <= set(kept)


def test_not_a_sweep_dir(analysis_sweeps, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        collect([tmp_path / "nope"], tmp_path / "o.parquet")
    with pytest.raises(ValueError, match="storage path holding sweeps"):
        collect([analysis_sweeps.storage], tmp_path / "o.parquet")
    trial = next(p for p in analysis_sweeps.dirs[RETINA].iterdir() if (p / "params.json").exists())
    with pytest.raises(ValueError, match="trial folder"):
        collect([trial], tmp_path / "o.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no experiment_state") as ei:
        collect([tmp_path / "empty"], tmp_path / "o.parquet")
    assert "\n" not in str(ei.value)
    assert not (tmp_path / "o.parquet").exists()


def test_fixture_builds_real_sweeps(analysis_sweeps):
    import ray

    assert not ray.is_initialized(), "the fixture must shut Ray down"
    for name, d in analysis_sweeps.dirs.items():
        assert list(d.glob("experiment_state-*.json")), name
        assert (d / "tuner.pkl").exists() and (d / "medsweep_spec.yaml").exists()
        trial_dirs = [p for p in d.iterdir() if (p / "params.json").exists()]
        assert len(trial_dirs) == analysis_sweeps.n_trials[name]
    assert (analysis_sweeps.dirs[RETINA] / "best_config.yaml").exists()  # written by run_sweep


def test_the_end_of_a_sweep_and_status_name_each_error(analysis_sweeps, capsys):
    """`done ... 1 errored` said nothing of why; the error's line is now printed under it and
    under `status`'s table, with the trial's id."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    from analysis_sweeps import pneumonia_spec
    from medsweep.cli import main, report_sweep_end

    directory = analysis_sweeps.dirs[PNEUMONIA]
    table = read_sweep(directory).to_pandas()
    (errored,) = table.loc[table["stop_reason"] == "errored", "trial_id"]
    report_sweep_end(pneumonia_spec(analysis_sweeps.storage), str(directory),
                     ResultGrid(ExperimentAnalysis(str(directory))))
    assert main(["status", str(directory)]) == 0
    assert main(["status", f"file://{directory}"]) == 0  # the folder as a URI reads the same
    out = capsys.readouterr().out
    assert out.count("errors 1 of 3 trials, each after Ray's retries") == 3, out
    assert out.count(f"       1 x RuntimeError: {ERROR_MESSAGE}  ({errored})\n") == 3, out


def failures(*numbers: int) -> str:
    """An error.txt as Ray writes it: each failure's line, then the error."""
    return "".join(f"Failure # {n} (occurred at 2026-12-08_03-52-4{n})\nThe actor is dead because its worker process "
                   "has died. Worker exit type: SYSTEM_ERROR\n" for n in numbers)


@pytest.mark.parametrize("recorded, saved, stop_reason", [
    ((1, 2, 3), 2, "errored"),  # killed on its last try: the state kept its last start
    ((1, 2), 1, "unfinished"),  # a try left: Ray starts it again
    ((1, 2, 3), 3, "unfinished"),  # an errored trial resumed (Ray's count goes on), running again
    ((1, 2, 3, 4), 3, "errored"),  # ... and killed again
])
def test_a_running_trial_whose_error_file_is_past_the_retries_is_errored(analysis_sweeps, tmp_path, recorded, saved,
                                                                          stop_reason):
    from sweeps.launch import trial_ended

    sweep = tmp_path / PNEUMONIA
    shutil.copytree(analysis_sweeps.dirs[PNEUMONIA], sweep, ignore=shutil.ignore_patterns("checkpoint_*"))
    state_file = sorted(sweep.glob("experiment_state-*.json"))[-1]
    state = json.loads(state_file.read_text())
    meta, runtime = (json.loads(part) for part in state["trial_data"][0])
    result = sweep / meta["relative_logdir"] / "result.json"
    first_epoch = result.read_text().splitlines()[0]  # its first epoch of several, as the state's last report
    result.write_text(first_epoch + "\n")
    meta["status"], runtime["num_failures"], runtime["last_result"] = "RUNNING", saved, json.loads(first_epoch)
    state["trial_data"][0] = [json.dumps(meta), json.dumps(runtime)]
    state_file.write_text(json.dumps(state))
    (sweep / meta["relative_logdir"] / "error.txt").write_text(failures(*recorded))
    row = next(r for r in read_sweep(sweep).to_pylist() if r["trial_id"] == meta["trial_id"])
    assert row["stop_reason"] == stop_reason
    assert row["error"] == ("The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR"
                            if stop_reason == "errored" else None)
    assert trial_ended(str(sweep), meta, runtime) is (stop_reason == "errored")


def test_errors_are_grouped_by_kind_with_what_to_change_for_memory():
    from medsweep.cli import ERROR_CHARS, OUT_OF_MEMORY_HINTS, error_lines

    cuda = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {} GiB. GPU 0 has a total capacity of 79 GiB"
    errors = [(f"t{i}", cuda.format(i)) for i in range(5)] + [("r0", "RuntimeError: " + "x" * 1000)]
    lines = error_lines(errors, 64)
    assert lines[0].startswith("errors 6 of 64 trials")
    assert lines[1] == f"       5 x {cuda.format(0)}  (t0, t1, t2, t3, ...)"
    assert lines[2] == f"       {OUT_OF_MEMORY_HINTS['CUDA out of memory']}"
    assert lines[3] == f"       1 x {('RuntimeError: ' + 'x' * 1000)[:ERROR_CHARS]}...  (r0)"
    assert len(lines) == 4 and error_lines([], 64) == []
    died = "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR"
    assert error_lines([("k0", died)], 2)[2] == f"       {OUT_OF_MEMORY_HINTS['worker process has died']}"
