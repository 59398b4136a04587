"""Model registry: every architecture the sweeps can name, built by ``create_model``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch.nn.functional as F
from torch import nn

from medvit.families import model_family

from . import medvit as _medvit
from . import resnet as _resnet

__all__ = ["IMG_SIZES", "MODELS", "RESIZE_MODES", "InputResize", "ModelSpec", "count_parameters", "create_model", "list_models"]

IMG_SIZES = (28, 64, 128, 224)  # the MedMNIST resolutions (medvit.data.SIZES)
# `resize` modes -> F.interpolate's: "nearest-exact" samples pixel centres as PIL's NEAREST does
# (MedMNIST v2's 224 rows); for the integer factor 28 -> 224 it equals plain nearest.
RESIZE_MODES = {"nearest": "nearest-exact", "bilinear": "bilinear"}


@dataclass(frozen=True)
class ModelSpec:
    family: str
    constructor: Callable[..., nn.Module]  # (*, in_chans, num_classes, img_size, **kwargs)
    description: str
    native_img_size: int


MODELS: dict[str, ModelSpec] = {
    **{
        name: ModelSpec(model_family(name), partial(_medvit.medvit, name), cfg.description, cfg.native_img_size)
        for name, cfg in _medvit.PRESETS.items()
    },
    **{
        name: ModelSpec(model_family(name), partial(_resnet.resnet, name), cfg.description, cfg.resize_to or 28)
        for name, cfg in _resnet.PRESETS.items()
    },
}


def list_models() -> list[str]:
    return list(MODELS)


def create_model(name: str, *, in_chans: int, num_classes: int, img_size: int = 28, resize: int | None = None,
                 resize_mode: str = "nearest", **kwargs) -> nn.Module:
    """Build a freshly initialised model for ``img_size`` px inputs with ``in_chans`` channels.

    With ``resize``, the model resizes every input to ``resize`` px first (``resize_mode``
    nearest or bilinear) and is built for that size: what the MedViT paper's protocol does to
    the 28 px images, on the device, so the input pipeline stays at the stored size. Extra
    keyword arguments go to the family's constructor (MedViT: ``drop_path``).
    """
    if name not in MODELS:
        raise ValueError(f"model: unknown {name!r}; allowed: {', '.join(MODELS)}")
    if img_size not in IMG_SIZES:
        raise ValueError(f"img_size: unsupported {img_size!r}; allowed: {', '.join(map(str, IMG_SIZES))}")
    if in_chans < 1 or num_classes < 1:
        raise ValueError(f"in_chans and num_classes must be >= 1, got {in_chans} and {num_classes}")
    if resize is not None and not (isinstance(resize, int) and resize >= 8):
        raise ValueError(f"resize: {resize!r} is not a side in px; allowed: an integer >= 8")
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode: unknown {resize_mode!r}; allowed: {', '.join(RESIZE_MODES)}")
    side = resize or img_size
    model = MODELS[name].constructor(in_chans=in_chans, num_classes=num_classes, img_size=side, **kwargs)
    if side != img_size:
        model.register_forward_pre_hook(InputResize(side, resize_mode))
    return model


class InputResize:
    """A forward pre-hook that resizes the input batch to ``side`` px. A hook, not a wrapping
    module, so the model keeps its parameter names (checkpoints) and its ``gradcam_layer``."""

    def __init__(self, side: int, mode: str):
        self.side = side
        self.mode = RESIZE_MODES[mode]

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        (x, *rest) = args
        if x.shape[-1] != self.side or x.shape[-2] != self.side:
            x = F.interpolate(x, size=(self.side, self.side), mode=self.mode,
                              **({"align_corners": False} if self.mode == "bilinear" else {}))
        return (x, *rest)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
