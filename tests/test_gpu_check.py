"""The GPU check is ready to run: its CPU quick mode, the same code path at tiny sizes, passes.

Slow (two to four minutes on two CPU cores, one torch.compile included): it trains, times and starts training processes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_quick_on_cpu(tmp_path, real_root):
    out = tmp_path / "out"
    run = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--quick", "--steps", "abcdfgeh", "--out", str(out),
         "--data-root", str(real_root)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for name in ("summary.md", "train_check.json", "throughput.md", "packing.md", "usual_loop.md", "compile.md",
                 "trainer.md", "packed_compile.md", "log.txt"):
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


def test_gpu_check_refuses_unknown_steps(tmp_path):
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--steps", "az", "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True)
    # gpu_check.sh tees the check's output (stderr included) into DIR/log.txt and stdout
    assert run.returncode == 2 and "error: --steps: letters of abcdfgeh, got 'az'" in run.stdout


def test_gpu_check_needs_out():
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and "--out DIR is required" in run.stderr
