"""`medsweep`: the command line. Each subcommand parses, validates at the edge, then calls
the library; bad input ends in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import errno
import gc
import os
import sys
import tempfile
import time
import typing
import warnings
from pathlib import Path

from medvit.interrupt import Terminated, forget_caught_interrupt, remembered_interrupt
from medvit.jsonio import write_json
from medvit.openmp import set_default_wait_policy
from medvit.outcome import UNFINISHED
from medvit.selection import SELECT_METRICS, metric_named
from sweeps.paths import StorageError, check_writable_folder, local_folder

USAGE_ERROR = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


# OSErrors that mean the storage refused a write, not a fault of medsweep: one line, no traceback.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the usage block and then the error; we print the error alone, led by the
    subcommand like every other error (``train: ...``)."""

    def error(self, message: str) -> None:
        command = self.prog.removeprefix("medsweep").strip()
        raise UsageError(f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")


# -- medsweep train ------------------------------------------------------------------------

def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _flag_kwargs(field: str, info) -> dict:
    """argparse keywords for one config field: its type from the annotation, its help from
    the field's description and default."""
    bare = [arg for arg in typing.get_args(info.annotation) if arg is not type(None)] or [info.annotation]
    default = " (required)" if info.is_required() else "" if info.default is None else f" (default {info.default})"
    kwargs = {"dest": field, "default": None, "help": f"{info.description}{default}".replace("%", "%%")}
    if bare[0] is bool:
        return {**kwargs, "action": argparse.BooleanOptionalAction}
    if typing.get_origin(info.annotation) is typing.Literal:  # e.g. --device: auto, cpu or cuda
        return {**kwargs, "choices": bare}
    return {**kwargs, "type": bare[0] if bare[0] in (int, float) else str}


def add_train_parser(subparsers, config_class=None) -> None:
    """`medsweep train`: one flag per field of the config class (TrainConfig by default)."""
    from medvit.config import TrainConfig

    config_class = config_class or TrainConfig
    parser = subparsers.add_parser("train", help="train one configuration and write metrics.json")
    parser.add_argument("--config", type=config_location,
                        help="YAML of TrainConfig fields, a file or in a bucket (s3://, gs://); flags override it")
    for field, info in config_class.model_fields.items():
        parser.add_argument(flag_name(field), **_flag_kwargs(field, info))
    parser.add_argument("--out", type=Path, required=True, metavar="FOLDER", help="output folder for metrics.json")
    parser.set_defaults(run=run_train, config_class=config_class)


def config_location(text: str) -> Path | str:
    """--config: a local file as a Path, a bucket's (s3://, gs://) as its URI."""
    return local_folder(text) or text


def train_values(args: argparse.Namespace) -> dict:
    """The config file's values, overridden by every flag the user gave."""
    from medvit.config import ConfigError, load_config_file
    from sweeps.folder import fetched_file

    values = {}
    if isinstance(args.config, str):  # in a bucket
        try:
            with fetched_file(args.config) as local:
                values = load_config_file(local)
        except ConfigError:
            raise
        except ValueError as exc:  # not there, or the bucket cannot be read
            raise ConfigError(f"config: {exc}") from None
    elif args.config:
        values = load_config_file(args.config)
    for field in args.config_class.model_fields:
        if getattr(args, field) is not None:
            values[field] = getattr(args, field)
    if "dataset" not in values:
        raise UsageError("train: --dataset is required (or a --config file that names it)")
    return values


def format_epoch(metrics: dict, epochs: int) -> str:
    marks = " *" if metrics["best_epoch"] == metrics["epoch"] else ""
    if metrics.get("diverged"):
        marks = "  diverged: non-finite training loss, training stopped"
    vals = "  ".join(
        f"{name} {metrics[name]:.4f}"
        for name in sorted(SELECT_METRICS, key=lambda name: metric_named(name).from_scores)  # the loss first
        if name in metrics
    )
    loss = "nan" if metrics["train_loss"] is None else f"{metrics['train_loss']:.4f}"
    return (
        f"epoch {metrics['epoch']:>3}/{epochs}  train_loss {loss}  {vals}  "
        f"lr {metrics['lr']:.2e}  {metrics['epoch_time_s']:.1f}s  {metrics['images_per_s']:.0f} img/s{marks}"
    )


METRICS_FILE = "metrics.json"


def check_out(out: Path, config: Path | None) -> None:
    """Refuse a bad --out before training (the one check every command's --out gets), so a
    finished run is never lost at the end, and never overwrite a run that is already there (a
    sweep's trial folder included)."""
    from analysis.cli import check_out as check_out_place

    check_out_place("train", out, "folder", inputs=[config] if config else [], writes=(METRICS_FILE,))
    for run_file in (METRICS_FILE, "result.json"):  # a run of medsweep train, or a sweep's trial
        if (out / run_file).exists():
            raise UsageError(f"train: --out: {out} already holds a run ({run_file}); give a new folder")


def check_device(command: str, device: str | None) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"{command}: --device: cuda was asked for but no CUDA GPU is visible; "
                             "allowed here: auto, cpu")


