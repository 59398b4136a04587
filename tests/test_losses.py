"""Tests for medvit.losses: the Ordinal Loss against a per-sample, per-pair reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medvit.losses import OrdinalLoss, SmoothedBCEWithLogits, loss_for_task, rank_term


# --------------------------------------------------------------------------- references


def reference_rank(probs_row, y: int, margin: float, reversed_sign: bool = False):
    """rank(p, y) for one sample, one pair at a time, straight from the formula.

    ``reversed_sign=True`` evaluates the paper's printed equations literally:
    MarginRank(p_i, p_j, t_ij) = max(0, -t_ij * (p_i - p_j) + margin).
    """
    k = probs_row.shape[0]
    total = probs_row.new_zeros(())
    for i in range(k):
        for j in range(i + 1, k):
            t = 1.0 if y > (i + j) / 2 else -1.0
            if reversed_sign:
                term = margin - t * (probs_row[i] - probs_row[j])
            else:
                term = margin - t * (probs_row[j] - probs_row[i])
            total = total + torch.clamp_min(term, 0.0)
    return total


def reference_loss(logits, target, alpha: float, margin: float, reversed_sign: bool = False):
    """mean over samples of alpha * rank + (1 - alpha) * CE, one sample at a time."""
    per_sample = []
    for n in range(logits.shape[0]):
        row = logits[n]
        y = int(target[n])
        probs = torch.exp(row - torch.logsumexp(row, dim=0))
        ce = torch.logsumexp(row, dim=0) - row[y]
        rank = reference_rank(probs, y, margin, reversed_sign)
        per_sample.append(alpha * rank + (1.0 - alpha) * ce)
    return torch.stack(per_sample).mean()


def random_batch(n: int, k: int, seed: int, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(n, k, generator=g, dtype=torch.float64)).requires_grad_(True)
    target = torch.randint(0, k, (n,), generator=g)
    return logits, target


# --------------------------------------------------------------------------- value and gradient


@pytest.mark.parametrize("k", [2, 3, 5, 8])
@pytest.mark.parametrize("alpha,margin", [(0.1, 0.1), (0.2, 0.1), (0.5, 0.05), (0.9, 0.3), (1.0, 0.1), (0.3, 0.0)])
def test_ordinal_loss_matches_double_loop_reference(k, alpha, margin):
    for seed in range(3):
        logits, target = random_batch(12, k, seed=1000 * k + seed)
        ours = OrdinalLoss(alpha, margin)(logits, target)
        (g_ours,) = torch.autograd.grad(ours, logits)

        logits_ref = logits.detach().clone().requires_grad_(True)
        ref = reference_loss(logits_ref, target, alpha, margin)
        (g_ref,) = torch.autograd.grad(ref, logits_ref)

        assert ours.dtype == torch.float64 and ours.ndim == 0
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_rank_term_per_sample_matches_reference(k):
    g = torch.Generator().manual_seed(k)
    probs = torch.softmax(torch.randn(20, k, generator=g, dtype=torch.float64), dim=1)
    target = torch.randint(0, k, (20,), generator=g)
    for margin in (0.0, 0.1, 0.25):
        ours = rank_term(probs, target, margin)
        assert ours.shape == (20,)
        ref = torch.stack([reference_rank(probs[n], int(target[n]), margin) for n in range(20)])
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_half_way_label_gets_minus_one():
    # K = 3, y = 1, pair (0, 2): y == (0 + 2) / 2, so t = -1 (the "otherwise" branch), i.e.
    # the term is max(0, margin + (p_2 - p_0)).
    probs = torch.tensor([[0.5, 0.2, 0.3]], dtype=torch.float64)
    y = torch.tensor([1])
    m = 0.1
    expected = (
        max(0.0, m - (0.2 - 0.5))  # (0,1): y > 0.5 -> t = +1
        + max(0.0, m + (0.3 - 0.5))  # (0,2): y == 1 -> t = -1
        + max(0.0, m + (0.3 - 0.2))  # (1,2): y < 1.5 -> t = -1
    )
    assert rank_term(probs, y, m).item() == pytest.approx(expected, abs=1e-15)


def test_single_class_has_no_pairs():
    probs = torch.ones(4, 1, dtype=torch.float64)
    assert torch.equal(rank_term(probs, torch.zeros(4, dtype=torch.long), 0.1), torch.zeros(4, dtype=torch.float64))


# --------------------------------------------------------------------------- alpha = 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [2, 5, 8])
def test_alpha_zero_is_cross_entropy_bit_for_bit(dtype, k):
    g = torch.Generator().manual_seed(7)
    logits = (3 * torch.randn(64, k, generator=g)).to(dtype).requires_grad_(True)
    target = torch.randint(0, k, (64,), generator=g)
    ours = OrdinalLoss(0.0, 0.1)(logits, target)
    (g_ours,) = torch.autograd.grad(ours, logits)
    ce = F.cross_entropy(logits, target)
    (g_ce,) = torch.autograd.grad(ce, logits)
    assert torch.equal(ours, ce)
    assert torch.equal(g_ours, g_ce)
    via_task = loss_for_task("ordinal-regression", alpha=0.0)(logits, target)
    assert torch.equal(via_task, ce)


# --------------------------------------------------------------------------- direction


def test_moving_mass_toward_label_lowers_rank_term():
    k, y, m = 5, 3, 0.1
    target = torch.tensor([y])
    values = []
    # From uniform logits, raise the label's logit: pairs without the label keep p_j - p_i = 0,
    # pairs with it improve, so the rank term falls until every such pair clears the margin.
    for shift in (0.0, 0.05, 0.1, 0.2, 0.3):
        logits = torch.zeros(1, k, dtype=torch.float64)
        logits[0, y] = shift
        values.append(rank_term(torch.softmax(logits, 1), target, m).item())
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[0] == pytest.approx(m * k * (k - 1) / 2)


def unimodal(center: float, k: int, width: float = 0.8) -> torch.Tensor:
    grades = torch.arange(k, dtype=torch.float64)
    return torch.softmax(-((grades - center) ** 2) / (2 * width**2), dim=0).unsqueeze(0)


@pytest.mark.parametrize("k,y,far", [(5, 0, 4), (5, 4, 0), (5, 2, 0), (8, 6, 1)])
def test_unimodal_peak_at_label_beats_peak_far_away(k, y, far):
    target = torch.tensor([y])
    at_label = rank_term(unimodal(y, k), target, 0.1).item()
    far_away = rank_term(unimodal(far, k), target, 0.1).item()
    assert at_label < far_away
    # And the full loss agrees, for any alpha > 0 (CE also prefers the peak at the label).
    for alpha in (0.2, 1.0):
        loss = OrdinalLoss(alpha, 0.1)
        assert loss(torch.log(unimodal(y, k)), target) < loss(torch.log(unimodal(far, k)), target)


def test_paper_literal_sign_is_not_what_we_compute():
    # The printed equations, taken literally, evaluate max(0, margin - t_ij * (p_i - p_j)).
    logits, target = random_batch(16, 5, seed=3)
    probs = torch.softmax(logits.detach(), 1)
    ours = rank_term(probs, target, 0.1)
    literal = torch.stack([reference_rank(probs[n], int(target[n]), 0.1, reversed_sign=True) for n in range(16)])
    assert not torch.allclose(ours, literal)

    # Along the same path toward the label, ours falls while the literal version rises.
    k, y, m = 5, 3, 0.1
    ours_path, literal_path = [], []
    for shift in (0.0, 0.1, 0.2, 0.3, 1.0, 3.0):
        row = torch.zeros(k, dtype=torch.float64)
        row[y] = shift
        p = torch.softmax(row, 0)
        ours_path.append(rank_term(p.unsqueeze(0), torch.tensor([y]), m).item())
        literal_path.append(reference_rank(p, y, m, reversed_sign=True).item())
    assert all(a >= b for a, b in zip(ours_path, ours_path[1:])) and ours_path[0] > ours_path[-1]
    assert all(a < b for a, b in zip(literal_path, literal_path[1:])), literal_path

    # And the peak-at-label vs far-away comparison flips under the literal sign.
    at_label = unimodal(y, k)[0]
    far_away = unimodal(0, k)[0]
    assert reference_rank(at_label, y, m, reversed_sign=True) > reference_rank(far_away, y, m, reversed_sign=True)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "x", None])
def test_alpha_validation(alpha):
    with pytest.raises(ValueError, match="alpha"):
        OrdinalLoss(alpha)
    with pytest.raises(ValueError, match="alpha"):
        loss_for_task("ordinal-regression", alpha=alpha)


@pytest.mark.parametrize("margin", [-0.01, float("nan"), float("inf"), "x"])
def test_margin_validation(margin):
    with pytest.raises(ValueError, match="margin"):
        OrdinalLoss(0.2, margin)
    with pytest.raises(ValueError, match="margin"):
        rank_term(torch.ones(2, 3) / 3, torch.zeros(2, dtype=torch.long), margin)


def test_boundaries_are_accepted():
    assert OrdinalLoss(0.0).alpha == 0.0
    assert OrdinalLoss(1.0, 0.0).margin == 0.0


def test_shape_validation():
    loss = OrdinalLoss(0.2)
    with pytest.raises(ValueError, match="logits"):
        loss(torch.randn(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        loss(torch.randn(4, 3), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        rank_term(torch.rand(4, 3), torch.zeros(4))


# --------------------------------------------------------------------------- loss_for_task


def test_loss_for_task_dispatch_and_forward():
    g = torch.Generator().manual_seed(0)

    mc = loss_for_task("multi-class")
    assert type(mc) is nn.CrossEntropyLoss
    out = mc(torch.randn(8, 9, generator=g), torch.randint(0, 9, (8,), generator=g))
    assert out.ndim == 0 and torch.isfinite(out)

    binary = loss_for_task("binary-class")
    assert type(binary) is nn.CrossEntropyLoss
    out = binary(torch.randn(8, 2, generator=g), torch.randint(0, 2, (8,), generator=g))
    assert out.ndim == 0 and torch.isfinite(out)

    ml = loss_for_task("multi-label, binary-class")
    assert type(ml) is SmoothedBCEWithLogits
    target = torch.randint(0, 2, (8, 14), generator=g).float()
    out = ml(torch.randn(8, 14, generator=g), target)
    assert out.ndim == 0 and torch.isfinite(out)

    ordinal = loss_for_task("ordinal-regression", alpha=0.2, margin=0.1)
    assert isinstance(ordinal, OrdinalLoss)
    assert (ordinal.alpha, ordinal.margin) == (0.2, 0.1)
    logits = torch.randn(8, 5, generator=g, requires_grad=True)
    out = ordinal(logits, torch.randint(0, 5, (8,), generator=g))
    assert out.ndim == 0 and torch.isfinite(out)
    out.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()

    assert isinstance(loss_for_task("ordinal-regression"), OrdinalLoss)


@pytest.mark.parametrize("task", ["multi-class", "binary-class", "multi-label, binary-class"])
def test_alpha_on_non_ordinal_task_is_rejected(task):
    with pytest.raises(ValueError) as err:
        loss_for_task(task, alpha=0.2)
    msg = str(err.value)
    assert msg.startswith("alpha: the Ordinal Loss applies to ordinal-regression tasks only")
    assert "alpha=0.2" in msg and f"'{task}'" in msg


def test_unknown_task_names_allowed_ones():
    with pytest.raises(ValueError) as err:
        loss_for_task("regression")
    msg = str(err.value)
    assert "regression" in msg
    for task in ("multi-class", "binary-class", "multi-label, binary-class", "ordinal-regression"):
        assert task in msg


def test_float32_and_half_inputs_are_finite():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 5, generator=g)
    target = torch.randint(0, 5, (16,), generator=g)
    loss = OrdinalLoss(0.3)
    out32 = loss(logits, target)
    assert out32.dtype == torch.float32
    out16 = loss(logits.to(torch.bfloat16), target)
    assert out16.dtype == torch.float32 and math.isfinite(out16.item())
