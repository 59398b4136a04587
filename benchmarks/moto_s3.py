"""An S3 bucket on loopback for the benchmarks that read one: moto's S3 server (S3 itself cannot
run here), started for a block and stopped by its pid after it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator


@contextlib.contextmanager
def moto_bucket(bucket: str, log=subprocess.DEVNULL) -> Iterator[tuple[int, object]]:
    """(the server's port, a boto3 client) with ``bucket`` made; the credentials and region in
    os.environ, for pyarrow; the server's request log to ``log``."""
    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
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
    finally:
        server.kill()
        server.wait()
