"""Small sweep specs and readers of Ray's trial folders, shared by the sweep tests."""

import json
import subprocess
import sys
import time
from pathlib import Path

from sweeps.spec import SweepSpec, load_spec, spec_from_dict


# The smallest preset, what the tests' sweeps train: a packaged spec's model search pinned to it
# keeps `model` a searched key, as in the spec, while no trial trains a preset 3-10x slower that
# no assertion needs.
TINY_MODEL = "medvit_28_tiny"
TINY_MODEL_SEARCH = {"choice": [TINY_MODEL]}


def retina_spec(storage: Path, name: str, **changes) -> SweepSpec:
    """The packaged RetinaMNIST spec made tiny: 128 images per split, the tiny preset searched,
    and trained where a test's `search` leaves the model out (the spec's own is medvit_28_small)."""
    data = load_spec("retinamnist").smoke_variant().to_dict()
    data["name"] = name
    data["storage"] = str(storage)
    data["train"].update(subset=128, batch_size=32, model=TINY_MODEL)
    data["search"]["model"] = TINY_MODEL_SEARCH
    data["train"].update(changes.pop("train", {}))
    data.update(changes)
    return spec_from_dict(data, source=f"test spec {name}")


def trial_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / "params.json").exists())


def results(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def epochs_run(trial_dir: Path) -> list[int]:
    return [r["epoch"] for r in results(trial_dir)]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def leftover_checkpoint(folder: Path) -> Path:
    """A checkpoint staging folder as a trial process SIGKILLed mid-report leaves it in its
    temporary folder: named after a process that is gone."""
    from trainables.medvit_trainable import STAGING_PREFIX  # imports Ray: only where it is needed

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    path = folder / f"{STAGING_PREFIX}{int(gone.stdout)}-x1y2"
    path.mkdir()
    (path / "state.pt").write_bytes(b"0" * 1024)
    return path
