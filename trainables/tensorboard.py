"""TensorBoard's HParams for a sweep: every trial's full training config and how it ended,
led by what a user selects on.

Ray's own TensorBoard logger writes the searched values only (its trial config), marks every
trial as a success, writes an experiment summary per trial whose domains hold that trial's
values only (TensorBoard takes one of them for the whole sweep and shows every hparam as not
differing), and a scalar for every key of every result, bookkeeping included (`done`,
`should_checkpoint`, `iterations_since_restore`, ...). This one writes, per trial:

- scalars for what the trainer reports, without Ray's and the trainable's bookkeeping;
- the searched values and the spec's fixed ones (dataset, epochs, batch size, seed, ...), an
  `end` hparam (`medvit.outcome`: `finished`, `early_stopped` by the scheduler, `errored`,
  `diverged`), status failure for an errored trial;
- the experiment summary, the same in every trial (so whichever TensorBoard reads is right):
  the metrics in the order a user selects on (`selected_<metric>` and `selected_score`, the
  values at the trial's selected epoch the ranking compares, then the sweep's metric and
  `select_score` at the last epoch, the other validation metrics, the test audit's, the rest),
  each with its name and what the value is; the hparams with the searched ones' domains.

TensorBoard's HParams tab shows its first five hparams and five metrics until the user ticks
more: the hparams marked as differing first, by name. The summary marks the searched fields
and `model` and `weight_decay` as differing (then `end`, while fewer than five are), so those
are what it shows; a sweep searching six fields (RetinaMNIST's) shows the first five by name.

`sweep_loggers` is the sweep's whole list of loggers. Ray adds its own CSV, JSON and
TensorBoard loggers unless told not to (`TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`, which the
launcher sets), and prints a `tensorboard --logdir` hint into its temporary staging folder
whenever a logger is a `TBXLoggerCallback`. So the writer below is wrapped in a plain
`LoggerCallback`: no second TensorBoard logger, and the only hint is the launcher's, which
names the sweep folder.
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Callable, Iterable, Mapping, Sequence

from ray.tune.experiment import Trial
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback, TBXLoggerCallback
from ray.tune.result import AUTO_RESULT_KEYS, DONE, EXPERIMENT_TAG, SHOULD_CHECKPOINT, TRAINING_ITERATION, TRIAL_ID
from tensorboardX.proto.api_pb2 import DataType, Experiment, HParamInfo, MetricInfo, MetricName, Status
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.summary import hparams

from medvit.outcome import DIVERGED, EARLY_STOPPED, ERRORED, FINISHED, trial_outcome
from medvit.selection import METRICS
from medvit.train import AUDIT_PREFIX
from trainables.medvit_trainable import BOOKKEEPING as TRIAL_BOOKKEEPING

EXPERIMENT_SUMMARY_TAG = "_hparams_/experiment"
SESSION_END_TAG = "_hparams_/session_end_info"
SCALAR_PREFIX = "ray/tune/"  # Ray's logger's prefix to every scalar's tag

# Result keys that say how Ray ran the trial, not how it trained: neither a scalar nor a metric
# (Ray's own logger drops the training iteration itself; it is each scalar's step).
BOOKKEEPING = (frozenset(AUTO_RESULT_KEYS) - {TRAINING_ITERATION}
               | {DONE, SHOULD_CHECKPOINT, TRIAL_ID, EXPERIMENT_TAG, "diverged"} | set(TRIAL_BOOKKEEPING))

# HParamInfo's `differs = 7` (bool) set true, as bytes: tensorboardX's copy of TensorBoard's
# api.proto predates the field, and TensorBoard itself is no dependency of a sweep.
DIFFERS_TRUE = bytes([7 << 3, 1])

TRIAL_ENDS = (FINISHED, EARLY_STOPPED, ERRORED, DIVERGED)
SHOWN_BY_DEFAULT = 5  # TensorBoard's HParams tab: the first five hparams and metrics
ALWAYS_SHOWN = ("model", "weight_decay")


def metric_order(names: Iterable[str], select_metric: str) -> list[str]:
    """A trial's reported metrics, what a user selects on first (see the module docstring)."""
    lead = [f"selected_{select_metric}", "selected_score", select_metric, "select_score",
            *(metric.val_name for metric in METRICS.values()),
            *(AUDIT_PREFIX + metric.key for metric in METRICS.values())]
    names = list(names)
    return sorted(names, key=lambda name: (lead.index(name) if name in lead else len(lead), names.index(name)))


def _metric_info(name: str, select_metric: str) -> MetricInfo:
    if name.startswith("selected_"):
        of = "select_score" if name == "selected_score" else name.removeprefix("selected_")
        what = f"{of} at the trial's selected epoch (its best_epoch)"
    else:
        what = f"{name} at the trial's last epoch"
    if name == f"selected_{select_metric}" or name == "selected_score":
        what += "; the sweep ranks trials by selected_score"
    return MetricInfo(name=MetricName(tag=SCALAR_PREFIX + name), display_name=name, description=what)