def run_train(args: argparse.Namespace) -> int:
    from medvit.config import build_config
    from medvit.data import describe
    from medvit.train import train, load_data

    if isinstance(args.config, Path) and args.config.is_dir():
        raise UsageError(f"train: --config: {args.config} is a folder; allowed: a YAML file of TrainConfig fields")
    config = build_config(train_values(args), args.config_class)
    check_device("train", config.device)
    check_out(args.out, args.config if isinstance(args.config, Path) else None)
    data = load_data(config)
    empty = [split for split, labels in data.labels.items() if len(labels) == 0]
    if empty:
        raise UsageError(f"train: --data-root: {data.path}: the {', '.join(empty)} split holds no images; "
                         "allowed: a MedMNIST file with images in every split")
    print(f"data   {describe(data)}", flush=True)
    print(f"model  {config.model}  loss alpha={config.alpha} margin={config.margin}  "
          f"select on {config.select_metric}", flush=True)
    result = train(
        config,
        data,
        on_epoch=lambda m: print(format_epoch(m, config.epochs), flush=True),
    )
    keys = ("val", "test", "val_tta", "test_tta", "selected_epoch", "select_metric", "select_score", "diverged",
            "config", "environment", "wall_time_s", "images_per_s", "history", "audit")
    path = args.out / METRICS_FILE
    print(f"selected epoch {result['selected_epoch']} by {config.select_metric}; test: {metric_line(result['test'])}")
    write_finished_run(path, {key: result[key] for key in keys if key in result})
    if "test_tta" in result:
        print(f"with flip test-time augmentation; test: {metric_line(result['test_tta'])}")
    if "audit" in result:
        audit = result["audit"]
        print(f"audit (never selects): the epoch chosen on {audit['test_selected_on']} would be "
              f"{audit['test_selected_epoch']}, test: {metric_line(audit['test_selected'] or {})}")
        rule = audit.get("decision_on_test")
        if rule is not None:
            chosen = (f"the decision threshold chosen on test would be {rule['threshold']:.3f}" if "threshold" in rule
                      else "the class offsets (to the log-probabilities) chosen on test would be "
                           f"[{', '.join(f'{v:+.2f}' for v in rule['offsets'])}]")
            print(f"audit (never selects): {chosen}, test acc {rule['acc']:.4f}")
    print(f"wrote {path}")
    if result["diverged"]:
        print(f"diverged: the training loss became non-finite at epoch {len(result['history'])}; "
              "lower --lr or check the data", file=sys.stderr)
        return 1
    return 0


def write_finished_run(path: Path, metrics: dict) -> None:
    """metrics.json of a run that has finished, never over another run's: where one appeared
    while this one trained (a second `train` into the same --out), or where it cannot be written
    (a full disk, a quota, a mount gone read-only), into the temporary folder instead, and a
    one-line error names both."""
    try:
        write_json(path, metrics, replace=False)
    except FileExistsError:
        kept = keep_in_temporary_folder(path, metrics, "is there")
        raise UsageError(f"train: --out: {path} was written by another run while this one trained; this run "
                         f"is kept in {kept}: give each run its own --out") from None
    except OSError as exc:
        kept = keep_in_temporary_folder(path, metrics, f"cannot be written ({exc.strerror})")
        raise StorageError(f"train: --out: cannot write {path} ({exc.strerror}); the finished run is kept in "
                           f"{kept}: move it there once there is room") from None


