"""MedViT (Manzari et al. 2023), built from its blocks: ECB, LTB, LFFN, MHCA, E-MHSA.

The stock presets follow the official implementation (stem of total stride 4, stage depths
small [3, 4, 10, 3], base [3, 4, 20, 3], large [3, 4, 30, 3], the official growing channel
lists: an LTB widens its stage, 192 -> 256, 384 -> 512, 768 -> 1024). They are meant for
224 px input. The ``medvit_28_*`` presets are this project's 28 px-native variants: a stem of
total stride 2 and shallower, narrower stages, so that the last stage is still 2x2 at 28 px.

Block layout (the official "next hybrid" pattern): the first stage is all ECBs; every other
stage ends with an LTB and a long stage has one every 5th block (third stage of small:
ECB x4, LTB, ECB x4, LTB).

Stage output sizes (H = W; stage strides 1, 2, 2, 2; every downsampling rounds up):

    input px           28           64           128           224
    stock stem (x4)    7/4/2/1      16/8/4/2     32/16/8/4     56/28/14/7
    28 px stem (x2)    14/7/4/2     32/16/8/4    64/32/16/8    112/56/28/14

``gradcam_layer()`` is the output of the deepest stage whose map is at least 4x4 at the
``img_size`` the model was built for (a 2x2 map can only say "which quadrant"): at 28 px the
third stage of the 28 px presets and the second of the stock presets; at 224 px the last.

Deliberate differences from the official code, each simpler and equivalent in intent:
keys/values are pooled with a 2-D ``sr x sr`` average pool (the official code pools the
flattened token sequence in 1-D), attention runs through ``scaled_dot_product_attention``,
and the LFFN has no inner shortcut (the block adds its output to ``x`` once).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PRESETS", "MedViT", "MedViTConfig", "medvit", "stage_sizes"]


@dataclass(frozen=True)
class MedViTConfig:
    description: str
    native_img_size: int
    depths: tuple[int, int, int, int]
    dims: tuple[int, int, int, int]  # ECB width per stage
    ltb_dims: tuple[int | None, int, int, int]  # LTB width per stage (None: no LTB)
    stem_chs: tuple[int, int, int] = (64, 32, 64)
    stem_strides: tuple[int, int, int, int] = (2, 1, 1, 2)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    head_dim: int = 32


STAGE_STRIDES = (1, 2, 2, 2)
GRADCAM_MIN_SIDE = 4
LTB_EVERY = 5  # a long stage gets an LTB every 5th block, as in the official stage 3

_STOCK = dict(native_img_size=224, dims=(96, 192, 384, 768), ltb_dims=(None, 256, 512, 1024))
# 28 px presets: stem stride 2, so the stages see 14/7/4/2 at 28 px; at those sizes full
# attention is already cheap, so keys/values are pooled only in the second stage.
_NATIVE_28 = dict(native_img_size=28, stem_strides=(1, 1, 1, 2), sr_ratios=(2, 2, 1, 1))

PRESETS: dict[str, MedViTConfig] = {
    "medvit_small": MedViTConfig("MedViT-S, official layout (224 px)", depths=(3, 4, 10, 3), **_STOCK),
    "medvit_base": MedViTConfig("MedViT-B, official layout (224 px)", depths=(3, 4, 20, 3), **_STOCK),
    "medvit_large": MedViTConfig("MedViT-L, official layout (224 px)", depths=(3, 4, 30, 3), **_STOCK),
    "medvit_28_tiny": MedViTConfig(
        "MedViT 28 px-native, tiny", depths=(1, 1, 2, 1), dims=(32, 64, 128, 192),
        ltb_dims=(None, 128, 128, 256), stem_chs=(32, 16, 32), **_NATIVE_28),
    "medvit_28_small": MedViTConfig(
        "MedViT 28 px-native, small", depths=(2, 2, 4, 2), dims=(64, 96, 192, 384),
        ltb_dims=(None, 128, 256, 512), stem_chs=(32, 32, 64), **_NATIVE_28),
    "medvit_28_base": MedViTConfig(
        "MedViT 28 px-native, base", depths=(3, 4, 5, 3), dims=(96, 192, 384, 512),
        ltb_dims=(None, 256, 512, 640), **_NATIVE_28),
}


def stage_sizes(cfg: MedViTConfig, img_size: int) -> list[int]:
    """Side of each stage's output map for a square input (every stride-2 op rounds up)."""
    side = img_size
    for s in cfg.stem_strides:
        side = -(-side // s)
    sizes = []
    for s in STAGE_STRIDES:
        side = -(-side // s)
        sizes.append(side)
    return sizes


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__(
            nn.Conv2d(in_chs, out_chs, 3, stride, padding=1, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(inplace=True),
        )


class PatchEmbed(nn.Module):
    """Changes resolution and width between blocks: avg-pool 2 (if stride 2) + 1x1 conv + BN."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        if stride == 1 and in_chs == out_chs:
            self.proj = nn.Identity()
        else:
            self.proj = nn.Sequential(
                # ceil_mode keeps odd maps' last row/column: 7 -> 4 -> 2 -> 1
                nn.AvgPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity(),
                nn.Conv2d(in_chs, out_chs, 1, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x):
        return self.proj(x)


class MHCA(nn.Sequential):
    """Multi-head convolutional attention: a grouped 3x3 conv, one group per head."""

    def __init__(self, dim: int, head_dim: int):
        if dim % head_dim:
            raise ValueError(f"MHCA width {dim} is not a multiple of head_dim {head_dim}")
        super().__init__(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim // head_dim, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 1, bias=False),
        )


class SqueezeExcite(nn.Module):
    def __init__(self, dim: int, squeeze: int):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(dim, squeeze), nn.ReLU(inplace=True), nn.Linear(squeeze, dim), nn.Hardsigmoid()
        )

    def forward(self, x):
        return x * self.fc(x.mean((2, 3)))[:, :, None, None]


class LFFN(nn.Sequential):
    """Locality feed-forward: an inverted residual (1x1 expand, depthwise 3x3, SE, 1x1)."""

    def __init__(self, dim: int, expand: int):
        hidden = dim * expand
        super().__init__(
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Hardswish(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Hardswish(inplace=True),
            # the official code squeezes to hidden / dim = `expand` channels
            SqueezeExcite(hidden, expand),
            nn.Conv2d(hidden, dim, 1, bias=False),
            nn.BatchNorm2d(dim),
        )


class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch per sample while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        # Scale the (B, 1, 1, 1) mask, not x: one pass over the activations instead of two.
        keep = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(1 - self.p).div_(1 - self.p)
        return x * keep


class EfficientMHSA(nn.Module):
    """Multi-head self-attention whose keys/values come from an ``sr x sr`` average-pooled map."""

    def __init__(self, dim: int, head_dim: int, sr_ratio: int):
        super().__init__()
        self.heads = dim // head_dim
        self.sr_ratio = sr_ratio
        self.kv_norm = nn.BatchNorm2d(dim) if sr_ratio > 1 else nn.Identity()
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, t):  # (B, N, C) -> (B, heads, N, C / heads)
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x):
        B, C, H, W = x.shape
        # Clamp so that small inputs (stock presets at 28 px) still pool to at least 1x1.
        sr = min(self.sr_ratio, H, W)
        kv_map = self.kv_norm(F.avg_pool2d(x, sr, ceil_mode=True)) if self.sr_ratio > 1 else x
        q = self._heads(self.q(x.flatten(2).transpose(1, 2)))
        k, v = map(self._heads, self.kv(kv_map.flatten(2).transpose(1, 2)).chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return self.proj(out).transpose(1, 2).reshape(B, C, H, W)


class ECB(nn.Module):
    """Efficient convolution block: local token mixing (MHCA) then an LFFN."""

    def __init__(self, in_chs: int, dim: int, stride: int, head_dim: int, drop_path: float):
        super().__init__()
        self.patch_embed = PatchEmbed(in_chs, dim, stride)
        self.mhca = MHCA(dim, head_dim)
        self.norm = nn.BatchNorm2d(dim)
        self.lffn = LFFN(dim, expand=3)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = self.patch_embed(x)
        x = x + self.drop_path(self.mhca(x))
        return x + self.drop_path(self.lffn(self.norm(x)))


class LTB(nn.Module):
    """Local transformer block: global attention on ~3/4 of the channels, MHCA on the rest.

    The attention branch works at width ``attn_dim``; the convolution branch reads the
    attention branch's output through a 1x1 projection, and the two are concatenated back to
    ``dim`` channels before the LFFN.
    """

    def __init__(self, in_chs: int, dim: int, stride: int, head_dim: int, sr_ratio: int,
                 drop_path: float, attn_ratio: float = 0.75):
        super().__init__()
        if dim % head_dim or dim < 2 * head_dim:
            raise ValueError(f"LTB width {dim} must be a multiple of {head_dim} and >= {2 * head_dim}")
        # both branches need whole heads: round to head_dim, keep at least one head each
        attn_dim = int(dim * attn_ratio + head_dim / 2) // head_dim * head_dim
        attn_dim = min(max(attn_dim, head_dim), dim - head_dim)
        self.patch_embed = PatchEmbed(in_chs, attn_dim, stride)
        self.attn_norm = nn.BatchNorm2d(attn_dim)
        self.attn = EfficientMHSA(attn_dim, head_dim, sr_ratio)
        self.conv_proj = PatchEmbed(attn_dim, dim - attn_dim, 1)
        self.mhca = MHCA(dim - attn_dim, head_dim)
        self.norm = nn.BatchNorm2d(dim)
        self.lffn = LFFN(dim, expand=2)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = self.patch_embed(x)
        x = x + self.drop_path(self.attn(self.attn_norm(x)))
        local = self.conv_proj(x)
        local = local + self.drop_path(self.mhca(local))
        x = torch.cat([x, local], dim=1)
        return x + self.drop_path(self.lffn(self.norm(x)))


class MedViT(nn.Module):
    def __init__(self, cfg: MedViTConfig, *, in_chans: int, num_classes: int,
                 img_size: int | None = None, drop_path: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.img_size = img_size or cfg.native_img_size
        c0, c1, c2 = cfg.stem_chs
        self.stem = nn.Sequential(*(
            ConvBNReLU(i, o, s)
            for i, o, s in zip((in_chans, c0, c1, c2), (c0, c1, c2, c2), cfg.stem_strides)
        ))
        rates = iter(torch.linspace(0, drop_path, sum(cfg.depths)).tolist())  # deeper drops more
        chs, stages = c2, []
        for i, depth in enumerate(cfg.depths):
            blocks = []
            for j in range(depth):
                stride = STAGE_STRIDES[i] if j == 0 else 1
                rate = next(rates)
                is_ltb = cfg.ltb_dims[i] is not None and ((j + 1) % LTB_EVERY == 0 or j == depth - 1)
                if is_ltb:
                    out = cfg.ltb_dims[i]
                    blocks.append(LTB(chs, out, stride, cfg.head_dim, cfg.sr_ratios[i], rate))
                else:
                    out = cfg.dims[i]
                    blocks.append(ECB(chs, out, stride, cfg.head_dim, rate))
                chs = out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.BatchNorm2d(chs)
        self.head = nn.Linear(chs, num_classes)
        self.apply(_init_weights)

    def forward_features(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward(self, x):
        return self.head(self.forward_features(x).mean((2, 3)))

    def gradcam_layer(self) -> nn.Module:
        sizes = stage_sizes(self.cfg, self.img_size)
        deepest = max((i for i, side in enumerate(sizes) if side >= GRADCAM_MIN_SIDE), default=0)
        return self.stages[deepest]


def _init_weights(m: nn.Module) -> None:
    # as the official code: small truncated-normal weights, BN starts as the identity
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def medvit(name: str, *, in_chans: int, num_classes: int, img_size: int | None = None,
           drop_path: float = 0.0) -> MedViT:
    return MedViT(PRESETS[name], in_chans=in_chans, num_classes=num_classes,
                  img_size=img_size, drop_path=drop_path)
