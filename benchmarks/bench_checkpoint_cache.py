"""Reading a bucket's checkpoint (`evaluate`, `report`'s GradCAM, `gradcam`, `ensemble`), the
ways medsweep has done it, in the same run: fetched with one whole-object read (as before
2026-12-07), fetched in 16 MiB pieces each time (the checkpoint cache turned off), and through
the cache (the first read fetches it into the cache, the later ones read it there).

One checkpoint of the given model, as `Trainer.save` writes a sweep trial's (64 training images,
untrained), is put into an S3 bucket served by moto's S3 server on loopback (S3 itself cannot
run here); `analysis.evaluate.checkpoint_state` reads it as every command that loads a
checkpoint does. The table gives the bytes fetched and the seconds of a read, fastest of the
rounds, and the requests moto served. moto answers each ranged request in a time that grows
with the object, S3 in a round trip each: the first row's cost here is moto's, its count of
requests is what S3 would see.

    .venv/bin/python -m benchmarks.bench_checkpoint_cache [--model medvit_28_small] [--rounds 3] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

from analysis.evaluate import checkpoint_state
from benchmarks.moto_s3 import moto_bucket
from medvit.config import build_config
from medvit.data import load_dataset, resolve_root
from medvit.train import Trainer
from sweeps import folder
from sweeps.checkpoint_cache import CACHE_GB_ENV

BUCKET = "medsweep-bench"


def whole_read(filesystem, path: str, target: Path) -> None:
    """How medsweep fetched a store's file before 2026-12-07: one read() of the whole object."""
    with filesystem.open_input_stream(path) as stream:
        target.write_bytes(stream.read())


def made_checkpoint(model: str, data_root: str | None, directory: Path) -> None:
    """A checkpoint of ``model`` as Trainer.save writes a trial's (64 training images, untrained)."""
    data = load_dataset("retinamnist", root=str(resolve_root(data_root))).with_train_subset(64, seed=0)
    trainer = Trainer(build_config({"dataset": "retinamnist", "model": model, "epochs": 1, "device": "cpu"}), data)
    directory.mkdir(parents=True)
    trainer.save(directory)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="medvit_28_small")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: allowed values are integers >= 1")
    rows = []
    with tempfile.TemporaryDirectory(prefix="medsweep-bench-cache-") as work:
        log = Path(work, "moto.log")
        with log.open("w") as log_file, moto_bucket(BUCKET, log_file) as (port, client):
            os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
            checkpoint = Path(work, "checkpoint_000001")
            made_checkpoint(args.model, args.data_root, checkpoint)
            for path in checkpoint.iterdir():
                client.upload_file(str(path), BUCKET, f"s/t/{checkpoint.name}/{path.name}")
            size = sum(path.stat().st_size for path in checkpoint.iterdir())
            os.environ["XDG_CACHE_HOME"] = str(Path(work, "cache"))
            uri = f"s3://{BUCKET}/s/t/{checkpoint.name}"

            def fastest(rounds: int) -> tuple[float, int]:
                """The fastest of ``rounds`` reads, and the GET requests moto served a read."""
                gets = log.read_text().count("GET /")
                seconds = []
                for _ in range(rounds):
                    start = time.perf_counter()
                    checkpoint_state(uri)
                    seconds.append(time.perf_counter() - start)
                return min(seconds), (log.read_text().count("GET /") - gets) // rounds

            os.environ[CACHE_GB_ENV] = "0"
            with mock.patch.object(folder, "download", whole_read):
                rows.append(("fetched with one whole-object read (before)", size, *fastest(args.rounds)))
            rows.append(("fetched in 16 MiB pieces (cache off)", size, *fastest(args.rounds)))
            del os.environ[CACHE_GB_ENV]
            rows.append(("first read, into the cache", size, *fastest(1)))
            rows.append(("a later read, from the cache", 0, *fastest(args.rounds)))
    print(f"checkpoint_state of a {args.model} checkpoint ({size:,} bytes: state.pt and selection.npz) in "
          f"moto's S3 server on loopback, fastest of {args.rounds} reads\n")
    print("| read | bytes fetched | GET requests | s | vs one whole-object read |\n|---|---:|---:|---:|---:|")
    for name, fetched, seconds, gets in rows:
        print(f"| {name} | {fetched:,} | {gets} | {seconds:.3f} | {rows[0][2] / seconds:.1f}x |")


if __name__ == "__main__":
    main()
