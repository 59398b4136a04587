"""Model registry: every architecture the sweeps can name, built by ``create_model``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from . import medvit as _medvit
from . import resnet as _resnet

__all__ = ["IMG_SIZES", "MODELS", "ModelSpec", "count_parameters", "create_model", "list_models"]

IMG_SIZES = (28, 64, 128, 224)  # the MedMNIST resolutions (medvit.data.SIZES)


@dataclass(frozen=True)
class ModelSpec:
    family: str
    constructor: Callable[..., nn.Module]  # (*, in_chans, num_classes, img_size, **kwargs)
    description: str
    native_img_size: int


MODELS: dict[str, ModelSpec] = {
    **{
        name: ModelSpec("medvit", partial(_medvit.medvit, name), cfg.description, cfg.native_img_size)
        for name, cfg in _medvit.PRESETS.items()
    },
    **{
        name: ModelSpec("resnet", partial(_resnet.resnet, name), cfg.description, cfg.resize_to or 28)
        for name, cfg in _resnet.PRESETS.items()
    },
}


def list_models() -> list[str]:
    return list(MODELS)


def create_model(name: str, *, in_chans: int, num_classes: int, img_size: int = 28, **kwargs) -> nn.Module:
    """Build a freshly initialised model for ``img_size`` px inputs with ``in_chans`` channels.

    Extra keyword arguments go to the family's constructor (MedViT: ``drop_path``).
    """
    if name not in MODELS:
        raise ValueError(f"model: unknown {name!r}; allowed: {', '.join(MODELS)}")
    if img_size not in IMG_SIZES:
        raise ValueError(f"img_size: unsupported {img_size!r}; allowed: {', '.join(map(str, IMG_SIZES))}")
    if in_chans < 1 or num_classes < 1:
        raise ValueError(f"in_chans and num_classes must be >= 1, got {in_chans} and {num_classes}")
    return MODELS[name].constructor(in_chans=in_chans, num_classes=num_classes, img_size=img_size, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
