"""A sweep in a bucket, the storage cluster.yaml's sweeps use, against servers on loopback
(S3 and GCS themselves cannot run here): moto's S3 server for s3://, gcp-storage-emulator for
gs://. Ray writes the sweep there through pyarrow as it would to the cloud, Ctrl-C stops it,
`medsweep resume` continues it from the bucket, `medsweep status` reads it there, and `collect`,
`evaluate`, `gradcam`, `confirm` and `ensemble` read it there (the checkpoints they load
fetched), with the very results a local copy gives, and `train --config` reads its
best_config.yaml. The test reads the bucket through its own pyarrow filesystem, not medsweep's."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import pandas as pd
import pyarrow.fs
import pytest

from benchmarks.moto_s3 import free_port, moto_server
from sweep_helpers import retina_spec, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.bucket_server]

COMMAND = [sys.executable, "-m", "medsweep"]
BUCKET = "medsweep-test"


class Bucket:
    """BUCKET seen through a pyarrow filesystem of the test's own: keys are paths in the bucket."""

    def __init__(self, filesystem: pyarrow.fs.FileSystem):
        self.filesystem = filesystem

    def keys(self, prefix: str) -> list[str]:
        """Every object under ``prefix`` (a folder), folder markers left out."""
        infos = self.filesystem.get_file_info(pyarrow.fs.FileSelector(f"{BUCKET}/{prefix}", recursive=True,
                                                                      allow_not_found=True))
        return [info.path.removeprefix(f"{BUCKET}/") for info in infos if info.type == pyarrow.fs.FileType.File]

    def make_folder(self, key: str) -> None:
        self.filesystem.create_dir(f"{BUCKET}/{key}")

    def read(self, key: str) -> bytes:
        with self.filesystem.open_input_stream(f"{BUCKET}/{key}") as stream:
            return stream.read()


@pytest.fixture(scope="module")
def s3_server():
    """The environment a node needs for moto's S3 server, started here (stopped by its pid)."""
    with moto_server() as port:
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
        bucket = Bucket(pyarrow.fs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                                                scheme="http", endpoint_override=f"127.0.0.1:{port}",
                                                allow_bucket_creation=True))

        def created() -> bool:
            try:
                bucket.filesystem.create_dir(BUCKET)
            except OSError:  # not listening yet
                return False
            return True

        wait_for(created, 60, "moto's S3 server")
        yield env, bucket


class TokenHandler(http.server.BaseHTTPRequestHandler):
    """OAuth's token endpoint, as Google's client asks it for a token with the refresh token of
    the fake credentials below: every request gets one."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({"access_token": "testing", "expires_in": 3600, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


# gcp-storage-emulator's server answers one request at a time. Run so, it was found blocked
# sending a resumed trial its checkpoint while the trial (in pyarrow's copy_files) waited on
# another request, and every request after it hung: it runs threaded here, as GCS answers.
GCS_EMULATOR = ("import http.server, sys; http.server.HTTPServer = http.server.ThreadingHTTPServer; "
                "from gcp_storage_emulator.__main__ import main; sys.argv[0] = 'gcp-storage-emulator'; main()")


@pytest.fixture(scope="module")
def gcs_server(tmp_path_factory):
    """The environment a node needs for gcp-storage-emulator, started here (stopped by its pid).
    Google's client (in pyarrow) sends GCS requests to CLOUD_STORAGE_EMULATOR_ENDPOINT but still
    asks for an OAuth token: the credentials file sends it to a token endpoint in this process."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", GCS_EMULATOR, "start", "--host", "127.0.0.1", "--port", str(port),
                               "--in-memory", "--quiet", "--default-bucket", BUCKET],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tokens = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
    threading.Thread(target=tokens.serve_forever, daemon=True).start()
    credentials = tmp_path_factory.mktemp("gcs") / "credentials.json"
    credentials.write_text(json.dumps({"type": "authorized_user", "client_id": "testing", "client_secret": "testing",
                                       "refresh_token": "testing",
                                       "token_uri": f"http://127.0.0.1:{tokens.server_port}/token"}))
    env = {"CLOUD_STORAGE_EMULATOR_ENDPOINT": f"http://127.0.0.1:{port}",
           "GOOGLE_APPLICATION_CREDENTIALS": str(credentials)}

    def listening() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/storage/v1/b/{BUCKET}", timeout=5).close()
        except OSError:
            return False
        return True

    try:
        wait_for(listening, 60, "gcp-storage-emulator")
        yield env, Bucket(pyarrow.fs.GcsFileSystem(anonymous=True, scheme="http",
                                                   endpoint_override=f"127.0.0.1:{port}"))
    finally:
        tokens.shutdown()
        server.kill()
        server.wait()


@pytest.fixture(params=["s3", "gs"])
def bucket_server(request):
    """(the URI scheme, the environment every node needs, the bucket)."""
    env, bucket = request.getfixturevalue(f"{'gcs' if request.param == 'gs' else 's3'}_server")
    return request.param, env, bucket


def test_a_sweep_in_a_bucket_stops_resumes_and_is_read_there(bucket_server, real_root, tmp_path):
    scheme, env, bucket = bucket_server
    env = {**os.environ, **env, "MEDMNIST_ROOT": str(real_root), "PYTHONUNBUFFERED": "1",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    spec = retina_spec(f"{scheme}://{BUCKET}/sweeps", "bucket", num_samples=2, max_concurrent=1,
                       scheduler={"type": "fifo"}, train={"epochs": 3})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    uri = f"{scheme}://{BUCKET}/sweeps/bucket"

    sweep = subprocess.Popen([*COMMAND, "sweep", str(spec_file)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(key.endswith("/result.json") for key in bucket.keys("sweeps/bucket")), 300,
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
    assert "sweeps/bucket/best_config.yaml" in bucket.keys("sweeps/bucket")
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
    for key in bucket.keys("sweeps/bucket"):
        if key.endswith("/result.json"):
            bucket.make_folder(key.replace("/result.json", "/checkpoint_000099"))
    medsweep("collect", uri, "--out", str(tmp_path / "bucket.parquet"), "--evaluate-test")
    copy = tmp_path / "copy" / "bucket"
    for key in bucket.keys("sweeps/bucket"):
        (copy / key.removeprefix("sweeps/bucket/")).parent.mkdir(parents=True, exist_ok=True)
        (copy / key.removeprefix("sweeps/bucket/")).write_bytes(bucket.read(key))
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
    assert (cached / "state.pt").read_bytes() == bucket.read(f"{best.removeprefix(f'{scheme}://{BUCKET}/')}/state.pt")
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

    for args, says in ((["collect", f"{scheme}://{BUCKET}/sweeps/none", "--out", str(tmp_path / "none.parquet")],
                        f"collect: sweep_dir: {scheme}://{BUCKET}/sweeps/none: not a sweep folder: nothing of a sweep "
                        "there"),
                       (["train", "--config", f"{uri}/none.yaml", "--out", str(tmp_path / "none")],
                        f"config: {uri}/none.yaml: no such file")):
        refused = medsweep(*args, code=2)
        assert refused.stderr.strip() == f"medsweep: error: {says}", refused.stderr
