"""Model families, by name: the one rule for "is this a MedViT", read by the config (stochastic
depth is MedViT's), the model registry (``ModelSpec.family``) and the analysis (a table row or
figure per family). Imports no torch, so the config can ask it while validating."""

from __future__ import annotations

from typing import Any

__all__ = ["MEDVIT", "RESNET", "FAMILIES", "model_family"]

MEDVIT = "medvit"
RESNET = "resnet"
FAMILIES: tuple[str, ...] = (MEDVIT, RESNET)  # every preset name starts with its family's


def model_family(model: Any) -> str:
    """``medvit_28_tiny`` -> ``medvit``; ``resnet18_28`` -> ``resnet``; another name (a model
    of a results table written elsewhere) is its own family; no name is ``unknown``."""
    name = str(model or "").lower()
    return next((family for family in FAMILIES if name.startswith(family)), name or "unknown")
