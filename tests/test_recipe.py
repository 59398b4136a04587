"""The training recipe's knobs each change training as documented (tiny model, small subset)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medvit.config import build_config
from medvit.metrics import decoded_metrics, evaluate
from medvit.augment import tta_flips
from medvit.selection import WORST_SCORE
from medvit.train import Trainer, load_state, parameter_groups, train_steps, warmup_cosine


def _trainer(retina_data, **values) -> Trainer:
    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "device": "cpu", "epochs": 3,
                           "batch_size": 32, **values})
    return Trainer(config, retina_data.subset(96, seed=0))


def test_warmup_then_cosine_values():
    factor = warmup_cosine(warmup_steps=4, total_steps=12)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == 1.0 and factor(8) == pytest.approx(0.5) and factor(12) == pytest.approx(0.0)
    assert [factor(s) for s in range(4, 13)] == sorted((factor(s) for s in range(4, 13)), reverse=True)


def test_trainer_steps_the_schedule_per_batch(retina_data):
    trainer = _trainer(retina_data, warmup_epochs=1, lr=1e-3)
    assert trainer.steps_per_epoch == 3  # 96 images, batches of 32
    lrs = []
    for _ in range(3):
        trainer.optimizer.zero_grad()
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert lrs == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])


def test_no_weight_decay_on_norms_and_biases(retina_data):
    trainer = _trainer(retina_data, weight_decay=0.05)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert sum(len(g["params"]) for g in parameter_groups(trainer.model, 0.05)) == len(list(trainer.model.parameters()))


def test_ema_weights_are_what_is_selected_and_checkpointed(retina_data, tmp_path):
    trainer = _trainer(retina_data, ema=0.9, select_window=1)
    snapshots = {m["epoch"]: {k: v.clone() for k, v in trainer.ema.state_dict().items()} for m in trainer.epochs()}
    raw, ema = trainer.model.state_dict(), trainer.ema.state_dict()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())
    trainer.save(tmp_path)
    state = load_state(tmp_path)
    selected = snapshots[trainer.best_epoch]  # the EMA weights as they were at the selected epoch
    assert all(torch.equal(state["best_weights"][k], selected[k]) for k in selected)
    assert all(torch.equal(state["ema"][k], ema[k]) for k in ema)


def test_ema_update_is_the_documented_average_and_survives_a_restore(retina_data):
    trainer = _trainer(retina_data, ema=0.9)
    trainer.train_epoch()
    # Restoring copies into the same tensors, so the EMA's cached pairs still point at them.
    trainer.load_state_dict(trainer.state_dict())
    with torch.no_grad():
        for t in trainer.model.state_dict().values():
            t.add_(1)  # moves the weights away from the average, and the integer step counts
    before = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
    raw = trainer.model.state_dict()
    trainer.ema_update.update(0.75)
    after = trainer.ema.state_dict()
    for k, v in after.items():
        expected = 0.75 * before[k] + 0.25 * raw[k] if v.is_floating_point() else raw[k]
        assert torch.allclose(v, expected, atol=1e-6), k
    assert any(not v.is_floating_point() for v in after.values())  # integer buffers were checked too


def test_without_ema_the_model_is_evaluated(retina_data):
    trainer = _trainer(retina_data, ema=0.0)
    assert trainer.ema is None and trainer.eval_model is trainer.model


def test_mixup_zero_is_the_plain_loss_and_mixup_is_the_weighted_sum(retina_data):
    def forward(x):  # a fixed function of the pixels, so that mixing images changes the logits
        return 10 * x.flatten(1)[:, :5]

    plain = _trainer(retina_data, mixup=0.0, label_smoothing=0.0)
    plain.forward = forward
    inputs = plain._inputs("train", torch.arange(16))
    target = plain.labels["train"][:16]
    expected = plain.loss_fn(forward(inputs), target)
    assert torch.equal(plain._loss(inputs, target), expected)

    mixed = _trainer(retina_data, mixup=0.4, label_smoothing=0.0)
    mixed.forward = forward
    rng_state, gen_state = mixed.mix_rng.bit_generator.state, mixed.generator.get_state()
    loss = mixed._loss(inputs, target)
    mixed.mix_rng.bit_generator.state = rng_state
    mixed.generator.set_state(gen_state)
    lam = float(mixed.mix_rng.beta(0.4, 0.4))
    perm = torch.randperm(16, generator=mixed.generator)
    logits = forward(lam * inputs + (1 - lam) * inputs[perm])
    assert torch.allclose(loss, lam * mixed.loss_fn(logits, target) + (1 - lam) * mixed.loss_fn(logits, target[perm]))
    assert not torch.allclose(loss, expected)


def test_drop_path_only_in_training(retina_data):
    trainer = _trainer(retina_data, drop_path=0.5)
    x = trainer._inputs("val", torch.arange(8))
    model = trainer.model
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(0)
        assert not torch.allclose(model(x), model(x))


def test_select_score_is_the_trailing_mean_and_deterministic(retina_data):
    runs = [list(_trainer(retina_data, select_window=2, seed=3).epochs()) for _ in range(2)]
    assert runs[0] == [{**m, "epoch_time_s": a["epoch_time_s"], "images_per_s": a["images_per_s"]}
                       for m, a in zip(runs[1], runs[0])]
    accs = [m["val_acc"] for m in runs[0]]
    assert [m["select_score"] for m in runs[0]] == pytest.approx([accs[0], np.mean(accs[:2]), np.mean(accs[1:3])])
    best = max(range(3), key=lambda i: (runs[0][i]["select_score"], -i))
    assert runs[0][-1]["best_epoch"] == best + 1


def test_a_non_finite_loss_ends_the_run_as_diverged(retina_data):
    trainer = _trainer(retina_data, lr=1e30, epochs=5, grad_clip=0.0, warmup_epochs=0)
    epochs = list(trainer.epochs())
    assert epochs[-1]["diverged"] and epochs[-1]["train_loss"] is None
    assert epochs[-1]["select_score"] == WORST_SCORE["max"]
    assert len(epochs) < 5 and not any(m["diverged"] for m in epochs[:-1])
    assert trainer.best_epoch < epochs[-1]["epoch"]
    assert trainer.finish()["diverged"]


def test_expected_grade_decoding_beats_argmax_on_an_ordinal_case():
    # A classifier biased to the majority grade whose probabilities still rise toward the true
    # grade: argmax collapses grades onto 0, the expected grade keeps their order.
    rng = np.random.default_rng(0)
    y = rng.choice(5, size=600, p=[0.45, 0.15, 0.2, 0.15, 0.05])
    grades = np.arange(5)
    logits = -0.8 * (grades[None, :] - (y[:, None] + rng.normal(0, 0.7, (600, 1)))) ** 2
    logits[:, 0] += 2.5
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    val, test = slice(0, 300), slice(300, 600)
    argmax = evaluate("ordinal-regression", y[test], scores[test])
    decoded = decoded_metrics(y[val], scores[val], y[test], scores[test])
    assert decoded["qwk_decoded"] > argmax["qwk"] + 0.03
    assert decoded["mae_decoded"] < argmax["mae"]
    assert math.isfinite(decoded["qwk_decoded"])


def test_compile_wraps_the_forward_only(retina_data):
    plain, compiled = _trainer(retina_data), _trainer(retina_data, compile=True)
    assert plain.forward is plain.model
    # the compiled forward is a wrapper; checkpoints and the EMA keep the plain module's keys
    assert type(compiled.forward).__name__ == "OptimizedModule" and compiled.forward._orig_mod is compiled.model
    assert compiled.state_dict()["model"].keys() == plain.state_dict()["model"].keys()


def test_precision_bf16_autocasts_the_forward_and_fp32_does_not(retina_data):
    fp32, bf16 = _trainer(retina_data, ema=0.0), _trainer(retina_data, ema=0.0, precision="bf16")
    bf16.model.load_state_dict(fp32.model.state_dict())
    with torch.no_grad():
        plain = fp32.model.eval()(fp32._inputs("val", torch.arange(len(fp32.labels["val"]))))
    assert torch.equal(fp32.logits("val"), plain)
    # bf16 keeps 8 bits of mantissa: the logits move by about 1e-3 of their size, fp32's by none
    moved = float((bf16.logits("val") - plain).abs().max() / plain.abs().max())
    assert 1e-4 < moved < 0.05


def test_trainer_is_channels_last_on_the_cpu_too(retina_data):
    trainer = _trainer(retina_data)  # channels-last trains MedViT-28 1.3-1.4x faster on a CPU
    assert trainer._inputs("train", torch.arange(8)).is_contiguous(memory_format=torch.channels_last)
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_train_steps_drop_only_a_last_batch_of_one():
    assert [train_steps(n, 32) for n in (32, 33, 34, 64, 65, 1)] == [1, 1, 2, 2, 2, 1]


def test_flip_views_follow_the_datasets_training_flips():
    assert tta_flips("retinamnist") == ((), (-1,), (-2,), (-2, -1))  # fundus: no up
    assert tta_flips("pneumoniamnist") == ((), (-1,))  # chest X-ray: horizontal only


def test_flip_tta_is_reported_beside_and_never_selects(retina_data):
    plain = _trainer(retina_data, select_window=1, epochs=2)  # two epochs: a selection to compare
    list(plain.epochs())
    plain_result = plain.finish()
    with_tta = _trainer(retina_data, select_window=1, epochs=2, tta="flip")
    list(with_tta.epochs())
    result = with_tta.finish()
    assert "test_tta" not in plain_result
    # same training, same selected weights, same plain numbers: the views only add a report
    assert result["selected_epoch"] == plain_result["selected_epoch"]
    assert result["test"] == plain_result["test"]
    assert set(result["test_tta"]) >= {"acc", "auc", "qwk", "mae", "qwk_decoded", "mae_decoded"}
    assert set(result["val_tta"]) >= {"acc", "auc"}


def _pixel_model(trainer: Trainer) -> Trainer:
    """The trainer evaluating a random linear model of the pixels: flips change its output."""
    torch.manual_seed(0)
    trainer.ema = None
    trainer.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 28 * 28, 5))
    return trainer


def test_flip_tta_averages_the_views(retina_data):
    trainer = _pixel_model(_trainer(retina_data))
    views = [torch.softmax(trainer.logits("test", flip), 1).numpy() for flip in tta_flips("retinamnist")]
    assert np.allclose(trainer.tta_scores("test"), np.mean(views, axis=0), atol=1e-6)
    assert np.abs(trainer.tta_scores("test") - views[0]).max() > 1e-2  # the views differ on real images


def test_flip_tta_leaves_mirror_symmetric_images_unchanged(retina_data):
    trainer = _pixel_model(_trainer(retina_data))
    for split, images in trainer.images.items():
        mirrored = torch.maximum(images, images.flip(-1))
        trainer.images[split] = torch.maximum(mirrored, mirrored.flip(-2))
    symmetric = trainer.images["test"]
    assert torch.equal(symmetric, symmetric.flip(-1)) and torch.equal(symmetric, symmetric.flip(-2))
    plain = torch.softmax(trainer.logits("test"), 1).numpy()
    assert np.abs(trainer.tta_scores("test") - plain).max() < 1e-5
