"""A sweep with repeats on a real local Ray and real RetinaMNIST: each configuration trained
with seeds base and base + 1, Optuna told one mean per configuration, and the best
configuration chosen by that mean, the same one by best_config.yaml and by the analysis."""

import json
from collections import defaultdict
from pathlib import Path
from statistics import fmean

import pytest
import ray

from analysis.collect import collect
from analysis.schema import WHERE_IT_RAN
from analysis.tables import best_config, rank_trials
from medvit.config import load_config_file
from medsweep.cli import main, report_sweep_end
from sweeps.launch import run_sweep, sweep_dir
from sweeps.ranking import SCORE
from sweeps.space import TRIAL_INDEX, configuration
from sweep_helpers import results, retina_spec, trial_dirs

pytestmark = pytest.mark.slow  # starts Ray

BASE_SEED = 3


@pytest.fixture(scope="module")
def repeated_sweep(real_root, tmp_path_factory):
    storage = tmp_path_factory.mktemp("storage")
    spec = retina_spec(
        storage, "retina-repeats", repeats=2, num_samples=4, max_concurrent=2,
        scheduler={"type": "fifo"}, train={"epochs": 2, "seed": BASE_SEED},
        search={"lr": {"loguniform": [1.0e-4, 3.0e-3]}, "alpha": {"choice": [0.0, 0.2]}},
    )
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        grid = run_sweep(spec, data_root=str(real_root))
    finally:
        ray.shutdown()
    directory = Path(sweep_dir(spec))
    table = collect(directory, storage / "results.parquet")
    return spec, directory, table.to_pandas(), grid


def _configurations(directory: Path) -> dict[str, list[Path]]:
    """Trial folders grouped by their configuration (params.json less the repeat index)."""
    groups = defaultdict(list)
    for trial in trial_dirs(directory):
        params = json.loads((trial / "params.json").read_text())
        groups[json.dumps(configuration(params), sort_keys=True)].append(trial)
    return groups


def test_each_configuration_ran_with_the_base_seed_and_the_next(repeated_sweep):
    spec, directory, table, _ = repeated_sweep
    groups = _configurations(directory)
    assert len(groups) == 2 and all(len(trials) == 2 for trials in groups.values())
    for trials in groups.values():
        indices = sorted(json.loads((t / "params.json").read_text())[TRIAL_INDEX] for t in trials)
        assert indices == [0, 1]
        assert all(len(results(t)) == 2 for t in trials)  # FIFO: every repeat ran every epoch
    # the results table: the seed each repeat trained with, its configuration and repeat index
    assert table["seed"].tolist() == [BASE_SEED + i for i in table["repeat_index"]]
    assert sorted(table.groupby("config_group")["seed"].apply(sorted).tolist()) == [[3, 4], [3, 4]]
    assert (table["repeats"] == 2).all() and (table["stop_reason"] == "finished").all()
    assert not any(TRIAL_INDEX in config for config in table["config_json"])


def test_the_searcher_was_told_one_mean_per_configuration(repeated_sweep):
    _, directory, _, _ = repeated_sweep
    from ray.tune.search.optuna import OptunaSearch

    # Optuna's own study, as Ray saved it: one trial per configuration, valued by the Repeater
    (state,) = directory.glob("searcher-state-*.pkl")
    searcher = OptunaSearch()
    searcher.restore(str(state))
    told = sorted(trial.value for trial in searcher._ot_study.trials)
    # the Repeater averages the score of each repeat's last result
    means = sorted(fmean(results(t)[-1][SCORE] for t in trials) for trials in _configurations(directory).values())
    assert told == pytest.approx(means)


def test_best_config_and_the_analysis_name_the_best_mean(repeated_sweep, capsys):
    spec, directory, table, grid = repeated_sweep
    groups = _configurations(directory)
    mean_best = {key: fmean(max(r[SCORE] for r in results(t)) for t in trials) for key, trials in groups.items()}
    winner = json.loads(max(mean_best, key=mean_best.get))

    written = load_config_file(directory / "best_config.yaml")
    assert written["seed"] == BASE_SEED
    assert written["lr"] == winner["lr"] and written["alpha"] == winner["alpha"]
    assert f"{max(mean_best.values()):.4f}, the mean over its 2 seeds" in (directory / "best_config.yaml").read_text()

    ranked = rank_trials(table)
    first = ranked.iloc[0]
    assert ranked["config_group"].iloc[1] == first["config_group"]  # its other repeat comes next
    # the report's YAML and the sweep's name the same config, less where the trial ran
    assert best_config(first) == {key: value for key, value in written.items() if key not in WHERE_IT_RAN}

    # the sweep's closing lines name that configuration, by one of its trials, and its mean
    assert report_sweep_end(spec, str(directory), grid) == 0
    out = capsys.readouterr().out
    assert f"medsweep confirm {directory} --seeds 5 --out confirm.parquet" in out  # the number to report
    (line,) = [line for line in out.splitlines() if line.startswith("best   ")]
    assert line.startswith(f"best   the configuration of trial {first['trial_id']}: val_acc selection score "
                           f"{max(mean_best.values()):.4f} the mean over its 2 seeds, each at its best epoch")


def test_status_lists_configurations_by_their_mean(repeated_sweep, capsys):
    _, directory, table, _ = repeated_sweep
    assert main(["status", str(directory)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "4 trials; configurations by their mean val_acc over 2 seeds (max), best first"
    assert lines[1].split()[:7] == ["trial_id", "stop_reason", "epochs_run", "best_epoch", "best_value", "seed",
                                    "config_mean"]
    listed = [line.split()[0] for line in lines[2:-1]]
    assert listed == rank_trials(table)["trial_id"].tolist()
    assert lines[-1] == "driver none"  # every trial ended and no medsweep runs the sweep
