"""Launch, resume and inspect sweeps: a validated `SweepSpec` becomes a Ray Tune run.

A sweep lives in `<storage>/<name>/`: Ray's own experiment state and trial folders (results,
checkpoints, TensorBoard event files), plus `medsweep_spec.yaml` (the spec it ran, so
`medsweep resume` needs nothing else) and, at the end, `best_config.yaml`.

A sweep folder is self-contained: resume writes into the folder it is given, wherever the
spec says the sweep started. Bad input fails here with one line before Ray starts: storage
that cannot be written, an address where nothing listens, a folder that is not a sweep.
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import functools
import glob
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import warnings

import pyarrow.fs
import ray
from ray import tune
from ray._private import ray_constants

from medvit.data import MedMNISTData, load_dataset
from medvit.interrupt import Terminated
from medvit.outcome import DIVERGED, FINISHED, trial_outcome
from medvit.yamlio import dump_yaml, load_yaml
from sweeps.driver_lock import sweep_folder_held
from sweeps.folder import (ERROR_FILE, MAX_FAILURES, SPEC_FILE, STATE_GLOB, check_sweep_dir, failed_for_good,
                           parse_experiment_state, split_trial_item)
from sweeps.paths import SweepError, bucket_filesystem, check_writable_folder, local_folder
from sweeps.ranking import SCORE, Candidate, Rank, ranks, trial_best
from sweeps.space import (configuration, configuration_id, search_algorithm, trial_config, trial_scheduler,
                          tune_param_space)
from sweeps.spec import SweepSpec, parse_spec
from sweeps.storage import check_storage_visible
from sweeps.storage_room import StorageRoom, check_room, check_room_to_start
from trainables.medvit_trainable import train_medvit
from trainables.tensorboard import sweep_loggers

BEST_CONFIG_FILE = "best_config.yaml"
# A hash of each field of the spec as launched: resume refuses a spec edited since (the trials
# ran the old one, and Ray would rewrite its state before the edit failed anything).
FINGERPRINT_FILE = "medsweep_spec.fingerprint.json"
# Fields a copied or moved sweep folder, or a resumed sweep, may change: they do not change what
# a trial computes.
UNFINGERPRINTED = ("storage", "description", "checkpoint_every")
TUNER_FILE = "tuner.pkl"
# An unreachable address fails within this many seconds instead of Ray's minutes of retries.
ADDRESS_TIMEOUT_S = 5


def sweep_dir(spec: SweepSpec) -> str:
    """Where Ray keeps the sweep: an absolute local folder or a bucket URI."""
    return f"{str(spec.storage_path).rstrip('/')}/{spec.name}"


def build_trainable(spec: SweepSpec, data: MedMNISTData):
    """The trainable with the dataset put in the object store once for all trials."""
    full_config = functools.partial(trial_config, spec)
    trainable = tune.with_parameters(train_medvit, data=data, full_config=full_config,
                                     checkpoint_every=spec.checkpoint_every)
    return tune.with_resources(trainable, ray_resources(spec))


def ray_resources(spec: SweepSpec) -> dict[str, float]:
    """One trial's request in Ray's resource names (memory in bytes; none asked when 0)."""
    resources = {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}
    if spec.resources.memory_gib:
        resources["memory"] = int(spec.resources.memory_gib * 2**30)
    return resources


def param_space(spec: SweepSpec) -> dict:
    """Tuner's param space: empty for Optuna, which keeps the space in its define-by-run."""
    return {} if spec.searcher.type == "optuna" else tune_param_space(spec)


