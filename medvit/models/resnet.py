"""ResNet-18/50 baselines in the two forms the MedMNIST benchmark reports.

- ``*_28``: the stem is a 3x3 stride-1 conv with no max-pool, so a 28 px image keeps its
  resolution into ``layer1`` (28/14/7/4 through layer1..layer4 at 28 px).
- ``*_224``: the standard ImageNet stem (7x7 stride-2 conv + max-pool); ``forward`` resizes
  any input to 224 px (bilinear) first, as MedMNIST's "ResNet (224)" rows do.

Built from torchvision's ResNet, randomly initialised; nothing is downloaded. torchvision is
imported when a ResNet is built, not with this module: its import loads ``torch._dynamo``
(1.5 s on a CPU), which every ``medsweep train`` and every sweep trial's process paid before
it trained a MedViT.
``gradcam_layer()`` is ``layer4`` (4x4 at 28 px for the 28 forms, 7x7 for the 224 forms).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PRESETS", "MedMNISTResNet", "ResNetConfig", "resnet"]


@dataclass(frozen=True)
class ResNetConfig:
    description: str
    block: str  # torchvision's residual block: BasicBlock or Bottleneck
    layers: tuple[int, int, int, int]
    resize_to: int | None  # None: the 28 px stem, no resizing


PRESETS: dict[str, ResNetConfig] = {
    "resnet18_28": ResNetConfig("ResNet-18, 3x3 stem, native resolution", "BasicBlock", (2, 2, 2, 2), None),
    "resnet50_28": ResNetConfig("ResNet-50, 3x3 stem, native resolution", "Bottleneck", (3, 4, 6, 3), None),
    "resnet18_224": ResNetConfig("ResNet-18, ImageNet stem, input resized to 224", "BasicBlock", (2, 2, 2, 2), 224),
    "resnet50_224": ResNetConfig("ResNet-50, ImageNet stem, input resized to 224", "Bottleneck", (3, 4, 6, 3), 224),
}


class MedMNISTResNet(nn.Module):
    """torchvision's ResNet with a MedMNIST stem. It adopts the layers of a torchvision
    ``ResNet`` under their own names and in their order, so the weights a seed gives and the
    checkpoint keys are torchvision's; ``forward`` is torchvision's ``_forward_impl``."""

    def __init__(self, cfg: ResNetConfig, *, in_chans: int, num_classes: int):
        super().__init__()
        from torchvision.models import resnet as tv

        for name, layer in tv.ResNet(getattr(tv, cfg.block), list(cfg.layers), num_classes=num_classes).named_children():
            self.add_module(name, layer)
        self.resize_to = cfg.resize_to
        if cfg.resize_to is None:
            self.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        # the replaced stem gets the same init torchvision gives its convs
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        if self.resize_to is not None and x.shape[-2:] != (self.resize_to, self.resize_to):
            x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def gradcam_layer(self) -> nn.Module:
        return self.layer4


def resnet(name: str, *, in_chans: int, num_classes: int, img_size: int | None = None) -> MedMNISTResNet:
    # img_size is accepted for a uniform constructor signature; the 28 forms run at any size
    # and the 224 forms resize to 224 themselves.
    return MedMNISTResNet(PRESETS[name], in_chans=in_chans, num_classes=num_classes)
