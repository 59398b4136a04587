"""GradCAM maps of real medsweep models after a few training steps on a synthetic pattern."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.gradcam import build_rows, gradcam_figure, gradcam_maps, pick_examples
from medvit.models import create_model


def _pattern(n: int = 10):
    """Class k = a bright bar at height 2 + 5k: learnable in a few steps, spatially localised."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 5
    x = 0.1 * torch.randn(n, 3, 28, 28, generator=g)
    for i in range(n):
        r = 2 + 5 * int(y[i])
        x[i, :, r:r + 4, 4:24] += 2.0
    return x, y


def _trained(name: str, x, y, steps: int = 8):
    torch.manual_seed(0)
    m = create_model(name, in_chans=3, num_classes=5, img_size=28)
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    m.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Re-estimate BatchNorm statistics on the data so eval mode matches what was trained.
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None
    with torch.no_grad():
        m(x)
    return m.eval()


@pytest.fixture(scope="module")
def models():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fastest on a small, shared CPU
    x, y = _pattern()
    try:
        yield x, y, {name: _trained(name, x, y) for name in ("medvit_28_tiny", "resnet18_28")}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["medvit_28_tiny", "resnet18_28"])
def test_maps_have_spatial_variation(models, name):
    x, y, ms = models
    maps = gradcam_maps(ms[name], x[:5], y[:5].tolist())
    assert maps.shape == (5, 28, 28) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    for m in maps:
        assert m.std() > 0.05, "GradCAM map is (nearly) constant"
        assert len(np.unique(np.round(m, 4))) > 10


def test_maps_argument_checks(models):
    x, y, ms = models
    with pytest.raises(ValueError, match="one target class per image"):
        gradcam_maps(ms["resnet18_28"], x[:2], [0])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        gradcam_maps(ms["resnet18_28"], x[0], [0])


def test_gradcam_figure(models, tmp_path):
    x, y, ms = models
    idx = pick_examples(y, grades=(1, 2))
    assert [int(y[i]) for i in idx] == [1, 2]
    raw = (x[idx].clamp(0, 1) * 255).to(torch.uint8)
    rows = build_rows(x[idx], y[idx], {"CE (α=0)": ms["resnet18_28"], "Ordinal (α=0.2)": ms["medvit_28_tiny"]},
                      display_images=raw)
    assert [r.true for r in rows] == [1, 2]
    assert all(len(r.overlays) == 2 and r.overlays[0].cam.shape == (28, 28) for r in rows)
    png = gradcam_figure(rows, tmp_path / "gradcam.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(ValueError):
        pick_examples(y, grades=(7,))


def test_choose_images_prefers_images_the_models_disagree_on():
    from analysis.gradcam import choose_images

    labels = np.array([1, 2, 1, 2, 1, 2, 0])
    preds = np.array([[0, 0, 0, 0, 1, 2, 0],   # model A
                      [0, 0, 0, 1, 2, 2, 0]])  # model B: disagrees on images 3 (grade 2) and 4 (grade 1)
    choice = choose_images(labels, [1, 2], 2, preds)
    assert choice.indices == [4, 3]
    assert choice.note == "Images: the first of each grade on which the models' predictions differ (2 of 2)."
    # more rows than disagreements: then images adding a predicted class not shown yet, else file order
    # (the classes 0, 1, 2 are all shown by images 4 and 3 already)
    choice = choose_images(labels, [1, 2], 4, preds)
    assert choice.indices == [4, 3, 0, 1] and "2 of 4 where the models' predictions differ, all found" in choice.note
    # without predictions: the first of each grade in file order, as pick_images
    assert choose_images(labels, [1, 2], 3).indices == [0, 1, 2]


def test_choose_images_varies_the_prediction_when_the_models_agree():
    """The make-run figure showed four images all predicted grade 0: not when others exist."""
    from analysis.gradcam import choose_images

    labels = np.array([1, 1, 1, 2, 2, 2])
    preds = np.array([[0, 0, 1, 0, 0, 2]] * 2)
    choice = choose_images(labels, [1, 2], 4, preds)
    assert choice.indices == [0, 5, 2, 3]  # predicted 0, then 2 (new), then 1 (new), then file order
    assert {int(preds[0, i]) for i in choice.indices} == {0, 1, 2}
    assert choice.note.startswith("Images: the models agree on every image of these grades")
    alone = choose_images(labels, [1, 2], 4, preds[:1])  # one model: the same rule, said for one
    assert alone.indices == choice.indices and alone.note.startswith("Images: of each grade in turn, one that varies")


def _results_with_checkpoints(tmp_path):
    from hand_results import retina_results, with_checkpoints

    return with_checkpoints(retina_results(), tmp_path)


def test_gradcam_compares_trials_that_ran_all_their_epochs(tmp_path):
    """Of each side the best trial that finished, where one did; the caption says how each ended."""
    from analysis.cli import auto_gradcam_checkpoints
    from hand_results import BEST

    df = _results_with_checkpoints(tmp_path)
    # no alpha = 0 trial finished: the best one ASHA stopped, said so; alpha > 0: the finished medvit_28_small
    ce, ordinal, caption = auto_gradcam_checkpoints(df)
    assert (Path(ce).name, Path(ordinal).name) == (BEST, "e47d7b0f")
    assert f"trial {BEST}, stopped early at epoch 16: no α = 0 trial ran all its epochs" in caption
    assert "trial e47d7b0f, all 20 epochs" in caption
    # the second-best alpha = 0 trial ran to the end: it is shown instead of the better one ASHA stopped
    df.loc[df["trial_id"] == "3d4157e5", ["stop_reason", "epochs_run"]] = ["finished", 20]
    ce, ordinal, caption = auto_gradcam_checkpoints(df)
    assert (Path(ce).name, Path(ordinal).name) == ("3d4157e5", "e47d7b0f")
    assert "trial 3d4157e5, all 20 epochs" in caption and "stopped early" not in caption
    # a diverged trial is never shown, however it ranked before it diverged
    df.loc[df["trial_id"] == "3d4157e5", ["stop_reason", "best_value"]] = ["diverged", None]
    assert Path(auto_gradcam_checkpoints(df)[0]).name == BEST


def test_gradcam_picks_checkpoints_collected_from_a_bucket_and_skips_local_ones_not_here(tmp_path):
    """Collected from a bucket, a trial's checkpoint is the bucket's folder (fetched when loaded);
    a local one counts only where its state.pt is on this machine."""
    from analysis.cli import auto_gradcam_checkpoints
    from hand_results import BEST, retina_results

    df = retina_results()
    df["checkpoint_path"] = [f"s3://bucket/sweeps/retina/{t}/checkpoint_000019" for t in df["trial_id"]]
    ce, ordinal, _ = auto_gradcam_checkpoints(df)
    assert (ce, ordinal) == (f"s3://bucket/sweeps/retina/{BEST}/checkpoint_000019",
                             "s3://bucket/sweeps/retina/e47d7b0f/checkpoint_000019")
    df["checkpoint_path"] = [str(tmp_path / t) for t in df["trial_id"]]  # a local copy since removed
    assert auto_gradcam_checkpoints(df) is None