def keep_in_temporary_folder(path: Path, metrics: dict, why: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = Path(tempfile.gettempdir()) / f"medsweep-{path.parent.name}-{stamp}-{os.getpid()}-{METRICS_FILE}"
    try:
        write_json(kept, metrics, replace=False)
    except OSError as again:
        raise StorageError(f"train: --out: {path} {why}, and {kept} cannot be written ({again.strerror}); "
                           "the test line above is what is left of the run") from None
    return kept


def metric_line(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


# -- medsweep data -------------------------------------------------------------------------

def add_data_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="fetch MedMNIST files")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=OneLineParser)
    download = verbs.add_parser("download", help="download MedMNIST files with the medmnist package")
    download.add_argument("--dataset", required=True, help="a MedMNIST 2D flag, or 'all'")
    download.add_argument("--data-root", default=None, help="target folder (default $MEDMNIST_ROOT, else ~/.medmnist)")
    download.add_argument("--root", default=None, help=argparse.SUPPRESS)  # deprecated: --data-root, as everywhere
    download.add_argument("--size", type=int, default=28, help="28, 64, 128 or 224 (default 28)")
    download.set_defaults(run=run_download)


def run_download(args: argparse.Namespace) -> int:
    from medvit.data import DATASETS, SIZES, download_dataset, resolve_root

    flags = DATASETS if args.dataset == "all" else (args.dataset,)
    if args.dataset != "all" and args.dataset not in DATASETS:
        raise UsageError(f"data download: --dataset: unknown '{args.dataset}'; allowed: all, {', '.join(DATASETS)}")
    if args.size not in SIZES:
        raise UsageError(f"data download: --size: {args.size} is not allowed; allowed: {', '.join(map(str, SIZES))}")
    flag, given = data_root_flag(args)
    root = resolve_root(given, flag)
    try:
        check_writable_folder(root)
    except ValueError as exc:
        raise UsageError(f"data download: {flag}: {exc}; allowed: a writable folder") from None
    for flag in flags:
        print(f"{flag}: {download_dataset(flag, root, args.size)}", flush=True)
    return 0


def data_root_flag(args: argparse.Namespace) -> tuple[str, str | None]:
    """``data download``'s folder and the flag that gave it: ``--data-root``, or the deprecated
    ``--root`` (still taken, with a one-line warning)."""
    if args.root is None:
        return "--data-root", args.data_root
    if args.data_root is not None:
        raise UsageError("data download: --root: give --data-root only (--root is its deprecated alias)")
    print("medsweep: warning: data download: --root is deprecated; use --data-root, as every other command",
          file=sys.stderr)
    return "--root", args.root


# -- medsweep sweep / resume / status -----------------------------------------------------

def add_sweep_parsers(subparsers) -> None:
    sweep = subparsers.add_parser("sweep", help="run a sweep spec on Ray Tune (Optuna + ASHA)")
    sweep.add_argument("spec", help="a spec file, or the name of a packaged spec (e.g. retinamnist)")
    sweep.add_argument("--smoke", action="store_true", help="a tiny fast version of the spec (2 epochs, 2 trials)")
    sweep.add_argument("--num-samples", type=int, default=None, help="override the spec's number of trials")
    sweep.add_argument("--storage", default=None, help="override the spec's storage: local path, NFS path, s3:// or gs://")
    sweep.add_argument("--name", default=None, help="override the sweep's name (its folder under storage)")
    add_cluster_options(sweep)
    sweep.set_defaults(run=run_sweep_command)

    resume = subparsers.add_parser("resume", help="continue an interrupted sweep from its folder")
    resume.add_argument("sweep_dir", help="the sweep folder (<storage>/<name>)")
    add_cluster_options(resume)
    resume.set_defaults(run=run_resume_command)

    status = subparsers.add_parser("status", help="a table of a sweep's trials and their best metrics so far")
    status.add_argument("sweep_dir", help="the sweep folder (<storage>/<name>)")
    status.set_defaults(run=run_status_command)


def add_cluster_options(parser) -> None:
    parser.add_argument("--address", default=None, help="Ray cluster to join ('auto' on a cluster node); default: start Ray here")
    parser.add_argument("--no-autoscaler", dest="autoscaled", action="store_false",
                        help="with --address: the cluster has all the nodes it will have (a SLURM job, a fixed set of "
                             "machines), so a trial no node can hold is refused rather than waited for")
    parser.add_argument("--data-root", default=None, help="folder of MedMNIST .npz files (default $MEDMNIST_ROOT, else ~/.medmnist)")


