"""Each in-process benchmark's smallest form runs and prints its table, so a change in the
product that breaks a benchmark (as one once failed unnoticed) fails here, not in `make bench`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def bench(module: str, *args: str, timeout: int = 300) -> str:
    """``python -m benchmarks.<module> args``'s output; it must succeed."""
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def refusal(module: str, *args: str) -> str:
    """The last line ``python -m benchmarks.<module> args`` writes to stderr; it must exit 2."""
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    return done.stderr.strip().splitlines()[-1]


def ratio_rows(stdout: str) -> list[list[str]]:
    """The cells of a printed table's rows that end with a ratio (``N.NNx``)."""
    return [[c.strip() for c in line.split("|")[1:-1]] for line in stdout.splitlines() if line.endswith("x |")]


@pytest.mark.slow  # each imports torch in a fresh interpreter and times a few steps
@pytest.mark.parametrize("module, args, row", [
    ("bench_augment", ["--batch", "16", "--seconds", "0.2"], "augment_batch 'augmix'"),
    ("bench_loss", ["--repeats", "1"], "4096"),
    ("bench_startup", ["--rounds", "1"], "| a training process |"),
    ("bench_ray_exit", ["--rounds", "1"], "| the same, objects frozen before the end (medsweep) |"),
    ("bench_models", ["--batch", "8", "--steps", "1", "--rounds", "1", "--warmup", "1", "--models", "medvit_28_tiny"],
     "medvit_28_tiny"),
])
def test_smallest_form_prints_its_table(module, args, row):
    out = bench(module, *args)
    assert row in out, out[-2000:]


@pytest.mark.slow  # two tiny Trainers, one epoch each, in a fresh interpreter
def test_bn_recompute_cost_prints_a_row_per_training_set_size(real_root):
    rows = ratio_rows(bench("bench_bn_recompute", "--sizes", "24,40", "--rounds", "1", "--batch", "16",
                            "--data-root", str(real_root)))
    assert [row[0] for row in rows] == ["24", "40"]
    assert {row[1] for row in rows} == {"524"}  # validation stays whole


def test_ray_exit_bench_rejects_no_rounds_in_one_line():
    assert refusal("bench_ray_exit", "--rounds", "0").endswith("--rounds: 0 is not a number of rounds; allowed: 1 or more")


def test_bn_recompute_bench_rejects_bad_sizes_in_one_line():
    assert refusal("bench_bn_recompute", "--sizes", "a,40").endswith(
        "--sizes: 'a,40' is not a comma-separated list of image counts")


@pytest.mark.slow  # two one-trial sweeps, each a `medsweep sweep` process starting Ray
def test_checkpoint_every_bench_runs_each_arm_as_a_sweep(real_root):
    rows = {cells[0]: cells[1:] for cells in ratio_rows(bench("bench_checkpoint_every", "--quick", "--data-root",
                                                               str(real_root)))}
    assert set(rows) == {"1", "2"}
    assert rows["1"][0] == "4" and rows["1"][-1] == "1.00x"  # 4 epochs, each checkpointed: the baseline
    assert 2 <= int(rows["2"][0]) <= 4  # epochs 2 and 4, and each newly selected one


def test_checkpoint_every_bench_rejects_a_bad_every_in_one_line():
    assert refusal("bench_checkpoint_every", "--every", "1,0").endswith(
        "argument --every: '1,0' is not a comma-separated list of whole numbers >= 1")


@pytest.mark.slow  # moto's S3 server and a small sweep folder, read both ways, in a fresh interpreter
@pytest.mark.bucket_server
def test_bucket_status_bench_reads_the_sweep_one_file_and_several_at_a_time_then_from_what_it_kept():
    out = bench("bench_bucket_status", "--trials", "3", "--running", "1", "--rtt-ms", "0,5", "--rounds", "1")
    assert "(8 small files, every file listed)" in out and "fetch the 1 running trials' reports" in out
    rows = ratio_rows(out)
    assert [row[0] for row in rows] == ["0 ms", "5 ms"] and all(float(cell) > 0 for row in rows for cell in row[1:5])


def test_bucket_status_bench_rejects_a_bad_round_trip_in_one_line():
    message = "--rtt-ms: comma-separated numbers >= 0; --trials and --rounds: integers >= 1; --running: an integer " \
              "from 0 to --trials"
    assert refusal("bench_bucket_status", "--rtt-ms", "20,x").endswith(message)
    assert refusal("bench_bucket_status", "--trials", "3", "--running", "4").endswith(message)


@pytest.mark.slow  # moto's S3 server and a tiny checkpoint, read four ways, in a fresh interpreter
@pytest.mark.bucket_server
def test_checkpoint_cache_bench_fetches_in_pieces_then_reads_the_cache(real_root):
    rows = ratio_rows(bench("bench_checkpoint_cache", "--model", "medvit_28_tiny", "--rounds", "1", "--data-root",
                            str(real_root)))
    assert [row[0] for row in rows] == ["fetched with one whole-object read (before)",
                                        "fetched in 16 MiB pieces (cache off)", "first read, into the cache",
                                        "a later read, from the cache"]
    assert rows[0][-1] == "1.0x"  # the baseline
    fetched, requests = ([int(row[column].replace(",", "")) for row in rows] for column in (1, 2))
    assert fetched[0] == fetched[1] == fetched[2] > 0 and fetched[3] == 0
    assert requests[0] > requests[1] == requests[2] > requests[3] == 1  # the listing alone


@pytest.mark.slow  # two tiny trials saved, then read both ways, in a fresh interpreter
def test_ensemble_choice_bench_reads_less_from_the_selection_file(real_root):
    rows = {cells[0]: cells[1:] for cells in ratio_rows(bench(
        "bench_ensemble_choice", "--model", "medvit_28_tiny", "--resize", "0", "--trials", "2", "--rounds", "1",
        "--data-root", str(real_root)))}
    assert set(rows) == {"state.pt", "selection.npz"} and rows["state.pt"][-1] == "1.0x"  # the baseline
    state_bytes, selection_bytes = (int(rows[name][0].replace(",", "")) for name in ("state.pt", "selection.npz"))
    assert 0 < selection_bytes < state_bytes / 100