def check_address(address: str | None) -> None:
    """A `host:port` must accept a TCP connection: `ray.init` would retry it for minutes."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"address: {address!r} is not host:port; allowed: host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SweepError(f"address: no Ray cluster at {address!r} ({reason}); start one with `ray start --head` "
                         "or give --address auto on a cluster node") from None


# Buckets are left to Ray, which checks them with its own credentials (pyarrow would ask the
# network here already); any other scheme must have a filesystem pyarrow can load here.
BUCKET_SCHEMES = ("s3", "gs", "gcs")


def check_storage(directory: str) -> None:
    """The sweep folder must be writable, checked before Ray starts: a bad --storage costs
    nothing."""
    allowed = "allowed: a writable local or NFS folder, s3:// or gs:// URI"
    folder = local_folder(directory)
    if folder is not None:
        try:
            check_writable_folder(folder)
        except ValueError as exc:
            raise SweepError(f"storage: {exc}; {allowed}") from None
        return
    scheme = directory.partition("://")[0]
    if scheme.lower() in BUCKET_SCHEMES:
        return
    try:
        with stderr_of_subprocesses_silenced():
            filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(directory)
            filesystem.get_file_info(fs_path)
    except (OSError, pyarrow.ArrowException) as exc:  # hdfs:// without a JVM, abfs:// without credentials
        raise SweepError(f"storage: {scheme}:// cannot be used on this machine ({first_line(exc)}); "
                         f"{allowed}") from None


@contextlib.contextmanager
def stderr_of_subprocesses_silenced():
    """File descriptor 2 pointed at /dev/null: a filesystem probe's SDK may run helpers (Azure's
    `az`) that print to it, which would break the one-line error into several."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def connect(address: str | None) -> None:
    """Join the cluster at `address` ('auto' on a cluster node), else start Ray here: never
    join some other cluster that happens to run on this machine by accident."""
    # Keeping one checkpoint per trial makes Tune snapshot its state after every epoch, by
    # design; its warning about that would repeat all through the sweep's output.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    # Ray puts its own SIGTERM handler in place, which prints a stack dump as it ends the driver:
    # the one before it comes back (the default, outside a test), and the fit puts in one that
    # stops the sweep as Ctrl-C does (sigterm_stops_the_fit).
    sigterm = signal.getsignal(signal.SIGTERM)
    # The processes Ray starts here inherit this thread's signal mask, as they do the SIGINT Ray
    # blocks so that Ctrl-C reaches the driver alone. SIGTERM blocked too: where a job scheduler
    # signals every process of the job (SLURM), Ray's raylet, GCS and trial workers keep running
    # while the driver stops the sweep through Ray Tune, as when the driver alone is signalled.
    # Unblocked, the raylet went with the object store, and the driver either waited for the
    # dead Ray until SIGTERM_GRACE_S or, when the GCS reported the node dead first, was ended by
    # Ray's core worker with exit 1 and no resume line. The driver's exit ends them at once
    # (shutdown_ray_at_once), and so does its death (the kernel, at Ray's request; Linux only, so
    # elsewhere SIGTERM stays unblocked).
    blocked = {signal.SIGTERM} if address is None and sys.platform.startswith("linux") else set()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False)
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
        if blocked:
            atexit.unregister(shutdown_ray_at_once)  # once, however many sweeps a process runs
            atexit.register(shutdown_ray_at_once)  # after Ray's own, so it runs first
    except ConnectionError as exc:
        raise SweepError(f"address: no Ray cluster at {address!r} ({first_line(exc)})") from None
    except OSError as exc:  # Ray's sockets live under $RAY_TMPDIR, else $TMPDIR (long on many HPC jobs)
        if "AF_UNIX path length" not in str(exc):
            raise
        socket_path = str(exc).rsplit(": ", 1)[-1]
        raise SweepError(f"RAY_TMPDIR: Ray cannot start here: its socket path {socket_path} has "
                         f"{len(os.fsencode(socket_path))} bytes, more than the 107 Linux allows; allowed: a short "
                         "RAY_TMPDIR (or TMPDIR), e.g. RAY_TMPDIR=/tmp") from None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def shutdown_ray_at_once() -> None:
    """Disconnect from the Ray started here, then SIGKILL its processes. Ray's own shutdown sends
    each of them the SIGTERM they have blocked and waits 1 s before its SIGKILL: 5 s of nothing at
    every sweep's end. The raylet's children (its agents, workers) go too: the agents outlived a
    raylet killed at once by about a minute."""
    node = ray._private.worker._global_node
    ray._private.worker._global_node = None  # so that ray.shutdown() disconnects and kills nothing
    ray.shutdown()
    if node is None:
        return
    if node.is_head():
        node.destroy_external_storage()
    raylets = node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, [])
    children = [pid for raylet in raylets for pid in descendants(raylet.process.pid)]
    node.kill_all_processes(check_alive=False, allow_graceful=False, wait=True)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def process_stat(pid: int | str) -> list[str]:
    """The fields of Linux's /proc/PID/stat after the command name (state, parent ID, ...)."""
    with open(f"/proc/{pid}/stat") as file:
        return file.read().rsplit(")", 1)[1].split()  # the name, in parentheses, may hold anything


