"""SweepTensorBoard on a real (tiny) Tune run, read back by TensorBoard's own HParams backend:
HParams hold the fixed training values too and each trial's end (finished, stopped early,
errored); the metrics lead with what a user selects on and hold no bookkeeping; the searched
fields (and model, weight_decay) are among the five hparams the dashboard shows by default;
every trial writes the same experiment summary, so it does not matter which one TensorBoard
reads. The sweep's loggers write one TensorBoard file per trial beside Ray's result files,
and Ray prints no `tensorboard --logdir` hint of its own (it would point into its staging
folder)."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import pickle

import pytest
import ray
from ray import tune
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, metadata

from sweeps.launch import own_loggers_only
from sweeps.space import trial_config
from sweeps.spec import load_spec
from trainables.tensorboard import BOOKKEEPING, SCALAR_PREFIX, SHOWN_BY_DEFAULT, experiment_summary, sweep_loggers

pytestmark = pytest.mark.slow  # starts Ray

EPOCHS = 3
SEARCHED = {"alpha": [0.0, 0.2, 0.4, 0.6]}


def stop_the_alpha_0_2_trial(trial_id, result):
    # What ASHA does to a weak trial: Tune stops it before its last epoch.
    return result["val_acc"] == pytest.approx(0.7) and result["epoch"] == 1


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    spec = load_spec("retinamnist").smoke_variant()
    storage = tmp_path_factory.mktemp("tb")

    # Defined here, so Ray ships it by value: workers cannot import a test module. It reports
    # what the trainer and the trainable do (the trainable's bookkeeping included).
    def fake_trial(config):
        for epoch in range(1, EPOCHS + 1):
            if config["alpha"] == 0.4 and epoch == 2:
                raise RuntimeError("this trial errors")
            acc = 0.5 + config["alpha"]
            diverged = config["alpha"] == 0.6 and epoch == 2  # the trainer stops after a non-finite loss
            tune.report({"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 1e-3, "val_loss": 1.0 - acc,
                         "val_acc": acc, "select_score": acc, "diverged": diverged, "best_epoch": epoch,
                         "selected_score": acc, "selected_val_acc": acc, "resumed_from_epoch": 0,
                         "node_id": "a node"})
            if diverged:
                return

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), own_loggers_only():
            tune.Tuner(
                fake_trial,
                param_space={"alpha": tune.grid_search(SEARCHED["alpha"]), "epochs": EPOCHS},
                run_config=tune.RunConfig(name="tb", storage_path=str(storage), stop=stop_the_alpha_0_2_trial,
                                          callbacks=sweep_loggers(functools.partial(trial_config, spec), SEARCHED),
                                          verbose=1),
            ).fit()
    finally:
        ray.shutdown()
    return spec, storage / "tb", printed.getvalue()


def events_of(trial_dir) -> EventAccumulator:
    (events,) = trial_dir.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    return accumulator


def hparams_of(trial_dir):
    tags = events_of(trial_dir).PluginTagToContent("hparams")
    start = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(tags[metadata.SESSION_END_INFO_TAG])
    values = {k: v.string_value or v.number_value or v.bool_value for k, v in start.hparams.items()}
    return tags, values, end.status


def dashboard_experiment(logdir) -> api_pb2.Experiment:
    """The experiment TensorBoard's HParams dashboard receives for a log folder (its request
    as the dashboard sends it)."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    backend = backend_context.Context(base_plugin.TBContext(data_provider=provider, logdir=str(logdir)))
    request = api_pb2.GetExperimentRequest(experiment_name="", hparams_limit=1000)
    return get_experiment.Handler(context.RequestContext(), backend, "", request).run()


def trials_of(sweep):
    return sorted(p for p in sweep.iterdir() if p.is_dir())


def test_hparams_hold_fixed_values_and_how_each_trial_ended(run):
    spec, sweep, _ = run
    trials = trials_of(sweep)
    assert len(trials) == 4
    by_alpha = {}
    for trial in trials:
        _, values, status = hparams_of(trial)
        by_alpha[values.get("alpha", 0.0)] = (values, status)
    assert set(by_alpha) == {0.0, 0.2, 0.4, 0.6}
    for values, _ in by_alpha.values():
        assert values["dataset"] == "retinamnist" and values["epochs"] == EPOCHS
        assert values["batch_size"] == spec.train.batch_size and values["model"] == spec.train.model
    assert by_alpha[0.0][0]["end"] == "finished" and by_alpha[0.0][1] == 1  # STATUS_SUCCESS
    assert by_alpha[0.2][0]["end"] == "early_stopped" and by_alpha[0.2][1] == 1
    assert by_alpha[0.4][0]["end"] == "errored" and by_alpha[0.4][1] == 2  # STATUS_FAILURE
    assert by_alpha[0.6][0]["end"] == "diverged" and by_alpha[0.6][1] == 1  # stopped early, but diverged


