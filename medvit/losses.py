"""Training losses: cross-entropy, BCE-with-logits, and the Ordinal Loss.

The Ordinal Loss (paper section 2.2.3) mixes a pairwise margin-ranking term over the softmax
probabilities with cross-entropy.  See :class:`OrdinalLoss` for the exact formula and for the
note on the sign of the paper's printed equations.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from medvit.tasks import BINARY, MULTI_CLASS, MULTI_LABEL, ORDINAL, TASKS

__all__ = [
    "MULTI_CLASS",
    "BINARY",
    "MULTI_LABEL",
    "ORDINAL",
    "TASKS",
    "OrdinalLoss",
    "SmoothedBCEWithLogits",
    "rank_term",
    "loss_for_task",
]


def _check_alpha(alpha: float) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha: must be a number in [0, 1]; got {alpha!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"alpha: must be in [0, 1]; got {alpha!r}")
    return value


def _check_margin(margin: float) -> float:
    try:
        value = float(margin)
    except (TypeError, ValueError):
        raise ValueError(f"margin: must be a finite number >= 0; got {margin!r}") from None
    if not (value >= 0.0 and math.isfinite(value)):  # also rejects NaN
        raise ValueError(f"margin: must be a finite number >= 0; got {margin!r}")
    return value


@functools.lru_cache(maxsize=64)
def _pair_buffers(
    num_classes: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index buffers for the class pairs ``i < j`` of ``num_classes`` classes, built once per
    ``(K, device, dtype)``.

    Returns ``(lo, hi, sign)``: ``lo``/``hi`` are int64 ``(P,)`` with ``P = K (K - 1) / 2`` the
    smaller and larger class of each pair, and ``sign`` is ``(K, P)`` in ``dtype`` with
    ``sign[y, p] = +1`` if ``y > (lo[p] + hi[p]) / 2`` else ``-1`` (the ``t_ij`` of every pair
    for every possible label; compared as ``2 y > i + j`` in integers, so the half-way case is
    exact).  Treat the returned tensors as read-only: they are shared.
    """
    lo, hi = torch.triu_indices(num_classes, num_classes, offset=1)
    labels = torch.arange(num_classes).unsqueeze(1)
    sign = torch.where(2 * labels > (lo + hi).unsqueeze(0), 1.0, -1.0).to(dtype)
    return lo.to(device), hi.to(device), sign.to(device)