def descendants(pid: int) -> list[int]:
    """The process IDs under `pid` (Linux's /proc), children first."""
    parents = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        child = stat.split("/")[2]
        with contextlib.suppress(OSError):
            parents[int(child)] = int(process_stat(child)[1])
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def check_placeable(spec: SweepSpec, address: str | None, autoscaled: bool = True) -> None:
    """Some node must hold one trial's `resources`, or Ray queues every trial for ever. Ray
    started here has all the nodes it will ever have: refused; so has a cluster joined at
    --address without an autoscaler (`autoscaled` False: --no-autoscaler, as a SLURM job says).
    Another joined cluster may have an autoscaler that adds such a node (cluster.yaml's GPU
    workers): said, not refused."""
    wanted = ray_resources(spec)
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(key, 0) >= amount for key, amount in wanted.items()) for node in nodes):
        return

    def described(amounts: dict[str, float]) -> str:
        return ", ".join(f"memory {amount / 2**30:.3g} GiB" if key == "memory" else f"{key.lower()} {amount:g}"
                         for key, amount in amounts.items())

    largest = described({key: max((node.get(key, 0) for node in nodes), default=0) for key in wanted})
    problem = (f"resources: one trial asks for {described(wanted)}, "
               f"but no node of this Ray cluster has that (the most on any node: {largest})")
    if address in (None, "local"):
        raise SweepError(f"{problem}; allowed: at most one node's resources: add --smoke (cpu 1, gpu 0), "
                         "run the CPU spec retinamnist-cpu, or lower the spec's resources field")
    if not autoscaled:
        raise SweepError(f"{problem}; allowed: at most one node's resources, as --no-autoscaler says the cluster has "
                         "all its nodes: give them more (a SLURM job: --cpus-per-task, --gpus-per-node, --mem) or "
                         "lower the spec's resources field")
    warnings.warn(f"{problem}; going on, since an autoscaler may add such a node (without one the trials "
                  "wait for ever: Ctrl-C, then lower the spec's resources field)")


@contextlib.contextmanager
def own_loggers_only():
    """While a sweep runs (or resumes), Ray adds none of its default loggers: the sweep lists
    its own (trainables.tensorboard.sweep_loggers), and Ray's would write a second TensorBoard
    file. Set for the fit only, so other Tune runs in the same process keep Ray's defaults."""
    key = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
    before = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[key]
        else:
            os.environ[key] = before


def load_sweep_data(spec: SweepSpec, data_root: str | None) -> MedMNISTData:
    return load_dataset(spec.dataset, root=data_root, size=spec.train.img_size)


def start_ray(spec: SweepSpec, directory: str, data_root: str | None, address: str | None,
              autoscaled: bool = True) -> MedMNISTData:
    """The sweep's data, with Ray connected and able to place a trial and every node seeing
    `directory`: the checks, cheapest first, of both a new sweep and a resumed one."""
    check_address(address)
    data = load_sweep_data(spec, data_root)
    connect(address)
    check_placeable(spec, address, autoscaled)
    check_storage_visible(directory)
    return data


def run_sweep(spec: SweepSpec, data_root: str | None = None, address: str | None = None,
              autoscaled: bool = True) -> tune.ResultGrid:
    """Run a sweep to the end and write the best trial's config as YAML."""
    directory = sweep_dir(spec)
    check_storage(directory)
    with sweep_folder_held(directory):
        check_new(directory)
        check_room_to_start(spec, directory)
        data = start_ray(spec, directory, data_root, address, autoscaled)
        tuner = new_tuner(spec, data)
        save_spec(spec)
        return fit_to_the_end(spec, tuner, directory)


def check_new(directory: str) -> None:
    if tune.Tuner.can_restore(directory):
        raise SweepError(
            f"name: a sweep already lives in {directory}; continue it with "
            f"`medsweep resume {directory}` or start a new one with --name"
        )


def new_tuner(spec: SweepSpec, data: MedMNISTData) -> tune.Tuner:
    return tune.Tuner(
        build_trainable(spec, data),
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            # The smoothed selection score: what ASHA cuts on and the searcher learns from.
            metric=SCORE,
            mode=spec.mode,
            search_alg=search_algorithm(spec),
            scheduler=trial_scheduler(spec),
            num_samples=spec.num_samples,
            # A new trial reuses a finished trial's worker: no second import of torch & co.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=str(spec.storage_path),
            # One checkpoint per trial: it holds the best-so-far weights too, and a big model's
            # checkpoint (weights, AdamW moments, best weights) is hundreds of MB.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            callbacks=[*sweep_loggers(functools.partial(trial_config, spec),
                                      {name: dist.values for name, dist in spec.search.items()}), StorageRoom()],
            verbose=1,
        ),
    )


