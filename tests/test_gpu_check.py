"""The GPU check is ready to run: its CPU quick mode, the same code path at tiny sizes, passes.

Slow (two to four minutes on two CPU cores, one torch.compile included): it trains, times and starts training processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.device_args import device_parser
from carry_helpers import without_ray_wheels

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_quick_on_cpu(tmp_path, real_root):
    out = tmp_path / "out"
    run = subprocess.run(
        # every step but (k), whose compilation takes minutes on this CPU (its cut-off is tested below)
        ["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--quick", "--steps", "abcdfgehij", "--out", str(out),
         "--data-root", str(real_root)],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=without_ray_wheels(tmp_path / "site"),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for name in ("summary.md", "train_check.json", "throughput.md", "packing.md", "usual_loop.md", "compile.md",
                 "trainer.md", "packed_compile.md", "step_224.md", "notebook_224.md", "log.txt"):
        assert (out / name).is_file(), name
    summary = (out / "summary.md").read_text()
    assert "FAIL" not in summary
    throughput = (out / "throughput.md").read_text()
    for model in ("medvit_28_tiny", "medvit_28_small", "medvit_28_base", "resnet18_28"):
        assert f"| {model} | 8 |" in throughput
    packing = (out / "packing.md").read_text()
    assert "\n| 1 |" in packing and "\n| 2 |" in packing
    assert "speedup vs usual loop:" in (out / "usual_loop.md").read_text()
    assert "| medvit_28_tiny | step | fp32 channels-last | eager |" in (out / "compile.md").read_text()
    trainer = (out / "trainer.md").read_text()
    assert "| Trainer | fp32 channels-last | eager |" in trainer
    assert "| Trainer | bf16 channels-last | eager |" in trainer
    assert "| Trainer | fp32 channels-last | compile: true (default) |" in trainer
    packed = (out / "packed_compile.md").read_text()
    assert "| 2 processes |" in packed and "\n| eager |" in packed
    step = (out / "step_224.md").read_text()  # --quick: the protocol's variants of a 28 px preset at 32 px
    assert "### One training step at 32 px, batch 2" in step
    assert [line.split(" | ")[1] for line in step.splitlines() if line.startswith("| medvit_28_tiny |")] == [
        "bf16", "bf16-cl", "bf16-cl-cudnn"]
    notebook = (out / "notebook_224.md").read_text()
    assert "usual, DataLoader 0 workers" in notebook and notebook.strip().splitlines()[-1].endswith("x (pipeline)")


def test_gpu_check_refuses_bad_arguments_before_it_looks_for_data(tmp_path):
    # no data root at all (a new user's checkout): the argument is still what is refused
    env = {key: value for key, value in os.environ.items() if key != "MEDMNIST_ROOT"}
    for argument, refusal in ((["--steps", "az"], "--steps: letters of abcdfgehijk, got 'az'"),
                              (["--device", "gpu"], "--device: cuda or cpu, got 'gpu'")):
        run = subprocess.run(["bash", "benchmarks/gpu_check.sh", *argument, "--out", str(tmp_path)],
                             cwd=REPO, capture_output=True, text=True, env=env)
        assert (run.returncode, run.stderr) == (2, f"gpu_check.sh: {refusal} (see --help)\n")


def test_gpu_check_py_refuses_unknown_steps_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        device_parser("check", "abc", "ab").parse_args(["--out", str(tmp_path), "--data-root", ".", "--steps", "az"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("error: argument --steps: letters of abc, got 'az'")


def test_gpu_check_needs_out():
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and "--out DIR is required" in run.stderr


def test_a_compilation_past_its_time_is_cut_off_in_one_line():
    # (k) compiles medvit_base at 224 px in a process of its own: past COMPILE_TIMEOUT_S it is a
    # finding of the step, not the end of the device call that the other steps share. In a process
    # of its own here too: importing gpu_check makes Ray unimportable in the importing process.
    script = ("import argparse, torch; from benchmarks import gpu_check; gpu_check.COMPILE_TIMEOUT_S = 1\n"
              "try:\n    gpu_check.protocol_step_compiled(argparse.Namespace(quick=True), torch.device('cpu'))\n"
              "except RuntimeError as error:\n    print(error)")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("bench_epoch.py --step-table") and run.stdout.strip().endswith(": no result in 1 s")
