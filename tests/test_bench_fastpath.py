"""The fast path computes what the usual path computes; its speed is for benchmarks/.

* The usual loop of ``benchmarks/bench_epoch.py`` uses torchvision transforms of the same kinds
  and strengths as each augment preset, and both sides feed the model the same numbers when
  augmentation is off (so the benchmark compares like with like).
* channels-last and bf16 autocast, the GPU training path, give the predictions of contiguous
  fp32 within tolerance: on CPU where they run there, on CUDA where a GPU is visible.

Exactness of the augmentation itself (off is identity, flips, integer shifts) is in
``tests/test_augment.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from benchmarks import bench_epoch
from medvit.augment import AUGMENT_PRESETS
from medvit.models import create_model
from medvit.train import normalise

MODELS = ("medvit_28_tiny", "resnet18_28")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible: the GPU path cannot run here")


def _steps(transform: T.Compose, kind: type) -> list:
    return [t for t in transform.transforms if isinstance(t, kind)]


@pytest.mark.parametrize("preset", list(AUGMENT_PRESETS))
def test_usual_transforms_have_the_preset_kinds_and_strengths(preset):
    cfg = AUGMENT_PRESETS[preset]
    transform = bench_epoch.usual_transform(cfg, channels=3)
    affine = _steps(transform, T.RandomAffine)
    if cfg.rotation or cfg.crop or cfg.scale:
        (affine,) = affine
        assert affine.degrees == [-cfg.rotation, cfg.rotation]
        assert affine.translate == ((cfg.crop, cfg.crop) if cfg.crop else None)
        assert affine.scale == ((1 - cfg.scale, 1 + cfg.scale) if cfg.scale else None)
    else:
        assert not affine
    crops = _steps(transform, T.RandomCrop)
    assert [c.padding for c in crops] == ([int(cfg.shift)] if cfg.shift else [])
    assert [f.p for f in _steps(transform, T.RandomHorizontalFlip)] == ([cfg.hflip] if cfg.hflip else [])
    assert [f.p for f in _steps(transform, T.RandomVerticalFlip)] == ([cfg.vflip] if cfg.vflip else [])
    assert [r.p for r in _steps(transform, T.RandomApply)] == ([cfg.rot90] if cfg.rot90 else [])
    assert [a.severity for a in _steps(transform, T.AugMix)] == ([int(cfg.augmix)] if cfg.augmix else [])


@pytest.mark.parametrize("channels", [1, 3])
def test_both_sides_feed_the_model_the_same_numbers_when_off(channels):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(28, 28, channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels)
    usual = bench_epoch.usual_transform(AUGMENT_PRESETS["off"], channels)(image)
    ours = normalise(torch.from_numpy(pixels).permute(2, 0, 1))
    torch.testing.assert_close(usual, ours, atol=1e-6, rtol=0)


def test_compile_row_needs_an_epoch_after_the_compiling_one(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench_epoch.main(["--compile", "--rounds", "1"])
    assert exit_.value.code == 2
    assert "--compile: needs --rounds 2 or more" in capsys.readouterr().err


def _probabilities(model, x, *, bf16=False, channels_last=False, device="cpu"):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).eval()
    with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        return model(x.to(device).contiguous(memory_format=fmt)).float().softmax(1).cpu()


def _model_and_batch(name):
    torch.manual_seed(0)
    model = create_model(name, in_chans=3, num_classes=5)
    # a few training steps move BatchNorm's running statistics away from their 0/1 start
    model.train()
    x = normalise(torch.randint(0, 256, (32, 3, 28, 28), dtype=torch.uint8))
    with torch.no_grad():
        for _ in range(3):
            model(x)
    return model, x


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_matches_fp32_on_cpu(name):
    model, x = _model_and_batch(name)
    reference = _probabilities(model, x)
    torch.testing.assert_close(_probabilities(model, x, channels_last=True), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_bf16_autocast_close_to_fp32_on_cpu(name):
    model, x = _model_and_batch(name)
    x = x[:8]  # a CPU without bf16 instructions (AVX2) took 17 s for ResNet-18's two passes over 32
    reference = _probabilities(model, x)
    for channels_last in (False, True):
        probs = _probabilities(model, x, bf16=True, channels_last=channels_last)
        assert (probs - reference).abs().max() < 0.05


@CUDA
@pytest.mark.parametrize("name", MODELS)
def test_gpu_modes_match_cpu_fp32(name):
    model, x = _model_and_batch(name)
    reference = _probabilities(model, x)
    fp32 = _probabilities(model, x, device="cuda")
    torch.testing.assert_close(fp32, reference, atol=1e-3, rtol=0)
    for channels_last in (False, True):
        probs = _probabilities(model, x, bf16=True, channels_last=channels_last, device="cuda")
        assert (probs - reference).abs().max() < 0.05


def test_rounds_rotate_the_order_and_keep_each_methods_best():
    calls, rates = [], {"a": iter([1.0, 5.0, 2.0]), "b": iter([3.0, 1.0, 4.0]), "c": iter([2.0, 2.0, 2.0])}
    methods = {name: (lambda name=name: calls.append(name) or next(rates[name])) for name in rates}
    assert bench_epoch.best_of_rounds(methods, 3) == {"a": 5.0, "b": 4.0, "c": 2.0}
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # no method always follows the same one
