"""run_arm.py's JSON-lines records, plain (``.jsonl``) or gzipped (``.jsonl.gz``: the shipped
ones, so that the tree stays small enough to travel to a GPU machine with Ray's wheels)."""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO


def open_text(path: str | Path, mode: str = "r") -> IO[str]:
    """A record file for reading (``r``) or appending (``a``); gzipped when its name ends .gz
    (appending adds a gzip member, which readers take as the same stream)."""
    return gzip.open(path, f"{mode}t") if str(path).endswith(".gz") else open(path, mode)


def read_records(paths: Iterable[str | Path]) -> Iterator[dict]:
    for path in paths:
        with open_text(path) as f:
            yield from (json.loads(line) for line in f if line.strip())


def record_paths(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser``'s arguments plus the record files named on the command line; a missing file
    is a one-line error (exit 2)."""
    parser.add_argument("records", nargs="+", help="run_arm.py's JSON lines (.jsonl, or gzipped .jsonl.gz)")
    args = parser.parse_args(argv)
    missing = [path for path in args.records if not Path(path).is_file()]
    if missing:
        parser.error(f"records: no such file: {', '.join(missing)}")
    return args
