"""Benchmark: how long a sweep's driver takes to exit once its work is done, Ray's shutdown included.

The Ray a sweep starts on its machine has SIGTERM blocked (sweeps.launch.connect: a job
scheduler's SIGTERM to every process of the job must not take Ray down under the sweep). Ray's
own shutdown sends each of its processes a SIGTERM and waits 1 s for it to heed it before a
SIGKILL, so every `medsweep sweep` and `medsweep resume` ended seconds late, doing nothing.
`shutdown_ray_at_once` kills them without that wait. What is left is the interpreter's own end,
mostly the garbage collector's last walk over the objects torch and Ray loaded, which the
`medsweep` command skips (`medsweep.cli.run`: `gc.freeze()` before it exits). Each arm is a fresh
interpreter that starts Ray as its arm says, puts one object in it and exits: timed from its
"ready" line to its end.
The arms are interleaved round by round so that they see the same load; best of the rounds
(median in brackets), since other processes can only make a run slower.

    .venv/bin/python -m benchmarks.bench_ray_exit [--rounds 3]
"""

from __future__ import annotations

import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from benchmarks.bench_startup import best_and_median, interleaved, rounds_argument

REPO = Path(__file__).resolve().parents[1]
READY = "import ray\nray.get(ray.put(1))\nprint('ready', flush=True)\n"
AT_ONCE = "from sweeps import launch\nlaunch.connect(None)\n" + READY
ARMS = {
    "Ray without the SIGTERM block (ray.init, Ray's shutdown)":
        "import ray\nray.init(address='local', include_dashboard=False, log_to_driver=False)\n" + READY,
    "SIGTERM blocked, Ray's shutdown (before)":
        "import atexit\nfrom sweeps import launch\nlaunch.connect(None)\n"
        "atexit.unregister(launch.shutdown_ray_at_once)\n" + READY,
    "SIGTERM blocked, shutdown_ray_at_once": AT_ONCE,
    "the same, objects frozen before the end (medsweep)": AT_ONCE + "import gc\ngc.freeze()\n",
}
BEFORE = "SIGTERM blocked, Ray's shutdown (before)"


def exit_seconds(code: str) -> float:
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    if process.stdout.readline() != "ready\n":
        process.kill()
        raise SystemExit(f"bench_ray_exit: an arm did not start Ray: {code!r}")
    start = time.perf_counter()
    process.communicate()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    rounds = rounds_argument(__doc__.splitlines()[0], argv, default=3)
    samples = interleaved(ARMS, exit_seconds, rounds)
    before = min(samples[BEFORE])
    print(f"ray {version('ray')}, python {sys.version.split()[0]}, {rounds} round(s); from the driver's last line "
          "to its exit; best (median)")
    print("| driver | exit, s | x before |")
    print("|---|---|---|")
    for name, times in samples.items():
        print(f"| {name} | {best_and_median(times)} | {min(times) / before:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