def fit_to_the_end(spec: SweepSpec, tuner: tune.Tuner, directory: str) -> tune.ResultGrid:
    with sigterm_stops_the_fit(directory):
        try:
            with own_loggers_only():
                results = tuner.fit()
        except Exception:
            check_room(directory)  # on a full disk Ray's own reading of a trial's error file fails
            raise
        if results.num_errors:
            check_room(directory)
        check_ended(directory, spec.total_trials)
    write_best_config(spec, results, directory)
    return results


# How long the driver waits for Ray to stop a sweep after SIGTERM before it ends at once: less
# than the 30 s SLURM (KillWait) and Kubernetes (terminationGracePeriodSeconds) wait by default.
SIGTERM_GRACE_S = 20


@contextlib.contextmanager
def sigterm_stops_the_fit(directory: str):
    """SIGTERM, what a job scheduler sends a while before it kills a job (SLURM's scancel and
    time limit, Kubernetes' pod deletion) and `kill` sends, stops the sweep as Ctrl-C does, by
    Ray Tune's own stop signal: Ray saves its state and stops the trials, and the command ends
    `terminated` with the `medsweep resume` line, exit 143. The Ray started here does not heed
    SIGTERM (connect), so SLURM's signal to every process of the job stops the sweep the same way.
    Ray's processes that do heed it (`ray start`'s, on the nodes of a joined cluster) leave the
    driver waiting for the dead Ray for 60 s once it has saved the state; so past SIGTERM_GRACE_S
    it ends at once, with the same line."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = threading.Lock()  # held from the first SIGTERM on
    give_up = threading.Timer(SIGTERM_GRACE_S, ended_at_once, args=(directory,))
    give_up.daemon = True

    def stop(signum, frame) -> None:
        # scancel signals the job's shell too, which passes it on: the first one stops. The second
        # can come while the first is still in this handler (under SLURM it came as the first one
        # started the timer, which then started twice: a traceback, exit 1): one call tests and sets.
        if not stopping.acquire(blocking=False):
            return
        give_up.start()
        tune_stop = signal.getsignal(signal.SIGUSR1)  # the fit installs it as it starts
        if not callable(tune_stop):
            raise Terminated
        tune_stop(signal.SIGUSR1, frame)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except SweepInterrupted as exc:
        if stopping.locked():
            raise Terminated(str(exc)) from None
        raise
    finally:  # None: a handler not put in place from Python (Ray's, where Ray started before medsweep)
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        give_up.cancel()


def ended_at_once(directory: str) -> None:
    print(f"medsweep: terminated: Ray did not stop the sweep within {SIGTERM_GRACE_S} s of SIGTERM (were its "
          f"processes sent SIGTERM too?), so it was ended with the state Ray saved; continue with: "
          f"medsweep resume {directory}", file=sys.stderr, flush=True)
    os._exit(143)


def resume_sweep(
    directory: str, data_root: str | None = None, address: str | None = None, autoscaled: bool = True
) -> tuple[SweepSpec, tune.ResultGrid]:
    """Continue an interrupted sweep: finished trials kept, unfinished ones from checkpoints.
    Everything is read from and written to `directory`, even if the sweep was moved there."""
    directory = str(directory).rstrip("/")
    spec = check_resumable(directory)
    check_storage(directory)
    with sweep_folder_held(directory):
        check_state_whole(directory)  # read only once no driver writes it: a running one is named instead
        data = start_ray(spec, directory, data_root, address, autoscaled)
        try:
            tuner = tune.Tuner.restore(
                directory,
                trainable=build_trainable(spec, data),
                # The random and grid searchers' trials not started yet are resolved against the
                # same param space.
                param_space=param_space(spec) or None,
                resume_unfinished=True,
                resume_errored=True,
            )
        except Exception as exc:  # Ray's own state (pickles) did not load: nothing has run yet
            raise SweepError(f"sweep_dir: {directory}: Ray cannot restore this sweep ({type(exc).__name__}: "
                             f"{first_line(exc)})") from None
        return spec, fit_to_the_end(spec, tuner, directory)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C ended the fit early. Ray saves its state and returns as if the sweep were done
    (its in-memory trials even read TERMINATED), so no best config may be written from it."""


