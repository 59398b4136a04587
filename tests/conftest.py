"""Shared fixtures: where the real MedMNIST files are, and a root that serves all twelve flags."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from medvit.openmp import set_default_wait_policy

# The suite's own torch waits passively too, as `medsweep` does: at a load of 13-15 on 2 cores,
# tests/test_models.py ran in 56-58 s so, and had not finished after 600 s with libgomp's default.
set_default_wait_policy()

from medvit.data import DATASETS, MD5_CACHE_ENV  # noqa: E402
from medvit.synthetic import write_synthetic  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_FLAGS = ("retinamnist", "pneumoniamnist")
SYNTHETIC_FLAGS = tuple(f for f in DATASETS if f not in REAL_FLAGS)
SYNTHETIC_N = (64, 16, 16)


def pytest_collection_modifyitems(items):
    """The analysis tests read real Ray Tune sweeps that their fixture runs: they are slow."""
    for item in items:
        if "analysis_sweeps" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _isolated_md5_cache(tmp_path_factory):
    """Keep the persistent MD5 verdicts of test files out of the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MD5_CACHE_ENV, str(tmp_path_factory.mktemp("md5cache") / "md5.json"))
        yield


@pytest.fixture(scope="session", autouse=True)
def _scripts_run_on_this_python():
    """The GPU and study scripts the tests start run on the Python the tests run on: left to
    themselves they take the checkout's .venv, else `python3`, which under `make test
    VENV=/tmp/venv313` is another Python (or, in a root with python3.14 only, none)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHON", sys.executable)
        yield


@pytest.fixture(scope="session", autouse=True)
def _ctrl_c_reaches_the_processes_tests_start():
    """Tests send SIGINT as a user's Ctrl-C would. A test run started in the background of a
    shell script (`make test &`) inherits SIGINT ignored, and so would every process it starts:
    they would run to the end and exit 0. Python's own handler is reset to the default at exec."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(scope="session")
def real_root() -> Path:
    """Folder with the real retinamnist.npz and pneumoniamnist.npz (read-only). Without
    MEDMNIST_ROOT (a new user's `make test-fast`) the tests that need them skip and say so; a
    MEDMNIST_ROOT that lacks them fails: it is a broken setup, as in CI."""
    env = os.environ.get("MEDMNIST_ROOT")
    root = Path(env) if env else (REPO.parent / "shared" / "medmnist").resolve()
    missing = [f"{flag}.npz" for flag in REAL_FLAGS if not (root / f"{flag}.npz").is_file()]
    if missing and not env:
        pytest.skip(f"needs the real MedMNIST files ({', '.join(missing)}): set MEDMNIST_ROOT to the folder holding "
                    "them (medsweep data download --dataset retinamnist --data-root DIR, then pneumoniamnist)")
    if missing:
        pytest.fail(
            f"real MedMNIST files {', '.join(missing)} not found in {root}; "
            "set MEDMNIST_ROOT to the folder holding them",
            pytrace=False,
        )
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory, real_root) -> Path:
    """One root for all twelve flags: synthetic 28 px files (64/16/16 per split) for the ten
    datasets not available offline, symlinks to the two real files."""
    root = tmp_path_factory.mktemp("medmnist")
    for flag in SYNTHETIC_FLAGS:
        write_synthetic(flag, root, size=28, n_per_split=SYNTHETIC_N, seed=0)
    for flag in REAL_FLAGS:
        (root / f"{flag}.npz").symlink_to(real_root / f"{flag}.npz")
    return root


@pytest.fixture(scope="session")
def analysis_sweeps(tmp_path_factory, real_root):
    """The real Ray Tune sweeps of the analysis tests (built once; treat them as read-only)."""
    from analysis_sweeps import build_sweeps

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    return build_sweeps(tmp_path_factory.mktemp("ray_sweeps"), real_root)


@pytest.fixture(scope="session")
def analysis_results(analysis_sweeps, tmp_path_factory):
    """(results.parquet path, DataFrame): both sweeps collected, best trials evaluated on test
    (``analysis.evaluate.evaluate_best``, the real evaluation)."""
    from analysis.collect import collect
    from analysis.evaluate import evaluate_best

    out = tmp_path_factory.mktemp("results") / "results.parquet"
    collect(list(analysis_sweeps.dirs.values()), out)
    return out, evaluate_best(out, data_root=analysis_sweeps.data_root).to_pandas()


@pytest.fixture(scope="session")
def retina_data(real_root):
    """The real RetinaMNIST splits (uint8 tensors on the CPU)."""
    from medvit.data import load_dataset

    return load_dataset("retinamnist", root=real_root)
