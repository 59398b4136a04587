"""What `medsweep status`, `collect`, `confirm` and `ensemble` read of a sweep in a bucket first
(`sweeps.folder.readable_copy`: its state, spec, each trial's config, reports and error), its
small files fetched one after another (as before 2026-12-07) against FETCH_THREADS at a time,
in the same run, with and without a round trip added to every request.

A sweep folder of ``--trials`` trials as Ray writes one (experiment state, spec, and per trial
params.json, a result.json of 50 epochs' reports and a checkpoint, which is listed, not
fetched) is put into an S3 bucket served by moto's S3 server on loopback (S3 itself cannot run
here). A TCP proxy in front of it holds each piece a client sends for ``--rtt-ms`` before
passing it on: one request, one round trip, as a bucket in another region or the internet
away. moto answers one request at a time, so its own time per request is the floor.

    .venv/bin/python -m benchmarks.bench_bucket_status [--trials 64] [--rtt-ms 0,20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import threading
import time
from unittest import mock

from benchmarks.moto_s3 import moto_bucket
from sweeps import folder

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


def put_sweep(client, prefix: str, trials: int) -> int:
    """A sweep folder of ``trials`` trials in the bucket; the number of files status reads."""
    report = json.dumps({"epoch": 1, "val_acc": 0.5, "val_auc": 0.7, "train_loss": 1.2, "time_this_iter_s": 3.1,
                         **{f"test_{name}": 0.5 for name in ("acc", "auc", "qwk", "mae")}}) + "\n"
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/experiment_state-2026-12-07_00-00-00.json", Body=b"{}")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/medsweep_spec.yaml", Body=b"name: bench\n")
    for trial in range(trials):
        folder_key = f"{prefix}/train_medvit_{trial:05d}"
        client.put_object(Bucket=BUCKET, Key=f"{folder_key}/params.json", Body=b'{"alpha": 0.1}')
        client.put_object(Bucket=BUCKET, Key=f"{folder_key}/result.json", Body=(report * 50).encode())
        client.put_object(Bucket=BUCKET, Key=f"{folder_key}/checkpoint_000001/state.pt", Body=b"listed, not read")
    return 2 + 2 * trials


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--rtt-ms", default="0,20", help="comma-separated round trips to add, in ms")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        rtts = [float(x) for x in args.rtt_ms.split(",")]
    except ValueError:
        rtts = [-1.0]
    if not all(math.isfinite(rtt) and rtt >= 0 for rtt in rtts) or min(args.trials, args.rounds) < 1:
        parser.error("--rtt-ms: comma-separated numbers >= 0; --trials and --rounds: integers >= 1")
    rows = []
    with moto_bucket(BUCKET) as (port, client):
        files = put_sweep(client, "sweeps/bench", args.trials)
        for rtt in rtts:
            os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{delaying_proxy(port, rtt / 1000)}"
            seconds = {}
            for threads in (1, folder.FETCH_THREADS):
                with mock.patch.object(folder, "FETCH_THREADS", threads):
                    timings = []
                    for _ in range(args.rounds):
                        start = time.perf_counter()
                        with folder.readable_copy(f"s3://{BUCKET}/sweeps/bench"):
                            timings.append(time.perf_counter() - start)
                    seconds[threads] = min(timings)
            rows.append((rtt, seconds[1], seconds[folder.FETCH_THREADS]))
    print(f"readable_copy of a sweep of {args.trials} trials in moto's S3 server ({files} small files fetched, "
          f"every file listed), fastest of {args.rounds}\n")
    print(f"| round trip added | one file at a time (before), s | {folder.FETCH_THREADS} at a time, s | ratio |")
    print("|---:|---:|---:|---:|")
    for rtt, one, many in rows:
        print(f"| {rtt:g} ms | {one:.3f} | {many:.3f} | {one / many:.2f}x |")


if __name__ == "__main__":
    main()