def _hparam_info(name: str, value: Any, domain: Sequence[Any] | None, shown: bool) -> HParamInfo:
    """One hparam: its type, and its values over the sweep (`domain`: the searched ones'
    values, or a range's [low, high]; None for a fixed field, whose one value is `value`)."""
    info = HParamInfo(name=name)
    if shown:
        info.MergeFromString(DIFFERS_TRUE)
    if isinstance(value, (bool, str)):
        info.type = DataType.Value("DATA_TYPE_BOOL" if isinstance(value, bool) else "DATA_TYPE_STRING")
        info.domain_discrete.extend(domain if domain is not None else [value])
    else:
        info.type = DataType.Value("DATA_TYPE_FLOAT64")
        if domain is not None:
            info.domain_interval.min_value, info.domain_interval.max_value = min(domain), max(domain)
    return info


def experiment_summary(values: Mapping[str, Any], metrics: Sequence[str], searched: Mapping[str, Sequence[Any]],
                       select_metric: str) -> Summary:
    """The HParams experiment of a sweep: its hparams (`values`: one trial's, whose names every
    trial shares) and its metrics in their order."""
    shown = [name for name in values if name in searched or name in ALWAYS_SHOWN]
    if len(shown) < SHOWN_BY_DEFAULT:
        shown.append("end")
    domains = {**searched, "end": TRIAL_ENDS}
    experiment = Experiment(
        hparam_infos=[_hparam_info(name, value, domains.get(name), name in shown) for name, value in values.items()],
        metric_infos=[_metric_info(name, select_metric) for name in metrics])
    return _hparams_summary(EXPERIMENT_SUMMARY_TAG, HParamsPluginData(experiment=experiment, version=0))


def _session_end(status: str) -> Summary:
    content = HParamsPluginData(session_end_info=SessionEndInfo(status=Status.Value(status)), version=0)
    return _hparams_summary(SESSION_END_TAG, content)


def _hparams_summary(tag: str, content: HParamsPluginData) -> Summary:
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name="hparams", content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata)])


def _reported(result: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in BOOKKEEPING}


class _HParamsWriter(TBXLoggerCallback):
    """Ray's TensorBoard logger with the sweep's full HParams and no bookkeeping."""

    # Resuming a sweep started before the launcher handed over the searched domains unpickles a
    # writer without them: its hparams are then written without domains, not with an error.
    _searched: Mapping[str, Sequence[Any]] = {}

    def __init__(self, full_config: Callable[[dict], dict], searched: Mapping[str, Sequence[Any]]):
        super().__init__()
        self._full_config = full_config
        self._searched = dict(searched)
        self._failed: set[str] = set()

    def log_trial_result(self, iteration: int, trial: Trial, result: dict):
        super().log_trial_result(iteration, trial, _reported(result))

    def log_trial_end(self, trial: Trial, failed: bool = False):
        if failed:
            self._failed.add(trial.trial_id)
        super().log_trial_end(trial, failed)

    def _try_log_hparams(self, trial: Trial, result: dict):
        config = self._full_config(trial.config)
        values = {k: v for k, v in config.items() if isinstance(v, (str, bool, int, float))}
        failed = trial.trial_id in self._failed
        values["end"] = trial_outcome([trial.last_result or {}], int(config["epochs"]), errored=failed)
        # The last result's keys, not `result`'s (only its finite values): the same for every
        # trial, so every trial writes the same experiment summary.
        reported = [k for k, v in _reported(trial.last_result).items()
                    if k != TRAINING_ITERATION and (v is None or isinstance(v, Real))]
        metrics = metric_order(reported, config["select_metric"])
        _, session_start, _ = hparams(hparam_dict=values, metric_dict={})
        writer = self._trial_writer[trial].file_writer
        writer.add_summary(experiment_summary(values, metrics, self._searched, config["select_metric"]))
        writer.add_summary(session_start)
        writer.add_summary(_session_end("STATUS_FAILURE" if failed else "STATUS_SUCCESS"))


class SweepTensorBoard(LoggerCallback):
    """`_HParamsWriter` behind a plain `LoggerCallback` (see the module's docstring)."""

    _SAVED_FILE_TEMPLATES = TBXLoggerCallback._SAVED_FILE_TEMPLATES

    def __init__(self, full_config: Callable[[dict], dict], searched: Mapping[str, Sequence[Any]]):
        self._writer = _HParamsWriter(full_config, searched)

    def log_trial_start(self, trial: Trial):
        self._writer.log_trial_start(trial)

    def log_trial_result(self, iteration: int, trial: Trial, result: dict):
        self._writer.log_trial_result(iteration, trial, result)

    def log_trial_end(self, trial: Trial, failed: bool = False):
        self._writer.log_trial_end(trial, failed)


def sweep_loggers(full_config: Callable[[dict], dict], searched: Mapping[str, Sequence[Any]]) -> list[LoggerCallback]:
    """Every logger a sweep runs: Ray's CSV and JSON result files, and SweepTensorBoard.
    `full_config` maps Ray's trial config (the searched values) to the whole training config;
    `searched` names each searched field with its values (a choice's, or a range's [low, high])."""
    return [CSVLoggerCallback(), JsonLoggerCallback(), SweepTensorBoard(full_config, searched)]
