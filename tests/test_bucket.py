"""A sweep in a bucket, the storage cluster.yaml's sweeps use (s3://), against moto's S3 server
on loopback (S3 itself cannot run here): Ray writes the sweep there through pyarrow as it would
to S3, Ctrl-C stops it, `medsweep resume` continues it from the bucket, `medsweep status` reads
it there, and the commands that read a local copy say how to make one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import boto3
import pytest

from sweep_helpers import retina_spec, wait_for

pytestmark = pytest.mark.slow

COMMAND = [sys.executable, "-m", "medsweep"]
BUCKET = "medsweep-test"


@pytest.fixture(scope="module")
def s3_env():
    """Credentials and the endpoint of a moto S3 server started here (stopped by its pid)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")

    def created() -> bool:
        try:
            client.create_bucket(Bucket=BUCKET)
        except Exception:  # not listening yet
            return False
        return True

    try:
        wait_for(created, 60, "moto's S3 server")
        yield env, client
    finally:
        server.kill()
        server.wait()


def keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_a_sweep_in_a_bucket_stops_resumes_and_is_read_there(s3_env, real_root, tmp_path):
    env, client = s3_env
    env = {**os.environ, **env, "MEDMNIST_ROOT": str(real_root), "PYTHONUNBUFFERED": "1"}
    spec = retina_spec(f"s3://{BUCKET}/sweeps", "bucket", num_samples=2, max_concurrent=1,
                       scheduler={"type": "fifo"}, train={"epochs": 3})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    uri = f"s3://{BUCKET}/sweeps/bucket"

    sweep = subprocess.Popen([*COMMAND, "sweep", str(spec_file)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(key.endswith("/result.json") for key in keys(client, "sweeps/bucket/")), 300,
             "a trial's first report in the bucket")
    sweep.send_signal(signal.SIGINT)
    stderr = sweep.communicate(timeout=120)[1]
    assert sweep.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].endswith(f"continue with: medsweep resume {uri}"), stderr[-3000:]

    def status() -> list[str]:
        done = subprocess.run([*COMMAND, "status", uri], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout.strip().splitlines()

    before = status()
    assert before[0].endswith(" trials; best val_acc (max) first") and "unfinished" in before[2], before
    assert before[-1].startswith("driver none: ") and before[-1].endswith(
        f" of 2 trials ended; continue with `medsweep resume {uri}`"), before

    resumed = subprocess.run([*COMMAND, "resume", uri], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"next   medsweep status {uri}\n       aws s3 sync {uri} bucket  (" in resumed.stdout
    assert "       medsweep collect bucket --out results.parquet\n" in resumed.stdout
    assert "sweeps/bucket/best_config.yaml" in keys(client, "sweeps/bucket/")
    after = status()
    rows = [line.split() for line in after[2:4]]
    assert [(row[1], row[2]) for row in rows] == [("finished", "3")] * 2, after
    assert after[-1] == "driver none", after

    collect = subprocess.run([*COMMAND, "collect", uri, "--out", str(tmp_path / "results.parquet")], env=env,
                             capture_output=True, text=True, timeout=120)
    assert collect.returncode == 2 and len(collect.stderr.strip().splitlines()) == 1, collect.stderr
    assert f"copy it down first (`aws s3 sync {uri} bucket`)" in collect.stderr
