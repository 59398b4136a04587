"""TensorBoard's HParams for a sweep: every trial's full training config and how it ended.

Ray's own TensorBoard logger writes the searched values only (its trial config), marks every
trial as a success, and writes an experiment summary per trial, so TensorBoard takes one
trial's summary for the whole sweep and shows every hparam as not differing. This one writes,
per trial: the searched values and the spec's fixed ones (dataset, epochs, batch size, seed,
...), an `end` hparam (`finished`, `early_stopped` by the scheduler, `errored`), status
failure for an errored trial, and no experiment summary, so TensorBoard computes it across
all trials. Scalars are Ray's, unchanged.

`sweep_loggers` is the sweep's whole list of loggers. Ray adds its own CSV, JSON and
TensorBoard loggers unless told not to (`TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`, which the
launcher sets), and prints a `tensorboard --logdir` hint into its temporary staging folder
whenever a logger is a `TBXLoggerCallback`. So the writer below is wrapped in a plain
`LoggerCallback`: no second TensorBoard logger, and the only hint is the launcher's, which
names the sweep folder.
"""

from __future__ import annotations

from typing import Callable

from ray.tune.experiment import Trial
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback, TBXLoggerCallback
from tensorboardX.proto.api_pb2 import Status
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.summary import hparams

SESSION_END_TAG = "_hparams_/session_end_info"
EPOCH_SCALAR = "ray/tune/epoch"


def trial_end(failed: bool, last_epoch: float | None, epochs: int) -> str:
    if failed:
        return "errored"
    return "early_stopped" if last_epoch is not None and last_epoch < epochs else "finished"


def _session_end(status: str) -> Summary:
    content = HParamsPluginData(session_end_info=SessionEndInfo(status=Status.Value(status)), version=0)
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name="hparams", content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag=SESSION_END_TAG, metadata=metadata)])


class _HParamsWriter(TBXLoggerCallback):
    """Ray's TensorBoard logger with the sweep's full HParams."""

    def __init__(self, full_config: Callable[[dict], dict]):
        super().__init__()
        self._full_config = full_config
        self._failed: set[str] = set()

    def log_trial_end(self, trial: Trial, failed: bool = False):
        if failed:
            self._failed.add(trial.trial_id)
        super().log_trial_end(trial, failed)

    def _try_log_hparams(self, trial: Trial, result: dict):
        config = self._full_config(trial.config)
        values = {k: v for k, v in config.items() if isinstance(v, (str, bool, int, float))}
        failed = trial.trial_id in self._failed
        values["end"] = trial_end(failed, result.get(EPOCH_SCALAR), int(config["epochs"]))
        _, session_start, _ = hparams(hparam_dict=values, metric_dict=result)
        writer = self._trial_writer[trial].file_writer
        writer.add_summary(session_start)
        writer.add_summary(_session_end("STATUS_FAILURE" if failed else "STATUS_SUCCESS"))


class SweepTensorBoard(LoggerCallback):
    """`_HParamsWriter` behind a plain `LoggerCallback` (see the module's docstring)."""

    _SAVED_FILE_TEMPLATES = TBXLoggerCallback._SAVED_FILE_TEMPLATES

    def __init__(self, full_config: Callable[[dict], dict]):
        self._writer = _HParamsWriter(full_config)

    def log_trial_start(self, trial: Trial):
        self._writer.log_trial_start(trial)

    def log_trial_result(self, iteration: int, trial: Trial, result: dict):
        self._writer.log_trial_result(iteration, trial, result)

    def log_trial_end(self, trial: Trial, failed: bool = False):
        self._writer.log_trial_end(trial, failed)


def sweep_loggers(full_config: Callable[[dict], dict]) -> list[LoggerCallback]:
    """Every logger a sweep runs: Ray's CSV and JSON result files, and SweepTensorBoard.
    `full_config` maps Ray's trial config (the searched values) to the whole training config."""
    return [CSVLoggerCallback(), JsonLoggerCallback(), SweepTensorBoard(full_config)]
