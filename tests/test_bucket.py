"""A sweep in a bucket, the storage cluster.yaml's sweeps use (s3://), against moto's S3 server
on loopback (S3 itself cannot run here): Ray writes the sweep there through pyarrow as it would
to S3, Ctrl-C stops it, `medsweep resume` continues it from the bucket, `medsweep status` reads
it there, and `collect`, `evaluate`, `gradcam`, `confirm` and `ensemble` read it there (the
checkpoints they load fetched), with the very results a local copy gives, and `train --config`
reads its best_config.yaml."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import boto3
import pandas as pd
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
    env = {**os.environ, **env, "MEDMNIST_ROOT": str(real_root), "PYTHONUNBUFFERED": "1",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
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
    assert f"       {uri}/best_config.yaml  (medsweep train --config ... --out runs/best)\n" in resumed.stdout
    assert f"next   medsweep status {uri}  |  medsweep collect {uri} --out results.parquet\n" in resumed.stdout
    assert f"       medsweep confirm {uri} --seeds 5 --out confirm.parquet" in resumed.stdout
    assert "sweeps/bucket/best_config.yaml" in keys(client, "sweeps/bucket/")
    after = status()
    rows = [line.split() for line in after[2:4]]
    assert [(row[1], row[2]) for row in rows] == [("finished", "3")] * 2, after
    assert after[-1] == "driver none", after

    def medsweep(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        done = subprocess.run([*COMMAND, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == code, done.stdout[-2000:] + done.stderr[-2000:]
        return done

    # collect and evaluate from the bucket: the rows a local copy gives, with the bucket's paths,
    # and the test split of the best trial's checkpoint, fetched from the bucket; a newer
    # checkpoint whose upload was cut off (its folder made, as Ray does first, its file not) is
    # passed over, as the copy (which has no such folder) does
    for key in keys(client, "sweeps/bucket/"):
        if key.endswith("/result.json"):
            client.put_object(Bucket=BUCKET, Key=key.replace("/result.json", "/checkpoint_000099/"), Body=b"")
    medsweep("collect", uri, "--out", str(tmp_path / "bucket.parquet"), "--evaluate-test")
    copy = tmp_path / "copy" / "bucket"
    for key in (key for key in keys(client, "sweeps/bucket/") if not key.endswith("/")):  # not folder markers
        (copy / key.removeprefix("sweeps/bucket/")).parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, key, str(copy / key.removeprefix("sweeps/bucket/")))
    medsweep("collect", str(copy), "--out", str(tmp_path / "copy.parquet"), "--evaluate-test")
    from_bucket, from_copy = (pd.read_parquet(tmp_path / f"{name}.parquet").sort_values("trial_id")
                              .reset_index(drop=True) for name in ("bucket", "copy"))
    assert set(from_bucket["sweep_dir"]) == {uri}
    assert [p.removeprefix(uri) for p in from_bucket["checkpoint_path"]] == [
        p.removeprefix(str(copy.resolve())) for p in from_copy["checkpoint_path"]]
    assert from_bucket["checkpoint_path"].str.match(rf"{uri}/[^/]+/checkpoint_\d+$").all()
    same = [c for c in from_copy.columns if c not in ("sweep_dir", "checkpoint_path", "collected_at")]
    pd.testing.assert_frame_equal(from_bucket[same], from_copy[same])
    assert from_bucket["test_acc"].notna().sum() == 1  # the best trial's, equal to the local copy's

    # the best trial's checkpoint, fetched once into the cache, where gradcam reads it
    best = from_bucket.loc[from_bucket["test_acc"].notna(), "checkpoint_path"].item()
    (cached,) = (tmp_path / "cache" / "medsweep" / "checkpoints").glob("*/checkpoint_*")
    assert cached.name == best.rsplit("/", 1)[1]
    assert (cached / "state.pt").read_bytes() == client.get_object(
        Bucket=BUCKET, Key=f"{best.removeprefix(f's3://{BUCKET}/')}/state.pt")["Body"].read()
    read_at = cached.parent.stat().st_mtime_ns
    medsweep("gradcam", "--checkpoint", best, "--images", "2", "--out", str(tmp_path / "cam.png"))
    assert (tmp_path / "cam.png").read_bytes().startswith(b"\x89PNG")
    assert [p.parent for p in (tmp_path / "cache").glob("*/*/*/checkpoint_*")] == [cached.parent]
    assert cached.parent.stat().st_mtime_ns > read_at
    confirmed = medsweep("confirm", uri, "--seeds", "1", "--epochs", "1", "--out", str(tmp_path / "confirm.parquet"))
    assert confirmed.stdout.startswith("confirm bucket (retinamnist): ")
    assert set(pd.read_parquet(tmp_path / "confirm.parquet")["sweep"]) == {"bucket"}

    # the ensemble of every trial's checkpoint, fetched one at a time: the local copy's
    ensembles = [medsweep("ensemble", sweep, "--rounds", "2", "--out", str(tmp_path / name)).stdout
                 for sweep, name in ((uri, "ensemble-bucket"), (str(copy), "ensemble-copy"))]
    assert ensembles[0].replace("ensemble-bucket", "ensemble-copy") == ensembles[1]
    assert "members (" in ensembles[0] and "of 2 trials, chosen on validation)" in ensembles[0]

    # the winner's config, read from the bucket: the configuration collect ranked first
    medsweep("train", "--config", f"{uri}/best_config.yaml", "--epochs", "1", "--out", str(tmp_path / "best"))
    trained = json.loads((tmp_path / "best" / "metrics.json").read_text())["config"]
    ranked = json.loads(from_bucket.loc[from_bucket["test_acc"].notna(), "config_json"].item())
    searched = ("model", "lr", "alpha", "augment")
    assert {k: trained[k] for k in searched} == {k: ranked[k] for k in searched}

    for args, says in ((["collect", f"s3://{BUCKET}/sweeps/none", "--out", str(tmp_path / "none.parquet")],
                        f"collect: sweep_dir: s3://{BUCKET}/sweeps/none: not a sweep folder: nothing of a sweep there"),
                       (["train", "--config", f"{uri}/none.yaml", "--out", str(tmp_path / "none")],
                        f"config: {uri}/none.yaml: no such file")):
        refused = medsweep(*args, code=2)
        assert refused.stderr.strip() == f"medsweep: error: {says}", refused.stderr
