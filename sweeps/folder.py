"""What a sweep folder is, read the same way by the launcher (resume) and by analysis (collect).

A sweep folder is ``S/N`` for ``RunConfig(storage_path=S, name=N)``: Ray's
``experiment_state-*.json`` (its JSON parts; nothing is unpickled here), the launcher's
``medsweep_spec.yaml`` and one folder per trial. No Ray import: collecting works on a laptop
that only has the synced folders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["SPEC_FILE", "STATE_GLOB", "find_sweep_dirs", "check_sweep_dir", "parse_experiment_state",
           "split_trial_item"]

SPEC_FILE = "medsweep_spec.yaml"
STATE_GLOB = "experiment_state-*.json"


def _is_sweep_dir(p: Path) -> bool:
    return p.is_dir() and any(p.glob(STATE_GLOB))


def check_sweep_dir(p: Path) -> Path:
    """The path if it is a sweep folder, else a one-line ValueError saying what it is instead."""
    if not p.exists():
        raise ValueError(f"{p}: not a sweep folder: the path does not exist")
    if not p.is_dir():
        raise ValueError(f"{p}: not a sweep folder: it is a file (pass the folder S/N of RunConfig(storage_path=S, name=N))")
    if _is_sweep_dir(p):
        return p
    inner = [c.name for c in find_sweep_dirs(p)]
    if inner:
        raise ValueError(f"{p}: not a sweep folder but a storage path holding sweeps {', '.join(inner)}; pass those")
    if (p / "params.json").exists() or (p / "result.json").exists():
        raise ValueError(f"{p}: not a sweep folder but a trial folder; pass its parent {p.parent}")
    raise ValueError(f"{p}: not a sweep folder: no {STATE_GLOB} in it")


def find_sweep_dirs(storage_path: str | os.PathLike) -> list[Path]:
    """Sweep folders directly under a Ray ``storage_path`` (or the path itself if it is one)."""
    p = Path(storage_path)
    if _is_sweep_dir(p):
        return [p]
    if not p.is_dir():
        return []
    return sorted(c for c in p.iterdir() if c.is_dir() and _is_sweep_dir(c))


def parse_experiment_state(text: str, source: str) -> dict[str, Any]:
    """Ray's experiment state as JSON, checked for the parts a restore needs."""
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: corrupted experiment state (not JSON: {exc.msg} at line {exc.lineno})") from None
    if not isinstance(state, dict) or not isinstance(state.get("trial_data"), list) \
            or not isinstance(state.get("runner_data"), dict):
        raise ValueError(f"{source}: corrupted experiment state (no trial_data list or runner_data mapping)")
    return state


def split_trial_item(item: Any) -> tuple[dict | None, dict | None]:
    """One item of Ray's trial_data as (metadata, runtime state); None for a part not JSON."""
    def load(x: Any) -> dict | None:
        if isinstance(x, dict):
            return x
        if isinstance(x, str):
            try:
                v = json.loads(x)
            except json.JSONDecodeError:
                return None
            return v if isinstance(v, dict) else None
        return None

    if isinstance(item, (list, tuple)):
        return load(item[0]) if item else None, load(item[1]) if len(item) > 1 else None
    return load(item), None
