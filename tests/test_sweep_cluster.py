"""A real multi-node Ray cluster on this machine: a head without CPUs and four worker nodes.
Trials must land on several workers, and a trial whose node is killed mid-run (twice in one
sweep) must resume from its last checkpoint on another node instead of starting again."""

import threading
import time

import pytest
import ray
from ray._private.services import find_gcs_addresses
from ray.cluster_utils import Cluster

from medsweep.cli import main
from sweeps.launch import check_placeable, run_sweep, sweep_dir
from sweep_helpers import epochs_run, results, retina_spec, trial_dirs

EPOCHS = 8
KILL_AFTER_EPOCH = 2
KILLS = 2


@pytest.fixture
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    # Four one-CPU workers for two concurrent trials: two can be killed without losing capacity.
    workers = [cluster.add_node(num_cpus=1) for _ in range(4)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


# Not slow: it starts no Ray, and runs with the quick tests, where no other test's Ray can be
# running for 'auto' to find (under `make test`'s parallel slow half it would skip).
def test_no_cluster_at_the_address_is_one_line(tmp_path, capsys, monkeypatch, real_root):
    # No RAY_ADDRESS and an empty Ray temp folder: 'auto' finds no cluster address file. Ray's
    # 'auto' also joins any Ray it finds running on the machine (its legacy fallback): a test
    # must never run a sweep on another user's or another test's Ray, so it stops there.
    if find_gcs_addresses():
        pytest.skip("another Ray runs on this machine: --address auto would join it")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert not ray.is_initialized()
    # the data is read before the cluster is joined: given explicitly, so no $MEDMNIST_ROOT is needed
    code = main(["sweep", "retinamnist", "--smoke", "--storage", str(tmp_path), "--address", "auto",
                 "--data-root", str(real_root)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "address: no Ray cluster at 'auto'" in err


def kill_busy_nodes(cluster, workers, directory, killed: list, stop: threading.Event) -> None:
    """KILLS times: once a trial on a live node has checkpointed KILL_AFTER_EPOCH epochs (and
    is not about to finish), kill the node it runs on."""
    alive = {w.node_id: w for w in workers}
    while not stop.is_set() and len(killed) < KILLS:
        for trial in trial_dirs(directory) if directory.exists() else []:
            reported = results(trial)
            if reported and reported[-1]["node_id"] in alive and KILL_AFTER_EPOCH <= reported[-1]["epoch"] < EPOCHS - 2:
                node = alive.pop(reported[-1]["node_id"])
                cluster.remove_node(node, allow_graceful=False)
                killed.append(dict(trial=trial.name, node=node.node_id, epoch=reported[-1]["epoch"]))
                break
        time.sleep(0.2)


@pytest.mark.slow  # starts Ray
def test_trials_spread_over_nodes_and_killed_trials_resume(cluster, real_root, tmp_path):
    cluster, workers = cluster
    spec = retina_spec(
        tmp_path, "retina-cluster", num_samples=3, max_concurrent=2,
        searcher={"type": "random", "seed": 1}, scheduler={"type": "fifo"},
        search={"lr": {"loguniform": [1.0e-4, 3.0e-3]}, "augment": {"choice": ["off", "shift"]}},
        train={"epochs": EPOCHS, "subset": 96},
    )
    directory = tmp_path / spec.name
    assert str(directory) == sweep_dir(spec)
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=kill_busy_nodes, args=(cluster, workers, directory, killed, stop))
    killer.start()
    try:
        grid = run_sweep(spec, data_root=str(real_root), address=cluster.address)
    finally:
        stop.set()
        killer.join()

    assert len(killed) == KILLS, f"only {len(killed)} of {KILLS} nodes were killed mid-trial"
    assert grid.num_errors == 0
    trials = trial_dirs(directory)
    assert len(trials) == 3
    nodes = {r["node_id"] for t in trials for r in results(t)}
    assert len(nodes) >= 2, "all trials ran on one node"

    for kill in killed:
        victim = directory / kill["trial"]
        epochs = epochs_run(victim)
        assert epochs[-1] == EPOCHS
        # Resumed at the next epoch after its checkpoint: no epoch trained twice, none skipped.
        assert sorted(set(epochs)) == list(range(1, EPOCHS + 1))
        resumed = [r for r in results(victim) if r["resumed_from_epoch"] >= kill["epoch"]]
        assert resumed, "the killed trial started again from scratch"
        assert resumed[0]["epoch"] == resumed[0]["resumed_from_epoch"] + 1
        assert resumed[0]["node_id"] != kill["node"]


@pytest.mark.slow  # starts Ray
def test_a_trial_no_node_of_a_joined_cluster_holds_waits_only_where_an_autoscaler_may_add_one(tmp_path, capsys,
                                                                                                real_root):
    # A SLURM job's cluster (--no-autoscaler, as cluster-slurm.sbatch runs the sweep) is refused
    # at once; without it the trials would wait in Ray's queue until the job's time limit.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        spec = retina_spec(tmp_path, "too-big", resources={"cpu": 2, "gpu": 0})
        spec_file = tmp_path / "spec.yaml"
        spec_file.write_text(spec.to_yaml())
        code = main(["sweep", str(spec_file), "--address", cluster.address, "--no-autoscaler",
                     "--data-root", str(real_root)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err, err
        assert "resources: one trial asks for cpu 2, gpu 0, but no node of this Ray cluster has that (the most on " \
               "any node: cpu 1, gpu 0); allowed: at most one node's resources, as --no-autoscaler says" in err
        assert not (tmp_path / "too-big").exists()
        if not ray.is_initialized():
            ray.init(address=cluster.address, log_to_driver=False)
        with pytest.warns(UserWarning, match="going on, since an autoscaler may add such a node"):
            check_placeable(spec, cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()