def rank_term(probs: torch.Tensor, target: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Per-sample rank term of the Ordinal Loss, shape ``(N,)``.

    ``rank(p, y) = sum_{i < j} max(0, margin - t_ij * (p_j - p_i))`` with
    ``t_ij = +1 if y > (i + j) / 2 else -1``.

    ``probs`` is ``(N, K)`` (normally a softmax output; any values are accepted) and ``target``
    ``(N,)`` integer labels in ``[0, K)``.  Vectorised over samples and pairs; differentiable
    with respect to ``probs``.
    """
    margin = _check_margin(margin)
    if probs.ndim != 2:
        raise ValueError(f"probs: expected shape (N, K); got {tuple(probs.shape)}")
    if target.ndim != 1 or target.shape[0] != probs.shape[0]:
        raise ValueError(
            f"target: expected shape ({probs.shape[0]},) to match probs {tuple(probs.shape)}; "
            f"got {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"target: expected integer class labels; got dtype {target.dtype}")
    lo, hi, sign = _pair_buffers(probs.shape[1], probs.device, probs.dtype)
    # (N, P): p_j - p_i for every pair, and t_ij for every sample's label.
    diff = probs.index_select(1, hi) - probs.index_select(1, lo)
    t = sign.index_select(0, target.long())
    return torch.clamp_min(margin - t * diff, 0.0).sum(dim=1)


class OrdinalLoss(nn.Module):
    """Ordinal Loss for ordinal-regression tasks (RetinaMNIST).

    With ``p = softmax(logits)`` over ``K`` ordered classes and integer label ``y``::

        rank(p, y) = sum over class pairs i < j of  max(0, margin - t_ij * (p_j - p_i))
        t_ij       = +1 if y > (i + j) / 2   (label nearer the higher class j)
                     -1 otherwise            (nearer i, or exactly half-way)
        loss       = mean over the batch of  alpha * rank(p, y) + (1 - alpha) * CE(logits, y)

    Every pair of classes is pushed to give the class nearer the true grade at least ``margin``
    more probability, so the predicted distribution becomes unimodal around the label.

    Note on the paper: its printed equations (2)-(4) evaluate
    ``max(0, margin - t_ij * (p_i - p_j))``, i.e. the direction is reversed and, taken
    literally, they push probability mass *away* from the label.  This class implements the
    intent stated in the paper's text (mass toward the label), as written above.

    ``alpha = 0`` is exactly ``F.cross_entropy`` (bit for bit); ``alpha = 1`` is the rank term
    alone.  Called as ``loss(logits (N, K), target (N,) int64) -> scalar``.  The pair index
    buffers are built once per ``(K, device, dtype)`` and cached.
    """

    def __init__(self, alpha: float, margin: float = 0.1, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.alpha = _check_alpha(alpha)
        self.margin = _check_margin(margin)
        self.label_smoothing = label_smoothing

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, margin={self.margin}, label_smoothing={self.label_smoothing}"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2:
            raise ValueError(f"logits: expected shape (N, K); got {tuple(logits.shape)}")
        if self.alpha == 0.0:
            # Return the CE term alone rather than `0 * rank + 1 * ce`: the contract is that
            # alpha = 0 *is* cross-entropy, bit for bit, in value and gradient.  Adding a zeroed
            # rank term would not be safe for that: 0 * inf and 0 * nan are nan (a non-finite
            # probability would poison a loss that plain CE keeps finite), and it would build a
            # useless autograd graph.  Skipping it also saves the work.
            return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        # Softmax in at least float32 (half-precision logits lose the small probability
        # differences the margin compares); float64 stays float64.
        work_dtype = torch.promote_types(logits.dtype, torch.float32)
        probs = torch.softmax(logits, dim=1, dtype=work_dtype)
        rank = rank_term(probs, target, self.margin).mean()
        if self.alpha == 1.0:
            # Same reasoning: no `0 * ce` term.
            return rank
        ce = F.cross_entropy(logits.to(work_dtype), target, label_smoothing=self.label_smoothing)
        return self.alpha * rank + (1.0 - self.alpha) * ce


class SmoothedBCEWithLogits(nn.Module):
    """BCE-with-logits whose 0/1 targets are pulled toward 1/2 by ``label_smoothing / 2``."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return F.binary_cross_entropy_with_logits(logits, target)


def loss_for_task(task: str, alpha: float = 0.0, margin: float = 0.1, label_smoothing: float = 0.0) -> nn.Module:
    """The training loss for a medmnist task string, called as ``loss(logits, target)``.

    - ``"multi-label, binary-class"``: ``nn.BCEWithLogitsLoss()``, target float ``(N, L)``.
    - ``"ordinal-regression"``: ``OrdinalLoss(alpha, margin)``, target int64 ``(N,)``.
    - ``"multi-class"``, ``"binary-class"``: ``nn.CrossEntropyLoss()``, target int64 ``(N,)``
      (binary tasks use two logits).

    ``alpha > 0`` on a non-ordinal task is a ``ValueError``: the Ordinal Loss is only defined
    for ordinal tasks and silently ignoring it would misreport a sweep.
    """
    if task not in TASKS:
        allowed = ", ".join(repr(t) for t in TASKS)
        raise ValueError(f"task: unknown task {task!r}; allowed: {allowed}")
    alpha = _check_alpha(alpha)
    margin = _check_margin(margin)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing: must be in [0, 1); got {label_smoothing!r}")
    if task == ORDINAL:
        return OrdinalLoss(alpha, margin, label_smoothing)
    if alpha > 0.0:
        raise ValueError(
            "alpha: the Ordinal Loss applies to ordinal-regression tasks only; "
            f"got alpha={alpha} for task '{task}'"
        )
    if task == MULTI_LABEL:
        return SmoothedBCEWithLogits(label_smoothing)
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
