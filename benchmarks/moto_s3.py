"""An S3 bucket on loopback for the benchmarks and tests that read one: moto's S3 server (S3
itself cannot run here), started for a block and stopped by its pid after it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def moto_server(log=subprocess.DEVNULL) -> Iterator[int]:
    """moto's S3 server on a free port (yielded) for the block, its request log to ``log``."""
    port = free_port()
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield port
    finally:
        server.kill()
        server.wait()


@contextlib.contextmanager
def moto_bucket(bucket: str, log=subprocess.DEVNULL) -> Iterator[tuple[int, object]]:
    """(the server's port, a boto3 client) with ``bucket`` made; the credentials and region in
    os.environ, for pyarrow; the server's request log to ``log``."""
    import boto3

    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    with moto_server(log) as port:
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        for _ in range(600):
            try:
                client.create_bucket(Bucket=bucket)
                break
            except Exception:  # not listening yet
                time.sleep(0.1)
        else:
            raise SystemExit(f"moto's S3 server did not start on port {port} within 60 s")
        yield port, client
