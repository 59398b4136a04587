"""Batched, on-device data augmentation: random scaling, rotation, cropping and horizontal flip.

The paper trains with random scaling, rotation, cropping and horizontal flipping. Here all four
are one random affine map per sample, applied to the whole batch by one ``F.affine_grid`` +
``F.grid_sample`` call on the images' device (no per-sample Python loop, no PIL).

``AugmentConfig`` fields (0 switches a knob off):

* ``scale``: maximum relative zoom; 0.1 draws a zoom factor uniformly in [0.9, 1.1] (> 1 zooms in).
* ``rotation``: maximum rotation in degrees, drawn uniformly in [-rotation, +rotation].
* ``crop``: maximum random-crop shift as a fraction of the image side, drawn uniformly per axis
  in [-crop, +crop] (the view window moves; pixels that leave on one side are refilled by
  padding on the other).
* ``hflip``: probability of a horizontal (left-right) mirror.

Presets, chosen for 28 px images (at 28 px one pixel is 3.6 % of the side, so shifts and zooms
stay within a few pixels and small lesions or organ boundaries are not pushed out of view):

| preset | scale | zoom range  | rotation | crop (shift)      | hflip |
|--------|-------|-------------|----------|-------------------|-------|
| off    | 0     | 1           | 0        | 0                 | 0     |
| light  | 0.05  | 0.95 - 1.05 | +-10 deg | 0.05 (~1.4 px)    | 0.5   |
| medium | 0.10  | 0.90 - 1.10 | +-15 deg | 0.10 (~2.8 px)    | 0.5   |
| strong | 0.20  | 0.80 - 1.20 | +-30 deg | 0.15 (~4.2 px)    | 0.5   |

Horizontal flips mirror anatomy (a chest X-ray's heart moves to the other side); the paper flips
anyway, and every preset except ``off`` follows it. Use a dict (``{"hflip": 0, ...}``) to drop it.

Padding: ``"reflection"`` by default. Pixels sampled outside the image then mirror the border
instead of being a constant. Two reasons: (1) the trainer may call this before or after
normalising, and a constant 0 means "black" in one case and "mean grey" in the other, while a
reflection means the same in both; (2) many MedMNIST sets fill the whole frame (pathology,
blood smears, dermatoscopy, OCT), where black corners after a rotation are an artefact that test
images never show. The price is a mirrored band a few pixels wide at the border, which at these
strengths is small. ``padding_mode="zeros"`` (torchvision's default fill) is available.

Randomness: each call draws exactly ``5 * B`` uniforms from ``generator`` (whatever the config),
so a seeded generator gives the same augmentation on every run. Parameters are drawn on the
generator's device (CPU or CUDA) and moved to the images' device if the two differ.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "AUGMENT_PRESETS", "augment_config", "augment_batch"]

# field -> (upper bound, whether the bound itself is allowed, description of the range)
_LIMITS: dict[str, tuple[float, bool, str]] = {
    "scale": (1.0, False, "0 <= scale < 1"),
    "rotation": (180.0, True, "0 <= rotation <= 180 (degrees)"),
    "crop": (0.5, False, "0 <= crop < 0.5 (fraction of the side)"),
    "hflip": (1.0, True, "0 <= hflip <= 1 (probability)"),
}


@dataclass(frozen=True)
class AugmentConfig:
    scale: float = 0.0
    rotation: float = 0.0
    crop: float = 0.0
    hflip: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            upper, inclusive, allowed = _LIMITS[f.name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"augment: {f.name} must be a number, got {value!r}; allowed: {allowed}")
            value = float(value)
            ok = math.isfinite(value) and value >= 0.0 and (value <= upper if inclusive else value < upper)
            if not ok:
                raise ValueError(f"augment: {f.name}={value!r} out of range; allowed: {allowed}")
            object.__setattr__(self, f.name, value)

    @property
    def is_identity(self) -> bool:
        return self.scale == 0.0 and self.rotation == 0.0 and self.crop == 0.0 and self.hflip == 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "off": AugmentConfig(),
    "light": AugmentConfig(scale=0.05, rotation=10.0, crop=0.05, hflip=0.5),
    "medium": AugmentConfig(scale=0.10, rotation=15.0, crop=0.10, hflip=0.5),
    "strong": AugmentConfig(scale=0.20, rotation=30.0, crop=0.15, hflip=0.5),
}


def augment_config(value: str | dict[str, Any] | AugmentConfig | None) -> AugmentConfig:
    """A preset name, a dict of fields (missing ones are 0), or an ``AugmentConfig``; None is "off"."""
    if value is None:
        return AUGMENT_PRESETS["off"]
    if isinstance(value, AugmentConfig):
        return value
    if isinstance(value, str):
        try:
            return AUGMENT_PRESETS[value]
        except KeyError:
            raise ValueError(f"augment: unknown {value!r}; allowed: {', '.join(AUGMENT_PRESETS)}") from None
    if isinstance(value, dict):
        known = {f.name for f in fields(AugmentConfig)}
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise ValueError(f"augment: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        return AugmentConfig(**value)
    raise ValueError(
        f"augment: expected a preset name ({', '.join(AUGMENT_PRESETS)}), a dict or an AugmentConfig, "
        f"got {type(value).__name__}"
    )


def _affine_matrices(cfg: AugmentConfig, u: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) matrices mapping output to input coordinates (normalised [-1, 1]).

    ``u``: (B, 5) uniforms in [0, 1): zoom, angle, shift x, shift y, flip.
    """
    sym = 2.0 * u[:, :4] - 1.0  # [-1, 1)
    zoom = 1.0 + cfg.scale * sym[:, 0]
    angle = torch.deg2rad(cfg.rotation * sym[:, 1])
    shift_x = 2.0 * cfg.crop * sym[:, 2]  # a shift of f * side is 2 f in normalised units
    shift_y = 2.0 * cfg.crop * sym[:, 3]
    mirror = torch.where(u[:, 4] < cfg.hflip, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    inv = 1.0 / zoom
    # input = R(angle) @ diag(mirror / zoom, 1 / zoom) @ output + shift
    row0 = torch.stack([cos * mirror * inv, -sin * inv, shift_x], dim=1)
    row1 = torch.stack([sin * mirror * inv, cos * inv, shift_y], dim=1)
    return torch.stack([row0, row1], dim=1)


def augment_batch(
    images: torch.Tensor,
    cfg: AugmentConfig | str | dict[str, Any],
    generator: torch.Generator | None,
    *,
    padding_mode: str = "reflection",
) -> torch.Tensor:
    """Augment a float batch ``(B, C, H, W)`` with one random affine map per sample.

    Returns ``images`` itself when the config switches everything off.
    """
    cfg = augment_config(cfg)
    if cfg.is_identity:
        return images
    if images.ndim != 4:
        raise ValueError(f"augment_batch: expected images (B, C, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"augment_batch: expected a float tensor, got {images.dtype}")
    if padding_mode not in ("reflection", "zeros", "border"):
        raise ValueError(f"augment_batch: padding_mode {padding_mode!r}; allowed: reflection, zeros, border")
    batch = images.shape[0]
    if batch == 0:
        return images
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch, 5, generator=generator, device=gen_device, dtype=torch.float32)
    u = u.to(images.device, non_blocking=True)
    # sampling coordinates need more precision than half types give at 224 px
    work = images if images.dtype in (torch.float32, torch.float64) else images.float()
    theta = _affine_matrices(cfg, u).to(work.dtype)
    grid = F.affine_grid(theta, list(work.shape), align_corners=False)
    out = F.grid_sample(work, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.to(images.dtype)
