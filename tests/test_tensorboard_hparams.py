"""SweepTensorBoard on a real (tiny) Tune run: HParams hold the fixed training values too, each
trial's end (finished, stopped early, errored), and no per-trial experiment summary, so
TensorBoard builds the experiment across trials (and marks which hparams differ); the sweep's
loggers write one TensorBoard file per trial beside Ray's result files, and Ray prints no
`tensorboard --logdir` hint of its own (it would point into its staging folder)."""

from __future__ import annotations

import contextlib
import functools
import io
import os

import pytest
import ray
from ray import tune
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from sweeps.launch import own_loggers_only
from sweeps.space import trial_config
from sweeps.spec import load_spec
from trainables.tensorboard import sweep_loggers

pytestmark = pytest.mark.slow  # starts Ray

EPOCHS = 3


def stop_the_alpha_0_2_trial(trial_id, result):
    # What ASHA does to a weak trial: Tune stops it before its last epoch.
    return result["val_acc"] == pytest.approx(0.7) and result["epoch"] == 1


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    spec = load_spec("retinamnist").smoke_variant()
    storage = tmp_path_factory.mktemp("tb")

    # Defined here, so Ray ships it by value: workers cannot import a test module.
    def fake_trial(config):
        for epoch in range(1, EPOCHS + 1):
            if config["alpha"] == 0.4 and epoch == 2:
                raise RuntimeError("this trial errors")
            tune.report({"epoch": epoch, "val_acc": 0.5 + config["alpha"]})

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), own_loggers_only():
            tune.Tuner(
                fake_trial,
                param_space={"alpha": tune.grid_search([0.0, 0.2, 0.4]), "epochs": EPOCHS},
                run_config=tune.RunConfig(name="tb", storage_path=str(storage), stop=stop_the_alpha_0_2_trial,
                                          callbacks=sweep_loggers(functools.partial(trial_config, spec)), verbose=1),
            ).fit()
    finally:
        ray.shutdown()
    return spec, storage / "tb", printed.getvalue()


def hparams_of(trial_dir):
    (events,) = trial_dir.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = accumulator.PluginTagToContent("hparams")
    start = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(tags[metadata.SESSION_END_INFO_TAG])
    values = {k: v.string_value or v.number_value or v.bool_value for k, v in start.hparams.items()}
    return tags, values, end.status


def test_hparams_hold_fixed_values_and_how_each_trial_ended(run):
    spec, sweep, _ = run
    trials = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(trials) == 3
    by_alpha = {}
    for trial in trials:
        tags, values, status = hparams_of(trial)
        assert metadata.EXPERIMENT_TAG not in tags
        by_alpha[values.get("alpha", 0.0)] = (values, status)
    assert set(by_alpha) == {0.0, 0.2, 0.4}
    for values, _ in by_alpha.values():
        assert values["dataset"] == "retinamnist" and values["epochs"] == EPOCHS
        assert values["batch_size"] == spec.train.batch_size and values["model"] == spec.train.model
    assert by_alpha[0.0][0]["end"] == "finished" and by_alpha[0.0][1] == 1  # STATUS_SUCCESS
    assert by_alpha[0.2][0]["end"] == "early_stopped" and by_alpha[0.2][1] == 1
    assert by_alpha[0.4][0]["end"] == "errored" and by_alpha[0.4][1] == 2  # STATUS_FAILURE


def test_one_tensorboard_file_per_trial_and_no_hint_from_ray(run):
    _, sweep, printed = run
    assert "View detailed results here" in printed  # Ray's progress output was captured
    assert "tensorboard --logdir" not in printed
    for trial in (p for p in sweep.iterdir() if p.is_dir()):
        assert len(list(trial.glob("events.out.tfevents.*"))) == 1, trial.name
        assert (trial / "result.json").is_file() and (trial / "progress.csv").is_file()


def test_ray_keeps_its_default_loggers_outside_a_sweep(run):
    assert "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" not in os.environ