def test_every_trial_writes_the_same_experiment_summary(run):
    _, sweep, _ = run
    summaries = {events_of(trial).PluginTagToContent("hparams")[metadata.EXPERIMENT_TAG] for trial in trials_of(sweep)}
    assert len(summaries) == 1


def test_the_dashboard_leads_with_what_a_user_selects_on(run):
    _, sweep, _ = run
    experiment = dashboard_experiment(sweep)
    metrics = [info.display_name for info in experiment.metric_infos]
    assert metrics[:SHOWN_BY_DEFAULT] == ["selected_val_acc", "selected_score", "val_acc", "select_score", "val_loss"]
    assert set(metrics) == {"selected_val_acc", "selected_score", "val_acc", "select_score", "val_loss",
                            "train_loss", "lr", "best_epoch", "epoch"}
    assert all(info.name.tag == SCALAR_PREFIX + info.display_name for info in experiment.metric_infos)
    assert experiment.metric_infos[1].description.startswith("select_score at the trial's selected epoch")

    # The dashboard shows its first five hparams: the backend sorts the differing ones first.
    shown = [info.name for info in experiment.hparam_infos[:SHOWN_BY_DEFAULT]]
    assert {"alpha", "model", "weight_decay", "end"} <= set(shown)
    domains = {info.name: info for info in experiment.hparam_infos}
    assert list(domains["end"].domain_discrete.values) and {v.string_value for v in domains["end"].domain_discrete.values} \
        >= {"finished", "early_stopped", "errored"}
    assert (domains["alpha"].domain_interval.min_value, domains["alpha"].domain_interval.max_value) == (0.0, 0.6)
    assert [v.string_value for v in domains["dataset"].domain_discrete.values] == ["retinamnist"]


def test_scalars_leave_out_the_bookkeeping(run):
    _, sweep, _ = run
    for trial in trials_of(sweep):
        scalars = {tag.removeprefix(SCALAR_PREFIX) for tag in events_of(trial).Tags()["scalars"]}
        assert "val_acc" in scalars and "selected_val_acc" in scalars, trial.name
        assert not scalars & BOOKKEEPING, scalars & BOOKKEEPING
        assert not scalars & {"done", "should_checkpoint", "iterations_since_restore", "resumed_from_epoch"}


def test_a_sweep_searching_six_fields_shows_the_first_five_by_name():
    values = {"dataset": "retinamnist", "model": "medvit_28_tiny", "alpha": 0.1, "margin": 0.1, "augment": "flip",
              "lr": 1e-3, "weight_decay": 0.05, "epochs": 20, "end": "finished"}
    searched = {name: [values[name], values[name]] for name in ("alpha", "margin", "augment", "model", "lr",
                                                               "weight_decay")}
    content = experiment_summary(values, ["val_acc"], searched, "val_acc").value[0].metadata.plugin_data.content
    experiment = metadata.parse_experiment_plugin_data(content)
    assert {info.name for info in experiment.hparam_infos if info.differs} == set(searched)


def test_one_tensorboard_file_per_trial_and_no_hint_from_ray(run):
    _, sweep, printed = run
    assert "View detailed results here" in printed  # Ray's progress output was captured
    assert "tensorboard --logdir" not in printed
    for trial in trials_of(sweep):
        assert len(list(trial.glob("events.out.tfevents.*"))) == 1, trial.name
        assert (trial / "result.json").is_file() and (trial / "progress.csv").is_file()


def test_ray_keeps_its_default_loggers_outside_a_sweep(run):
    assert "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" not in os.environ


def test_loggers_unpickled_from_a_sweep_started_before_the_searched_domains_still_write(tmp_path):
    """Resuming a sweep after an upgrade unpickles its loggers as the older medsweep built them:
    a writer without the searched domains must write its hparams, not fail every trial."""
    spec = load_spec("retinamnist").smoke_variant()
    loggers = sweep_loggers(functools.partial(trial_config, spec), SEARCHED)
    del loggers[-1]._writer.__dict__["_searched"]  # what the older writer's state holds
    loggers = pickle.loads(pickle.dumps(loggers))

    def one_epoch(config):
        tune.report({"epoch": 1, "val_acc": 0.5, "select_score": 0.5, "selected_score": 0.5,
                     "selected_val_acc": 0.5, "best_epoch": 1, "diverged": False})

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        with own_loggers_only():
            results = tune.Tuner(one_epoch, param_space={"alpha": tune.grid_search([0.2]), "epochs": 1},
                                 run_config=tune.RunConfig(name="old", storage_path=str(tmp_path),
                                                           callbacks=loggers, verbose=0)).fit()
    finally:
        ray.shutdown()
    assert not results.errors
    (trial,) = trials_of(tmp_path / "old")
    _, values, status = hparams_of(trial)
    assert values["alpha"] == pytest.approx(0.2) and values["end"] == "finished"
    assert status == api_pb2.Status.Value("STATUS_SUCCESS")