ENDED = ("TERMINATED", "ERROR")


def check_ended(directory: str, expected_trials: int) -> None:
    """SweepInterrupted unless every trial ended, by the experiment state Ray saved last: it
    is written before Ray stops the running trials, so they still read RUNNING there. A trial
    whose worker died on its last try also reads RUNNING there; its error file says it ended."""
    newest = newest_state_file(directory)
    state = parse_experiment_state(read_sweep_file(directory, newest), f"{directory}/{newest}")
    ended = sum(trial_ended(directory, meta or {}, runtime or {})
                for meta, runtime in map(split_trial_item, state["trial_data"]))
    if ended < expected_trials:
        raise SweepInterrupted(f"{ended} of {expected_trials} trials ended, so no best_config.yaml was written; "
                               f"continue with: medsweep resume {directory}")


def trial_ended(directory: str, meta: dict, runtime: dict) -> bool:
    """Whether one trial of the experiment state ended (`failed_for_good` where it reads running:
    one file read a running trial, none a pending one)."""
    if meta.get("status") in ENDED:
        return True
    if meta.get("status") != "RUNNING" or not meta.get("relative_logdir"):
        return False
    try:
        error_text = read_sweep_file(directory, f"{meta['relative_logdir']}/{ERROR_FILE}")
    except FileNotFoundError:
        return False
    return failed_for_good(error_text, runtime.get("num_failures"))


def check_resumable(directory: str) -> SweepSpec:
    """The spec of a sweep folder medsweep wrote, with Ray state to resume; else one line."""
    if local_folder(directory) is not None:
        try:
            check_sweep_dir(directory)
        except ValueError as exc:
            raise SweepError(f"sweep_dir: {exc}") from None
    try:
        spec_text = read_sweep_file(directory, SPEC_FILE)
    except FileNotFoundError:
        raise SweepError(f"sweep_dir: {directory}: no {SPEC_FILE}, so medsweep did not write this folder; "
                         "resume runs only sweeps medsweep started (it unpickles Ray's state)") from None
    spec = parse_spec(spec_text, source=f"{directory}/{SPEC_FILE}")
    check_unedited(directory, spec_text)
    if not tune.Tuner.can_restore(directory):
        raise SweepError(f"sweep_dir: {directory}: no {TUNER_FILE}, so there is no Ray Tune state to resume")
    newest_state_file(directory)
    return spec


def check_state_whole(directory: str) -> None:
    """Ray would start a new experiment silently from a corrupted state, so it is refused here."""
    newest = newest_state_file(directory)
    try:
        parse_experiment_state(read_sweep_file(directory, newest), f"{directory}/{newest}")
    except ValueError as exc:
        raise SweepError(f"sweep_dir: {exc}; refusing to resume (Ray would start a new sweep)") from None


def spec_fingerprint(spec_text: str) -> dict[str, str]:
    """A short hash of each top-level field of a spec file as written, by field name. The file's
    text, not the parsed spec: a newer medsweep that adds a field with a default reads the same
    file as the same spec."""
    return {key: hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
            for key, value in load_yaml(spec_text).items() if key not in UNFINGERPRINTED}


def check_unedited(directory: str, spec_text: str) -> None:
    """One line naming the fields of a valid spec file edited since launch. A sweep started
    before medsweep wrote fingerprints has none to compare: it is let through, as before."""
    source = f"{directory}/{FINGERPRINT_FILE}"
    try:
        launched = json.loads(read_sweep_file(directory, FINGERPRINT_FILE))
    except FileNotFoundError:
        return
    except ValueError:
        launched = None
    if not isinstance(launched, dict):
        raise SweepError(f"sweep_dir: {source}: not the JSON object medsweep wrote at launch; refusing to resume "
                         "a sweep whose spec cannot be checked")
    now = spec_fingerprint(spec_text)
    edited = sorted(key for key in launched.keys() | now.keys() if launched.get(key) != now.get(key))
    if edited:
        raise SweepError(f"sweep_dir: {directory}/{SPEC_FILE}: {', '.join(edited)} edited since the sweep started; "
                         "allowed: the spec as launched (its trials ran that one); for the edited spec start a new "
                         "sweep: medsweep sweep <spec> --name <new name>")


