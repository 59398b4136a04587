"""OpenMP's wait policy on a CPU that other processes share: chosen before torch loads OpenMP.

libgomp (torch's OpenMP runtime on Linux) reads ``OMP_WAIT_POLICY`` once, when torch is first
imported; unset, a thread that waits for work spins for 300,000 rounds before it sleeps. On a
core another process also wants, a spinning thread takes the time its teammates need, and every
parallel region then waits for a descheduled thread. Measured with ``benchmarks/bench_busy.py``
(benchmarks/RESULTS.md, "Training beside busy processes": medvit_28_tiny, 2 threads, 2 CPU
cores shared with other work at a load of 10 to 18): beside one busy process an epoch took
43.4 s with libgomp's default and 2.67 s passive, 15.8x and 0.97x the passive epoch alone
(2.75 s; libgomp's default alone 23.4 s, active 24.8 s). With one thread there is no team to
wait for and the policy changes nothing. The price: on an idle machine a 2-thread epoch takes
1.5x libgomp's default (each wait ends in a futex wake, not a spin); no spin count in between
beat passive under load and came near the default alone (benchmarks/RESULTS.md 8, "Idle").
"""

from __future__ import annotations

import os


def set_default_wait_policy() -> None:
    """Threads that wait sleep at once (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a
    policy or libgomp's spin count (``GOMP_SPINCOUNT``, which wins over the policy). Call it
    before the process first imports torch: later, it reaches only the processes this one
    starts (a local Ray cluster's workers)."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