def absolute(location: str) -> str:
    from medvit.userpath import expand_home

    try:
        return location if "://" in location else str(expand_home(location).resolve())
    except ValueError as exc:
        raise UsageError(f"sweep_dir: {exc}") from None


def run_sweep_command(args: argparse.Namespace) -> int:
    from sweeps.spec import load_spec

    spec = load_spec(args.spec)
    if args.smoke:
        spec = spec.smoke_variant()
    spec = spec.with_overrides(num_samples=args.num_samples, storage=args.storage, name=args.name)
    from sweeps.launch import run_sweep, sweep_dir

    every = spec.checkpoint_every
    cadence = f", checkpoint every {every} epochs and each newly selected" if every > 1 else ""
    print(f"sweep  {spec.name}: {spec.dataset}, {spec.total_trials} trials, searcher {spec.searcher.type}, "
          f"scheduler {spec.scheduler.type}, select on {spec.metric} ({spec.mode}){cadence}", flush=True)
    print(f"folder {sweep_dir(spec)}  (watch: tensorboard --logdir {sweep_dir(spec)})", flush=True)
    results = run_sweep(spec, data_root=args.data_root, address=args.address, autoscaled=args.autoscaled)
    return report_sweep_end(spec, sweep_dir(spec), results)


def run_resume_command(args: argparse.Namespace) -> int:
    from sweeps.launch import resume_sweep

    directory = absolute(args.sweep_dir)
    spec, results = resume_sweep(directory, data_root=args.data_root, address=args.address,
                                 autoscaled=args.autoscaled)
    return report_sweep_end(spec, directory, results)


def report_sweep_end(spec, directory: str, results) -> int:
    """The sweep's end: its trials' outcomes and its best trial, named as best_config.yaml names it."""
    from analysis.collect import error_line
    from sweeps.launch import best_result, diverged

    n_diverged = sum(diverged(result) for result in results)
    print(f"done   {len(results)} trials, {results.num_errors} errored, {n_diverged} diverged; results in {directory}")
    errors = [((result.metrics or {}).get("trial_id") or Path(result.path).name,
               error_line(str(result.error)) or type(result.error).__name__) for result in results if result.error]
    for line in error_lines(errors, len(results)):
        print(line)
    best = best_result(spec, results)
    if best is None:
        print("best   none: every trial errored or diverged, so no best_config.yaml was written")
        return 1
    result, rank = best
    winner, at = f"trial {(result.metrics or {}).get('trial_id', result.path)}", "at its best epoch"
    if spec.repeats > 1:
        winner, at = f"the configuration of {winner}", f"the mean over its {spec.repeats} seeds, each at its best epoch"
    # Ray's progress table names as "Current best trial" the one whose last epoch scores best;
    # the ranking takes each trial at its best epoch, so the two can differ.
    print(f"best   {winner}: {spec.metric} selection score {rank.score:.4f} {at} "
          f"(Ray's \"Current best trial\" above is scored at each trial's last epoch)")
    print(f"       {directory}/best_config.yaml  (medsweep train --config ... --out runs/best)")
    print(f"next   medsweep status {directory}  |  medsweep collect {directory} --out results.parquet")
    # One sweep's winner is one draw (validation noise, and with ASHA the order trials reach its
    # rungs): the number to report is the winner retrained on fresh seeds.
    print(f"       medsweep confirm {directory} --seeds 5 --out confirm.parquet  "
          "(the number to report; --top 3 adds the runners-up)")
    return 0


STATUS_COLUMNS = ("trial_id", "stop_reason", "epochs_run", "best_epoch", "best_value", "model", "augment", "alpha", "margin", "lr")


def run_status_command(args: argparse.Namespace) -> int:
    from sweeps.folder import named_as, readable_copy

    location = absolute(args.sweep_dir)
    try:
        with readable_copy(location) as folder, named_as(folder, location):
            return print_status(location, folder)
    except ValueError as exc:
        raise UsageError(f"status: sweep_dir: {one_line(exc)}") from None
    except OSError as exc:  # a file of the folder that cannot be read
        raise UsageError(f"status: sweep_dir: {location}: cannot be read ({one_line(exc)})") from None


