"""The storage check on a real multi-node Ray cluster on this machine.

All nodes here share one filesystem, so a node that cannot see the sweep folder is made for
real rather than faked in the check's code: it is a `ray start` node whose processes live in
their own mount namespace (`unshare --mount`), where an empty tmpfs covers the folder the
sweep writes to. That is what a worker on another machine sees of a local path that only
the head has: the folder is there or not, but the driver's files are not.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from sweeps.paths import SweepError
from sweeps.storage import MARKER_PREFIX, check_storage_visible, unseen_by

pytestmark = pytest.mark.slow  # starts Ray

# Ray's CLI run as a module: the `ray` script is not beside the interpreter where Ray was
# installed with `pip --target` (the GPU machine's carried wheels), and this test failed there.
RAY_CLI = "ray.scripts.scripts"


def can_unshare_mounts() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0


def wait_for_alive_nodes(count: int, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(node["Alive"] for node in ray.nodes()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} alive nodes after {timeout_s} s"
        time.sleep(0.5)


@pytest.fixture
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def blind_node(cluster, tmp_path):
    """A node that joins the cluster from a mount namespace where `tmp_path` is an empty tmpfs."""
    if not can_unshare_mounts():
        pytest.skip("needs root and `unshare --mount` to give one node its own view of the filesystem")
    log = open(tmp_path / "blind_node.log", "w")
    process = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs tmpfs "$0" && exec "$1" -m "$2" start --address="$3" --num-cpus=1 --block',
         str(tmp_path), sys.executable, RAY_CLI, cluster.address],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        known = {node["NodeID"] for node in ray.nodes()}
        wait_for_alive_nodes(len(known) + 1)
        yield next(node["NodeID"] for node in ray.nodes() if node["NodeID"] not in known)
    finally:
        # `ray start --block` stops its raylet and workers when it is terminated.
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def test_one_node_is_not_checked(cluster, tmp_path):
    assert unseen_by(str(tmp_path)) == {}
    assert list(tmp_path.iterdir()) == [], "no marker is written for a one-node cluster"


def test_every_node_sees_a_shared_folder(cluster, tmp_path):
    cluster.add_node(num_cpus=1)
    wait_for_alive_nodes(2)
    check_storage_visible(str(tmp_path / "sweep"))
    assert list((tmp_path / "sweep").iterdir()) == [], "the marker is removed afterwards"


def test_a_node_that_cannot_see_the_folder_stops_the_sweep_in_one_line(cluster, blind_node, tmp_path):
    sweep = tmp_path / "results" / "retina"
    with pytest.raises(SweepError) as caught:
        check_storage_visible(str(sweep))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"storage: 1 node(s) cannot see {sweep} (")
    assert f"node {blind_node[:8]}): marker file not found" in message
    assert "--storage s3://BUCKET/PATH" in message and "shared mount (NFS, EFS)" in message
    # The head (the driver's node) saw it; the marker is gone again.
    head = cluster.head_node.node_id[:8]
    assert f"node {head}" not in message
    assert not [p for p in sweep.iterdir() if p.name.startswith(MARKER_PREFIX)]


def test_medsweeps_own_reads_of_a_gcs_bucket_give_up_within_its_retry_limit():
    """pyarrow's GCS client retries for minutes: `medsweep resume gs://...` without credentials
    waited past 90 s, and `status` past 120 s; with the limit they end in one line within a
    minute. The limit is read back from the filesystem's pickled arguments."""
    import datetime

    import pyarrow.fs

    from sweeps.paths import GCS_RETRY_S, bucket_filesystem

    filesystem, path = bucket_filesystem("gs://a-bucket/sweeps/retina")
    assert isinstance(filesystem, pyarrow.fs.GcsFileSystem) and path == "a-bucket/sweeps/retina"
    assert filesystem.__reduce__()[1][0]["retry_time_limit"] == datetime.timedelta(seconds=GCS_RETRY_S)
    assert pyarrow.fs.FileSystem.from_uri("gs://a-bucket/x")[0].__reduce__()[1][0]["retry_time_limit"] is None
