"""What `medsweep status`, `collect`, `confirm` and `ensemble` read of a sweep in a bucket first
(`sweeps.folder.readable_copy`: its state, spec, each trial's config, reports and error), in
the same run, with and without a round trip added to every request: its small files fetched one
after another (as before 2026-12-07) and FETCH_THREADS at a time with none kept on this machine
(a first read), then later reads, which copy the files kept (sweeps.sweep_files_cache) and fetch
what the bucket lists otherwise: nothing of a finished sweep, the reports of ``--running`` trials
written again before each read of a running one.

A sweep folder of ``--trials`` trials as Ray writes one (experiment state, spec, and per trial
params.json, a result.json of 50 epochs' reports and a checkpoint, which is listed, not
fetched) is put into an S3 bucket served by moto's S3 server on loopback (S3 itself cannot run
here). A TCP proxy in front of it holds each piece a client sends for ``--rtt-ms`` before
passing it on: one request, one round trip, as a bucket in another region or the internet
away. moto answers one request at a time, so its own time per request is the floor.

    .venv/bin/python -m benchmarks.bench_bucket_status [--trials 64] [--running 8] [--rtt-ms 0,20]
                                                       [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import shutil
import tempfile
import threading
import time
from unittest import mock

from benchmarks.moto_s3 import moto_bucket
from sweeps import folder, sweep_files_cache

BUCKET = "medsweep-bench"


def delaying_proxy(target_port: int, delay_s: float) -> int:
    """Start a proxy to ``target_port`` on loopback that holds what the client sends for
    ``delay_s``; its port (it runs in a daemon thread until the process ends)."""
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        try:
            while data := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(client_reader, server_writer, delay_s), pipe(server_reader, client_writer, 0),
                             return_exceptions=True)

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return server.sockets[0].getsockname()[1]


REPORT = json.dumps({"epoch": 1, "val_acc": 0.5, "val_auc": 0.7, "train_loss": 1.2, "time_this_iter_s": 3.1,
                     **{f"test_{name}": 0.5 for name in ("acc", "auc", "qwk", "mae")}}) + "\n"


def trial_folder(trial: int) -> str:
    return f"train_medvit_{trial:05d}"


def put_sweep(client, prefix: str, trials: int) -> int:
    """A sweep folder of ``trials`` trials in the bucket; the number of files status reads."""
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/experiment_state-2026-12-07_00-00-00.json", Body=b"{}")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/medsweep_spec.yaml", Body=b"name: bench\n")
    for trial in range(trials):
        folder_key = f"{prefix}/{trial_folder(trial)}"
        client.put_object(Bucket=BUCKET, Key=f"{folder_key}/params.json", Body=b'{"alpha": 0.1}')
        client.put_object(Bucket=BUCKET, Key=f"{folder_key}/result.json", Body=(REPORT * 50).encode())
        client.put_object(Bucket=BUCKET, Key=f"{folder_key}/checkpoint_000001/state.pt", Body=b"listed, not read")
    return 2 + 2 * trials


def timed_read(location: str, rounds: int, before=lambda: None) -> float:
    """The fastest of ``rounds`` readable_copy calls of ``location``, each after ``before()``."""
    timings = []
    for _ in range(rounds):
        before()
        start = time.perf_counter()
        with folder.readable_copy(location):
            timings.append(time.perf_counter() - start)
    return min(timings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--running", type=int, default=8, help="trials whose reports change between later reads")
    parser.add_argument("--rtt-ms", default="0,20", help="comma-separated round trips to add, in ms")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        rtts = [float(x) for x in args.rtt_ms.split(",")]
    except ValueError:
        rtts = [-1.0]
    if not all(math.isfinite(rtt) and rtt >= 0 for rtt in rtts) or min(args.trials, args.rounds) < 1 \
            or not 0 <= args.running <= args.trials:
        parser.error("--rtt-ms: comma-separated numbers >= 0; --trials and --rounds: integers >= 1; "
                     "--running: an integer from 0 to --trials")
    location = f"s3://{BUCKET}/sweeps/bench"
    rows = []
    with moto_bucket(BUCKET) as (port, client), tempfile.TemporaryDirectory() as cache, \
            mock.patch.dict(os.environ, {"XDG_CACHE_HOME": cache}), \
            mock.patch.object(sweep_files_cache, "SETTLED_S", 0):  # the bench's files are seconds old
        files = put_sweep(client, "sweeps/bench", args.trials)
        kept = sweep_files_cache.sweep_files_folder(location)
        epochs = itertools.count(51)

        def nothing_kept():
            shutil.rmtree(kept, ignore_errors=True)

        def running_trials_report():
            for trial, epoch in zip(range(args.running), epochs):
                client.put_object(Bucket=BUCKET, Key=f"sweeps/bench/{trial_folder(trial)}/result.json",
                                  Body=(REPORT * epoch).encode())

        for rtt in rtts:
            os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{delaying_proxy(port, rtt / 1000)}"
            with mock.patch.object(folder, "FETCH_THREADS", 1):
                one_at_a_time = timed_read(location, args.rounds, nothing_kept)
            first = timed_read(location, args.rounds, nothing_kept)
            finished = timed_read(location, args.rounds)
            running = timed_read(location, args.rounds, running_trials_report)
            rows.append((rtt, one_at_a_time, first, finished, running))
    print(f"readable_copy of a sweep of {args.trials} trials in moto's S3 server ({files} small files, every file "
          f"listed), fastest of {args.rounds}; later reads copy the files kept on this machine and fetch the "
          f"{args.running} running trials' reports, written again before each\n")
    print(f"| round trip added | one file at a time, none kept (before), s | {folder.FETCH_THREADS} at a time, none "
          f"kept (a first read), s | a later read, all finished, s | a later read, {args.running} running, s | "
          "first / later read (all finished) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for rtt, one, first, finished, running in rows:
        print(f"| {rtt:g} ms | {one:.3f} | {first:.3f} | {finished:.3f} | {running:.3f} | {first / finished:.1f}x |")


if __name__ == "__main__":
    main()
