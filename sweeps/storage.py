"""Before any trial starts: does every node of the cluster see the sweep's storage folder?

Every trial writes its results and checkpoints to the sweep folder from whichever node it runs
on. A local path that only the head has (the default `~/medsweep-results` on a multi-node
cluster) or a bucket a worker has no credentials for makes every trial on such a node fail,
one at a time, long after the sweep started. So the driver writes a marker file into the
folder, one tiny task pinned to each alive node looks for it, and the sweep stops at once with
one line naming the nodes that cannot see it. A one-node cluster is skipped: the driver's view
is the node's view. Nodes that an autoscaler adds later are not checked (Tune's own per-trial
check still catches them, trial by trial).
"""

from __future__ import annotations

import uuid

import pyarrow.fs
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sweeps.paths import SweepError

MARKER_PREFIX = ".medsweep-storage-check-"
# A node that cannot start a worker within this time is reported as not answering.
ANSWER_TIMEOUT_S = 120.0


@ray.remote(num_cpus=0, max_retries=0)
def _why_not_visible(marker: str) -> str:
    """Empty if this node sees the marker file, else the reason in a few words."""
    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(marker)
        found = filesystem.get_file_info(path).type == pyarrow.fs.FileType.File
    except (OSError, ValueError) as exc:  # e.g. no credentials for the bucket on this node
        return str(exc).strip().splitlines()[0]
    return "" if found else "marker file not found"


def _node_name(node: dict) -> str:
    return f"{node['NodeManagerAddress']} (node {node['NodeID'][:8]})"


def unseen_by(directory: str) -> dict[str, str]:
    """{node: reason} for every alive node that cannot read a marker written into `directory`
    (a local folder or a bucket URI); empty when all can, or when the cluster has one node."""
    nodes = [node for node in ray.nodes() if node["Alive"]]
    if len(nodes) < 2:
        return {}
    marker = f"{directory.rstrip('/')}/{MARKER_PREFIX}{uuid.uuid4().hex}"
    filesystem, path = pyarrow.fs.FileSystem.from_uri(marker)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(b"written by the medsweep driver; every node must see it\n")
    try:
        answers = {
            _node_name(node): _why_not_visible.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(marker)
            for node in nodes
        }
        ready, _ = ray.wait(list(answers.values()), num_returns=len(answers), timeout=ANSWER_TIMEOUT_S)
        unseen = {}
        for name, ref in answers.items():
            if ref not in ready:
                unseen[name] = f"no answer within {ANSWER_TIMEOUT_S:.0f} s"
                continue
            try:
                reason = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the node died while checking
                reason = str(exc).strip().splitlines()[0]
            if reason:
                unseen[name] = reason
        return unseen
    finally:
        filesystem.delete_file(path)


def check_storage_visible(directory: str) -> None:
    """Stop with one line when some node of the cluster cannot see the sweep folder."""
    unseen = unseen_by(directory)
    if not unseen:
        return
    nodes = "; ".join(f"{name}: {reason}" for name, reason in sorted(unseen.items()))
    raise SweepError(
        f"storage: {len(unseen)} node(s) cannot see {directory} ({nodes}); put the sweep where "
        "every node reads and writes the same files: --storage s3://BUCKET/PATH (workers need "
        "credentials for it) or a shared mount (NFS, EFS) at the same path on every node"
    )