def newest_state_file(directory: str) -> str:
    """Ray's pick: the greatest name (its timestamp), never the newest mtime (copies reset it)."""
    filesystem, path = bucket_filesystem(directory)
    names = [info.base_name for info in filesystem.get_file_info(pyarrow.fs.FileSelector(path))
             if fnmatch.fnmatch(info.base_name, STATE_GLOB)]
    if not names:
        raise SweepError(f"sweep_dir: {directory}: no {STATE_GLOB}, so there is no Ray Tune state to resume")
    return max(names)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "no message"


def read_sweep_file(directory: str, name: str) -> str:
    """A small text file of the sweep folder, local or on a bucket; FileNotFoundError if absent,
    one line if it cannot be read (a folder in its place, a sync that broke it)."""
    location = f"{str(directory).rstrip('/')}/{name}"
    filesystem, path = bucket_filesystem(location)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read().decode(errors="replace")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SweepError(f"sweep_dir: {location}: cannot be read ({first_line(exc)}); allowed: the file Ray or "
                         "medsweep wrote there") from None


def write_sweep_file(directory: str, name: str, text: str) -> str:
    """Write a small file into the sweep folder, local or on a bucket (pyarrow's filesystems)."""
    target = f"{directory}/{name}"
    filesystem, path = bucket_filesystem(target)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(text.encode())
    return target


def save_spec(spec: SweepSpec) -> str:
    """The spec and its fingerprint, beside Ray's state: all `medsweep resume` reads."""
    spec_text = spec.to_yaml()
    write_sweep_file(sweep_dir(spec), FINGERPRINT_FILE, json.dumps(spec_fingerprint(spec_text), indent=1) + "\n")
    return write_sweep_file(sweep_dir(spec), SPEC_FILE, spec_text)


def best_result(spec: SweepSpec, results: tune.ResultGrid) -> tuple[tune.Result, Rank] | None:
    """The best trial by `sweeps.ranking` (errored and diverged trials excluded; with repeats,
    the best trial of the best configuration), the rule `analysis.tables.rank_trials` applies
    too, so best_config.yaml names the report's best configuration."""
    results = list(results)
    candidates = [_candidate(spec, result) for result in results]
    ranked = [(rank, result) for rank, result in zip(ranks(candidates, spec.mode), results) if rank is not None]
    if not ranked:
        return None
    rank, result = min(ranked, key=lambda item: item[0].key)
    return result, rank


def _candidate(spec: SweepSpec, result: tune.Result) -> Candidate:
    """What the ranking rule needs of one Ray trial."""
    history = result.metrics_dataframe
    metrics = result.metrics or {}
    best = None if result.error is not None or history is None else trial_best(
        history.to_dict("records"), spec.metric, spec.mode)
    return Candidate(trial_id=str(metrics.get("trial_id", result.path)), best=best,
                     finished=trial_outcome([metrics], spec.train.epochs, errored=result.error is not None) == FINISHED,
                     # a trial that errored before its first report has no config
                     group=configuration_id(result.config or {}), repeats=spec.repeats)


def diverged(result: tune.Result) -> bool:
    """The trial ended on a non-finite training loss (its last report says so; medvit.outcome)."""
    return trial_outcome([result.metrics or {}], None, errored=result.error is not None) == DIVERGED


def write_best_config(spec: SweepSpec, results: tune.ResultGrid, directory: str) -> str | None:
    """The best trial's full train config as YAML that `medsweep train --config` accepts; with
    repeats, the best configuration's, with the spec's base seed."""
    best = best_result(spec, results)
    if best is None:
        return None
    result, rank = best
    if spec.repeats > 1:
        what = (f"Best configuration of sweep {spec.name}: {spec.metric} selection score {rank.score:.4f}, "
                f"the mean over its {spec.repeats} seeds" + ("" if rank.complete else " (not all of them finished)"))
    else:
        what = (f"Best trial of sweep {spec.name} ({result.path.rsplit('/', 1)[-1]}): {spec.metric} selection "
                f"score = {rank.score:.4f}")
    text = (
        f"# {what}\n"
        f"# (selection score: {spec.metric} averaged over the trailing select_window epochs, at its best; "
        f"smoothed, so not any one epoch's {spec.metric})\n"
        f"# Train it again with: medsweep train --config {BEST_CONFIG_FILE} --out runs/{spec.name}-best\n"
        + dump_yaml(trial_config(spec, configuration(result.config)))
    )
    return write_sweep_file(directory, BEST_CONFIG_FILE, text)
