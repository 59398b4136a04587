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


# Significant digits a record keeps of each measured number. Full precision more than doubles a
# record's gzipped size (most of it the probabilities of every validation and test image), and the
# shipped records must leave the tree small enough to travel with Ray's wheels; every table
# summarize.py prints from the 2026-12-05 records is the same at 5 digits to its last printed digit.
RECORD_DIGITS = 5


def rounded(value):
    """``value`` (any part of a record) with every float cut to RECORD_DIGITS significant digits
    (significant, not decimals: a learning rate of 1e-6 stays 1e-6)."""
    if isinstance(value, float):
        return float(f"{value:.{RECORD_DIGITS}g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def record_line(record: dict) -> str:
    """One record as the line a record file holds: JSON, its measurements rounded; its ``config``
    exact, since the protocol study compares a kept record's config with the run it stands for."""
    return json.dumps({k: v if k == "config" else rounded(v) for k, v in record.items()}) + "\n"


def read_records(paths: Iterable[str | Path]) -> Iterator[dict]:
    for path in paths:
        with open_text(path) as f:
            yield from (json.loads(line) for line in f if line.strip())


def record_paths(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser``'s arguments plus the record files named on the command line; a missing file
    is a one-line error (exit 2)."""
    parser.add_argument("records", nargs="+", help="run_arm.py's JSON lines (.jsonl, or gzipped .jsonl.gz)")
    args = parser.parse_args(argv)
    require_files(parser, "records", args.records)
    return args


def require_files(parser: argparse.ArgumentParser, what: str, paths: list[str]) -> None:
    """A one-line error (exit 2) naming ``what`` and each of ``paths`` that is not a file."""
    missing = [path for path in paths if not Path(path).is_file()]
    if missing:
        parser.error(f"{what}: no such file: {', '.join(missing)}")
