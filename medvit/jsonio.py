"""The one JSON writer for result files (``result.json``, ``ensemble.json``): strict JSON,
written whole or not at all, so a reader never sees half a file or a ``NaN`` it cannot parse."""

from __future__ import annotations

import json
import math
from pathlib import Path

from medvit.atomic import write_text_atomic

__all__ = ["finite", "write_json"]


def finite(value):
    """The value with every NaN or infinity replaced by None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def write_json(path: Path, data: dict, replace: bool = True) -> None:
    """Strict JSON, written whole or not at all (medvit.atomic); ``replace=False``: never over a
    file that is there (FileExistsError)."""
    write_text_atomic(path, json.dumps(finite(data), indent=2, allow_nan=False), replace)
