"""A real multi-node Ray cluster on this machine: a head without CPUs and three worker nodes.
Trials must land on both workers, and a trial whose node is killed mid-run must resume from
its last checkpoint on another node instead of starting again."""

import threading
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from sweeps.cli import main
from sweeps.launch import run_sweep, sweep_dir
from sweep_helpers import epochs_run, results, retina_spec, trial_dirs

pytestmark = pytest.mark.slow  # every test here starts Ray

EPOCHS = 6
KILL_AFTER_EPOCH = 2


@pytest.fixture
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    # Three one-CPU workers for two concurrent trials: one can be killed without losing capacity.
    workers = [cluster.add_node(num_cpus=1) for _ in range(3)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def test_no_cluster_at_the_address_is_one_line(tmp_path, capsys, monkeypatch):
    # No RAY_ADDRESS and an empty Ray temp folder: 'auto' finds no cluster address file.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert not ray.is_initialized()
    code = main(["sweep", "retinamnist", "--smoke", "--storage", str(tmp_path), "--address", "auto"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "address: no Ray cluster at 'auto'" in err


def kill_a_busy_node(cluster, workers, directory, killed: dict, stop: threading.Event) -> None:
    """Once a trial has checkpointed KILL_AFTER_EPOCH epochs, kill the node it runs on."""
    while not stop.is_set():
        for trial in trial_dirs(directory) if directory.exists() else []:
            reported = results(trial)
            if reported and KILL_AFTER_EPOCH <= reported[-1]["epoch"] < EPOCHS - 1:
                node = next(w for w in workers if w.node_id == reported[-1]["node_id"])
                cluster.remove_node(node, allow_graceful=False)
                killed.update(trial=trial.name, node=node.node_id, epoch=reported[-1]["epoch"])
                return
        time.sleep(0.2)


def test_trials_spread_over_nodes_and_a_killed_trial_resumes(cluster, real_root, tmp_path):
    cluster, workers = cluster
    spec = retina_spec(
        tmp_path, "retina-cluster", num_samples=3, max_concurrent=2,
        searcher={"type": "random", "seed": 1}, scheduler={"type": "fifo"},
        train={"epochs": EPOCHS, "subset": 96},
    )
    directory = tmp_path / spec.name
    assert str(directory) == sweep_dir(spec)
    killed, stop = {}, threading.Event()
    killer = threading.Thread(target=kill_a_busy_node, args=(cluster, workers, directory, killed, stop))
    killer.start()
    try:
        grid = run_sweep(spec, data_root=str(real_root), address=cluster.address)
    finally:
        stop.set()
        killer.join()

    assert killed, "no trial was running long enough to be killed"
    assert grid.num_errors == 0
    trials = trial_dirs(directory)
    assert len(trials) == 3
    nodes = {r["node_id"] for t in trials for r in results(t)}
    assert len(nodes) >= 2, "all trials ran on one node"

    victim = directory / killed["trial"]
    epochs = epochs_run(victim)
    assert epochs[-1] == EPOCHS
    # Resumed at the next epoch after its checkpoint: no epoch trained twice, none skipped.
    assert sorted(set(epochs)) == list(range(1, EPOCHS + 1))
    resumed = [r for r in results(victim) if r["resumed_from_epoch"] > 0]
    assert resumed, "the killed trial started again from scratch"
    assert resumed[0]["epoch"] == resumed[0]["resumed_from_epoch"] + 1
    assert resumed[0]["resumed_from_epoch"] >= killed["epoch"]
    assert resumed[0]["node_id"] != killed["node"]