def print_status(location: str, folder: str) -> int:
    """The trials of the sweep at `location`, read from `folder` (the same, or a bucket's copy)."""
    import pandas as pd

    from analysis.collect import read_sweep
    from analysis.tables import rank_trials

    table = read_sweep(folder).to_pandas()
    if table.empty:
        print(f"{location}: no trials yet")
        return 0
    metric, mode = table["metric"].iloc[0], table["mode"].iloc[0]
    # The one ranking rule (best_config.yaml's); trials it cannot rank yet (running, errored) last.
    ranked = rank_trials(table)
    table = pd.concat([ranked, table.drop(ranked.index)])
    columns = list(STATUS_COLUMNS)
    repeats = int(table["repeats"].max()) if table["repeats"].notna().any() else 1
    order = f"best {metric} ({mode}) first"
    if repeats > 1:
        table["config_mean"] = table.groupby("config_group")["best_value"].transform("mean")
        columns[columns.index("best_value") + 1:0] = ["seed", "config_mean"]
        order = f"configurations by their mean {metric} over {repeats} seeds ({mode}), best first"
    print(f"{len(table)} trials; {order}")
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    errored = table[table["error"].notna()]
    for line in error_lines(list(zip(errored["trial_id"], errored["error"])), len(table)):
        print(line)
    print(driver_line(location, folder, int((table["stop_reason"] != UNFINISHED).sum())))
    return 0


# What to change when trials run out of memory, or likely did, by a phrase of the error's line.
OUT_OF_MEMORY_HINTS = {
    "CUDA out of memory": "a GPU out of memory: lower train.batch_size, or raise resources.gpu so that fewer "
                          "trials share a GPU",
    "running low on memory": "a node out of host memory (Ray's memory monitor ended the trial): set "
                             "resources.memory_gib so that Ray puts fewer trials on a node",
    # Ray's line when a trial's worker was killed from outside Ray, the kernel's OOM killer most often
    # (a SLURM job past its --mem, which Ray's memory monitor does not watch)
    "worker process has died": "a trial's worker was killed (most often by the kernel's OOM killer: see the "
                                "node's dmesg; else a crash or a lost node): give the job more memory (SLURM: "
                                "--mem), or set resources.memory_gib so that Ray puts fewer trials on a node",
}
ERROR_CHARS = 240


def error_kind(message: str) -> str:
    """What errors are grouped by: a lack of memory, else the error's type (the text before its
    first colon), since their messages differ in numbers."""
    return next((phrase for phrase in OUT_OF_MEMORY_HINTS if phrase in message), message.split(":", 1)[0])


def error_lines(errors: list[tuple[str, str]], trials: int) -> list[str]:
    """Errored trials grouped by the error's type: how many, their ids, the first one's error
    line (the traceback's last), and what to change when it is a lack of memory."""
    if not errors:
        return []
    groups: dict[str, list[tuple[str, str]]] = {}
    for trial_id, message in errors:
        groups.setdefault(error_kind(message), []).append((trial_id, " ".join(message.split())))
    lines = [f"errors {len(errors)} of {trials} trials, each after Ray's retries (the traceback: error.txt in "
             "each trial's folder; medsweep resume tries them again)"]
    for kind, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        ids = ", ".join(trial_id for trial_id, _ in members[:4]) + (", ..." if len(members) > 4 else "")
        message = members[0][1]
        message = message if len(message) <= ERROR_CHARS else f"{message[:ERROR_CHARS]}..."
        lines.append(f"       {len(members)} x {message}  ({ids})")
        if kind in OUT_OF_MEMORY_HINTS:
            lines.append(f"       {OUT_OF_MEMORY_HINTS[kind]}")
    return lines


def driver_line(directory: str, folder: str, ended: int) -> str:
    """Whether a medsweep is running the sweep at `directory` and, when none is and the sweep
    has not ended, how to go on (its spec read from `folder`, the same or a bucket's copy)."""
    from sweeps.driver_lock import running_driver
    from sweeps.folder import SPEC_FILE
    from sweeps.spec import parse_spec

    holder = running_driver(directory)
    if holder is not None:
        return f"driver running: {holder}"
    try:
        spec_text = (Path(folder) / SPEC_FILE).read_text()
        total = parse_spec(spec_text, source=SPEC_FILE).total_trials
    except (OSError, ValueError):  # a sweep medsweep did not start
        return "driver none"
    if ended < total:
        return f"driver none: {ended} of {total} trials ended; continue with `medsweep resume {directory}`"
    return "driver none"


