"""The memory a job scheduler gives this process, for `ray start` to be told.

Ray sizes a node from the machine's memory, or from the one cgroup file at a fixed path
(`/sys/fs/cgroup/memory/memory.limit_in_bytes`, `/sys/fs/cgroup/memory.max`), which without a
cgroup namespace is the machine's root cgroup. SLURM (`ConstrainRAMSpace`) limits a job in a
cgroup further down: under a 1 GiB job on a 24 GiB machine Ray 2.60 counted 17.3 GB of task
memory and a 7.4 GB object store, so it would place trials asking `memory_gib` in memory the job
does not have, where the kernel kills a process past the limit (one of 1.5 GiB in that job was).
`python -m sweeps.cgroup_memory` prints `ray start`'s options for the smallest limit of this
process's cgroups and their parents (cgroup v1 and v2), or nothing where none is below the
machine's memory.
"""

from __future__ import annotations

import os
from pathlib import Path

# Ray's own split of a node's memory (ray_constants.DEFAULT_OBJECT_STORE_MEMORY_PROPORTION):
# this share for the object store, the rest for tasks' `memory`.
OBJECT_STORE_SHARE = 0.3


def memory_limit(cgroups: str, root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The smallest memory limit, in bytes, of the cgroups named in ``cgroups`` (the text of
    /proc/self/cgroup) and of their parents, under ``root``; None where none is below the
    machine's memory (v1's "unlimited" is a number near 2**63, v2's is "max")."""
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limits = []
    for line in cgroups.splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder, name = root / "memory", "memory.limit_in_bytes"
        elif controllers == "":
            folder, name = root, "memory.max"
        else:
            continue
        for group in (Path(path), *Path(path).parents):
            try:
                text = (folder / group.relative_to("/") / name).read_text().strip()
            except OSError:  # not this hierarchy's mount (v2's file on a v1 machine), or gone
                continue
            if text.isdigit():
                limits.append(int(text))
    below = [limit for limit in limits if limit < machine]
    return min(below) if below else None


def ray_start_options(limit: int | None) -> list[str]:
    """`ray start`'s memory options for a node of ``limit`` bytes (none without a limit)."""
    if limit is None:
        return []
    store = int(limit * OBJECT_STORE_SHARE)
    return [f"--memory={limit - store}", f"--object-store-memory={store}"]


if __name__ == "__main__":
    print(" ".join(ray_start_options(memory_limit(Path("/proc/self/cgroup").read_text()))))
