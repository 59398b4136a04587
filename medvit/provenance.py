"""Where runs ran, in words: the environments ``medvit.train.environment`` records beside
results, counted for the tables that report them (torch-free, so that reports need no torch)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def where_they_ran(envs: Iterable[dict | None]) -> str:
    """Runs' environments (None where not recorded) in a few words each, with how many runs
    ran in each: "NVIDIA H200, torch 2.11.0+cu130 (6 runs); not recorded (1 run)"."""
    places = Counter(f"{env['device']}, torch {env['torch']}" if env else "not recorded" for env in envs)
    return "; ".join(f"{place} ({count} run{'s' * (count != 1)})" for place, count in places.items())