# -- entry point ---------------------------------------------------------------------------

DESCRIPTION = ("Find the best MedViT configuration for each MedMNIST dataset on your own GPU cluster: "
               "Ray Tune sweeps (Optuna + ASHA), the epoch and the configuration chosen on validation only, "
               "the test split evaluated once.")
EPILOG = "medsweep COMMAND --help lists a command's options. Bad input ends in one line and exit code 2."


def describe_subcommands(parser: argparse.ArgumentParser) -> None:
    """Each subcommand's --help opens with the line that ``medsweep --help`` lists it with."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for listed in action._choices_actions:
                sub = action.choices[listed.dest]
                sub.description = sub.description or listed.help
                describe_subcommands(sub)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line parsed; an argument no option of the command takes is named with the
    command (argparse leaves it to the top-level parser, whose error names no command)."""
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        command = " ".join(filter(None, (args.command, getattr(args, "verb", None))))
        raise UsageError(f"{command}: unrecognized arguments: {' '.join(unknown)} (see medsweep {command} --help)")
    return args


def build_parser() -> argparse.ArgumentParser:
    from analysis.cli import add_analysis_parsers

    parser = OneLineParser(prog="medsweep", description=DESCRIPTION, epilog=EPILOG)
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_train_parser(subparsers)
    add_data_parser(subparsers)
    add_sweep_parsers(subparsers)
    add_analysis_parsers(subparsers)
    describe_subcommands(parser)
    return parser


# Exceptions that mean bad input, each carrying a one-line message: (module, class name).
USER_ERRORS = (("medsweep.cli", "UsageError"), ("analysis.cli", "AnalysisError"), ("medvit.config", "ConfigError"),
               ("medvit.data", "DataError"), ("sweeps.paths", "SweepError"), ("sweeps.spec", "SpecError"))


def user_errors() -> tuple[type[Exception], ...]:
    """The user-error classes of the modules already imported: an exception raised from a
    module's class means that module is loaded, so importing the others is never needed, and
    medvit.data's import (torch, seconds) stays out of `--help` and argparse's one-line errors."""
    return tuple(getattr(sys.modules[module], name) for module, name in USER_ERRORS if module in sys.modules)


# An error quotes the input it refuses; a YAML anchor bomb expands to megabytes.
MAX_ERROR_CHARS = 1000


def one_line(exc: Exception) -> str:
    """The error's message on one line, cut to MAX_ERROR_CHARS."""
    message = " ".join(str(exc).split())
    if len(message) <= MAX_ERROR_CHARS:
        return message
    return f"{message[:MAX_ERROR_CHARS]}... ({len(message)} characters in all)"


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line, like errors: not Python's two lines with the source quoted."""
    print(f"medsweep: warning: {' '.join(str(message).split())}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    set_default_wait_policy()  # before anything imports torch (medvit/openmp.py says why)
    shown, warnings.showwarning = warnings.showwarning, one_line_warning
    try:
        with remembered_interrupt():  # a Ctrl-C that library code swallows is raised again
            args = parse(argv)
            check_device(args.command, getattr(args, "device", None))
            return args.run(args)
    except KeyboardInterrupt as exc:
        ended = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"medsweep: {ended}{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        forget_caught_interrupt()  # exit 130 (143), not by the signal (medvit/interrupt.py)
        return 143 if isinstance(exc, Terminated) else 130
    except user_errors() as exc:
        print(f"medsweep: error: {one_line(exc)}", file=sys.stderr)
        return USAGE_ERROR
    except StorageError as exc:
        print(f"medsweep: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        where = f"cannot write {exc.filename} ({exc.strerror})" if exc.filename else one_line(exc)
        print(f"medsweep: error: {where}; make room (or make the storage writable), then run the command again",
              file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = shown


def run() -> None:
    """The `medsweep` command (console script and `python -m medsweep`): main, then an end
    without the garbage collector's last walk over every object torch and Ray loaded, which took
    1.3 s of each command's end on a 2-core CPU (benchmarks/RESULTS.md 15). Kept out of main,
    which tests call in their own process: frozen objects are never collected."""
    code = main()
    gc.freeze()  # what is alive now lives until the process ends; atexit handlers still run
    sys.exit(code)
