"""bench_epoch.py's paper-protocol parts: the official notebook's transform at 224 px, the FLOPs
of one training step (FlopCounterMode) and the step table, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import bench_epoch
from medvit.augment import AUGMENT_PRESETS


def test_the_notebooks_transform_resizes_first_then_augments():
    transform = bench_epoch.usual_transform(AUGMENT_PRESETS["augmix"], channels=3, resize=224)
    names = [type(step).__name__ for step in transform.transforms]
    assert names == ["Resize", "AugMix", "ToTensor", "Normalize"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8))
    out = transform(image)
    assert out.shape == (3, 224, 224) and -1.0 <= out.min() and out.max() <= 1.0
    shifted = bench_epoch.usual_transform(AUGMENT_PRESETS["shift"], channels=1, resize=224)
    assert shifted(image.convert("L")).shape == (1, 224, 224)  # the crop keeps the resized side


def test_step_flops_are_three_forward_passes():
    batch, n_in, n_out = 3, 8, 4
    layer = torch.nn.Linear(n_in, n_out)
    assert bench_epoch.step_flops(layer, torch.randn(batch, n_in)) == 3 * (2 * batch * n_in * n_out)
    assert layer.weight.grad is None  # counting trains nothing


def test_step_flops_of_a_depthwise_convolution_count_its_groups():
    # FlopCounterMode's own backward count of this convolution is 65x its forward, not 2x
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, groups=64)
    batch, side = 2, 16
    forward = 2 * batch * side * side * 64 * 9  # one 3x3 multiply-add per output value
    assert bench_epoch.step_flops(conv, torch.randn(batch, 64, side, side)) == 3 * forward


def test_step_table_rows_on_the_cpu():
    rows = bench_epoch.step_rows("medvit_28_tiny", ["fp32", "fp32-cl"], batch=2, resize=None,
                                 dataset="retinamnist", device=torch.device("cpu"), steps=1)
    assert [r["variant"] for r in rows] == ["fp32", "fp32-cl"]
    assert rows[0]["step_gflop"] == rows[1]["step_gflop"] > 0
    for row in rows:
        assert row["images_per_s"] > 0 and row["memory_gib"] > 0 and row["mfu"] is None  # no CPU peak listed
    double = bench_epoch.step_rows("medvit_28_tiny", ["fp32"], batch=4, resize=None, dataset="retinamnist",
                                   device=torch.device("cpu"), steps=1)
    assert double[0]["step_gflop"] == pytest.approx(2 * rows[0]["step_gflop"], rel=1e-6)  # linear in the batch
    table = bench_epoch.step_table(rows, torch.device("cpu"), 2, None)
    assert table.count("| medvit_28_tiny |") == 2 and "| - |" in table


def test_the_autotuned_variant_hands_torchs_default_back(monkeypatch):
    # cuDNN's autotuning is process-wide: a later row, or the epochs after the table, must not inherit it
    seen, count = [], bench_epoch.step_flops
    monkeypatch.setattr(bench_epoch, "step_flops", lambda model, x: seen.append(torch.backends.cudnn.benchmark) or count(model, x))
    rows = bench_epoch.step_rows("medvit_28_tiny", ["bf16-cl-cudnn", "bf16"], batch=2, resize=None,
                                 dataset="retinamnist", device=torch.device("cpu"), steps=1)
    assert seen == [True]  # the step's FLOPs are counted in the first row, with autotuning on
    assert [r["variant"] for r in rows] == ["bf16-cl-cudnn", "bf16"] and torch.backends.cudnn.benchmark is False


def test_resize_is_counted_as_the_models_input():
    (small,) = bench_epoch.step_rows("medvit_28_tiny", ["fp32"], batch=1, resize=None, dataset="retinamnist",
                                     device=torch.device("cpu"), steps=1)
    (large,) = bench_epoch.step_rows("medvit_28_tiny", ["fp32"], batch=1, resize=56, dataset="retinamnist",
                                     device=torch.device("cpu"), steps=1)
    assert large["step_gflop"] > 3 * small["step_gflop"]  # four times the pixels


def test_peak_flops_know_the_h200_and_not_a_cpu(monkeypatch):
    assert bench_epoch.peak_flops(torch.device("cpu"), "bf16") is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert bench_epoch.peak_flops(torch.device("cuda"), "bf16") == 989e12
    assert bench_epoch.peak_flops(torch.device("cuda"), "fp32") == 494.7e12  # cuDNN's fp32 convolutions run in TF32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert bench_epoch.peak_flops(torch.device("cuda"), "fp32") == 67e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    assert bench_epoch.peak_flops(torch.device("cuda"), "bf16") is None


def test_bad_resize_and_variants_are_one_line(capsys):
    for argv, message in ((["--resize", "4"], "--resize: 4 is not a side in px; allowed: an integer >= 8"),
                          (["--step-table", "--variants", "fp16"], "--variants: unknown fp16; allowed: fp32, fp32-cl, bf16, bf16-cl, bf16-cl-cudnn")):
        with pytest.raises(SystemExit) as exit_info:
            bench_epoch.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_pipeline_only_times_both_input_paths_and_trains_nothing(real_root, capsys):
    bench_epoch.main(["--pipeline-only", "--resize", "56", "--augment", "augmix", "--subset", "16", "--batch", "8",
                      "--workers", "0", "--rounds", "1", "--data-root", str(real_root)])
    out = capsys.readouterr().out
    assert "Whole training epochs" not in out
    assert "Input pipeline alone (images to a ready augmented batch at 56 px)" in out
    assert "usual, DataLoader 0 workers" in out and bench_epoch.OURS in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("speedup vs usual loop: ") and last.endswith("x (pipeline)") and "epoch" not in last


def test_both_loops_train_at_a_side_that_is_no_medmnist_size(real_root, capsys):
    # the usual loop built its model for img_size=32, which create_model refuses (28, 64, 128, 224)
    bench_epoch.main(["--resize", "32", "--augment", "augmix", "--subset", "8", "--batch", "4", "--workers", "0",
                      "--rounds", "1", "--models", "medvit_28_tiny", "--data-root", str(real_root)])
    out = capsys.readouterr().out
    assert "| medvit_28_tiny | usual, DataLoader 0 workers |" in out and f"| medvit_28_tiny | {bench_epoch.OURS} |" in out
