"""Where Ray Tune's per-trial time goes: Tune's own bookkeeping, worker start, the dataset
fetch from the object store, trial set-up and the checkpoint written every epoch.

Five measurements, one run, on a local Ray with 2 CPUs:

1. Tune's cost per trial: a trainable that does nothing but report ``--epochs`` times (with a
   checkpoint the size of a medvit_28_tiny trial's each time, or none), run with the launcher's
   settings (reuse_actors, one checkpoint kept) for 2 and for ``--trials`` trials, 2 at a time.
   The difference, per trial and slot, is what Tune adds to every trial.
2. Worker start: a task in a fresh worker process that imports what a trial imports.
3. Object-store fetch: ``ray.get`` of the dataset inside a task, as ``tune.with_parameters``
   does for every trial: seconds and the worker's resident memory growth, for the
   ``MedMNISTData`` the launcher puts there (torch tensors) and for the same arrays as numpy.
4. Trial set-up: ``build_config`` + ``Trainer(config, data)`` in this process.
5. Checkpoint per epoch: ``Trainer.save`` into a temporary folder and the copy into storage
   that Tune makes, against one training epoch of the same trainer.

    .venv/bin/python -m benchmarks.bench_ray_overhead [--trials 10] [--epochs 5]
        [--models medvit_28_tiny,medvit_28_small] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import ray
import torch
from ray import tune

from medvit.config import build_config
from medvit.data import MedMNISTData, load_dataset, resolve_root
from medvit.synthetic import write_synthetic
from medvit.train import Trainer

def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# -- 1. Tune's own cost per trial --------------------------------------------------------------

def reporting_trainable(config: dict) -> None:
    """A trial that trains nothing: it reports, with a checkpoint of ``ckpt_bytes`` if asked."""
    for epoch in range(config["epochs"]):
        metrics = {"val_acc": epoch / config["epochs"]}
        if config["ckpt_bytes"]:
            with tempfile.TemporaryDirectory() as directory:
                (Path(directory) / "state.pt").write_bytes(os.urandom(config["ckpt_bytes"]))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)


def tune_wall(storage: str, trials: int, epochs: int, ckpt_bytes: int) -> float:
    tuner = tune.Tuner(
        tune.with_resources(reporting_trainable, {"cpu": 1}),
        param_space={"epochs": epochs, "ckpt_bytes": ckpt_bytes, "i": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", reuse_actors=True, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=storage, name=f"t{trials}-c{ckpt_bytes}-{time.time_ns()}",
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1), verbose=0),
    )
    start = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - start


# -- 2, 3. worker start and object-store fetch --------------------------------------------------

@ray.remote(num_cpus=1, max_calls=1)  # max_calls=1: every call gets a fresh worker process
def cold_worker(submitted: float) -> dict:
    entered = time.time()
    import medvit.train  # noqa: F401  (what a trial imports)

    return {"start_s": entered - submitted, "import_s": time.time() - entered}


@ray.remote(num_cpus=1, max_calls=1)
def fetch(refs: list) -> dict:
    import medvit.train  # noqa: F401  (a trial has imported torch & co. before its data arrives)

    before = rss_mib()
    start = time.perf_counter()
    data = ray.get(refs[0])
    seconds = time.perf_counter() - start
    grown = rss_mib() - before
    del data
    return {"fetch_s": seconds, "rss_growth_mib": grown}


def as_numpy(data: MedMNISTData) -> dict:
    return {split: (data.images[split].numpy(), data.labels[split].numpy()) for split in data.images}


# -- 4, 5. trial set-up and checkpoints -----------------------------------------------------------

def checkpoint_costs(model: str, data: MedMNISTData, storage: Path) -> dict:
    start = time.perf_counter()
    trainer = Trainer(build_config({"dataset": data.info.flag, "model": model, "epochs": 2, "device": "cpu"}), data)
    setup_s = time.perf_counter() - start
    epoch = next(trainer.epochs())
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        path = trainer.save(directory)
        save_s = time.perf_counter() - start
        start = time.perf_counter()
        shutil.copytree(directory, storage / f"{model}-checkpoint", dirs_exist_ok=True)
        copy_s = time.perf_counter() - start
        size = path.stat().st_size
    return {"setup_s": setup_s, "epoch_s": epoch["epoch_time_s"], "save_s": save_s, "copy_s": copy_s,
            "ckpt_bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", default="medvit_28_tiny,medvit_28_small")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a trial of 1 CPU

    retina = load_dataset("retinamnist", root=str(resolve_root(args.data_root)))
    storage = Path(tempfile.mkdtemp(prefix="bench-ray-overhead-"))
    costs = {model: checkpoint_costs(model, retina, storage) for model in args.models.split(",")}
    tiny_bytes = costs[args.models.split(",")[0]]["ckpt_bytes"]

    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    tune_wall(str(storage), 2, 1, 0)  # warm-up: the first Tuner also starts Ray's worker pool
    tune_rows = []
    for label, size in (("no checkpoint", 0), (f"checkpoint of {tiny_bytes / 2**20:.1f} MiB per report", tiny_bytes)):
        small = tune_wall(str(storage), 2, args.epochs, size)
        large = tune_wall(str(storage), args.trials, args.epochs, size)
        per_trial = (large - small) / ((args.trials - 2) / 2)  # seconds of one slot per extra trial
        tune_rows.append((label, small, large, per_trial))

    cold = [ray.get(cold_worker.remote(time.time())) for _ in range(3)]
    write_synthetic("pathmnist", storage / "pathmnist", n_per_split=(89_996, 10_004, 7_180))
    path = load_dataset("pathmnist", root=str(storage / "pathmnist"))
    fetches = []
    for name, data in (("retinamnist", retina), ("pathmnist-sized", path)):
        for form, obj in (("MedMNISTData (torch)", data), ("numpy arrays", as_numpy(data))):
            ref = ray.put(obj)
            fetches.append((name, form, ray.get(fetch.remote([ref]))))
            del ref
    ray.shutdown()
    shutil.rmtree(storage, ignore_errors=True)

    print(f"Ray {ray.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; ray.init {init_s:.1f} s (once per sweep)\n")
    print(f"### 1. Tune's cost per trial ({args.epochs} reports each, 2 concurrent, reuse_actors)\n")
    print(f"| trainable | wall, 2 trials s | wall, {args.trials} trials s | per extra trial, one slot s |")
    print("|---|---:|---:|---:|")
    for label, small, large, per_trial in tune_rows:
        print(f"| reports only, {label} | {small:.1f} | {large:.1f} | {per_trial:.2f} |")
    print("\n### 2. Worker start (fresh process) and the imports of a trial\n")
    print("| call | submit to entry s | import medvit.train s |")
    print("|---:|---:|---:|")
    for i, c in enumerate(cold, 1):
        print(f"| {i} | {c['start_s']:.2f} | {c['import_s']:.2f} |")
    print("\n### 3. Dataset fetch from the object store, inside a trial's worker\n")
    print("| dataset | form in the object store | fetch s | worker RSS growth MiB |")
    print("|---|---|---:|---:|")
    for name, form, f in fetches:
        print(f"| {name} | {form} | {f['fetch_s']:.3f} | {f['rss_growth_mib']:,.0f} |")
    print("\n### 4, 5. Trial set-up and the checkpoint of every epoch (RetinaMNIST, 1 thread)\n")
    print("| model | set-up s | one epoch s | Trainer.save s | copy to storage s | checkpoint MiB | save + copy, % of epoch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model, c in costs.items():
        share = 100 * (c["save_s"] + c["copy_s"]) / c["epoch_s"]
        print(f"| {model} | {c['setup_s']:.2f} | {c['epoch_s']:.2f} | {c['save_s']:.3f} | {c['copy_s']:.3f} | "
              f"{c['ckpt_bytes'] / 2**20:.1f} | {share:.1f}% |")


if __name__ == "__main__":
    main()
