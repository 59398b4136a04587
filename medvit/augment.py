"""Batched, on-device data augmentation: sharp integer-pixel presets and affine presets.

Two families, both applied to the whole batch on the images' device (no per-sample Python
loop, no PIL):

* **Sharp** (``flip``, ``shift``): integer translations (reflect-pad, then crop), mirror flips
  and 90-degree rotations. Every output pixel is an input pixel, so a training batch is as
  sharp as the test images. At 28 px this matters: bilinear resampling of a sub-pixel affine
  map keeps only about 0.6 of a batch's high-frequency (Laplacian) energy, so a network
  trained on blurred images is tested on sharp ones.
* **Affine** (``light``, ``medium``, ``strong``): the paper's random scaling, rotation,
  cropping and horizontal flip as one random affine map per sample, one ``F.affine_grid`` +
  ``F.grid_sample`` call per batch.

``AugmentConfig`` fields (0 switches a knob off):

* ``scale``: maximum relative zoom; 0.1 draws a zoom factor uniformly in [0.9, 1.1] (> 1 zooms in).
* ``rotation``: maximum rotation in degrees, drawn uniformly in [-rotation, +rotation].
* ``crop``: maximum random-crop shift as a fraction of the image side, drawn uniformly per axis
  in [-crop, +crop] (sub-pixel, resampled).
* ``hflip``: probability of a horizontal (left-right) mirror.
* ``shift``: maximum integer translation in pixels per axis (sharp).
* ``vflip``: probability of a vertical (top-bottom) mirror (sharp).
* ``rot90``: probability of a rotation by 90, 180 or 270 degrees, each equally likely (sharp).

Presets, chosen for 28 px images (one pixel is 3.6 % of the side):

| preset | scale | rotation | crop (shift)   | hflip | shift | vflip | rot90 |
|--------|-------|----------|----------------|-------|-------|-------|-------|
| off    | 0     | 0        | 0              | 0     | 0     | 0     | 0     |
| flip   | 0     | 0        | 0              | 0.5   | 0     | 0.5   | 0.5   |
| shift  | 0     | 0        | 0              | 0.5   | 2 px  | 0.5   | 0.5   |
| light  | 0.05  | +-10 deg | 0.05 (~1.4 px) | 0.5   | 0     | 0     | 0     |
| medium | 0.10  | +-15 deg | 0.10 (~2.8 px) | 0.5   | 0     | 0     | 0     |
| strong | 0.20  | +-30 deg | 0.15 (~4.2 px) | 0.5   | 0     | 0     | 0     |

Vertical flips and 90-degree rotations are a per-dataset choice (``for_dataset``): a fundus
photograph, a pathology tile or a blood smear has no "up", a chest X-ray, an abdominal CT
slice, an OCT scan or a breast ultrasound has. Horizontal flips mirror anatomy (a chest
X-ray's heart moves to the other side); the paper flips anyway, and every preset except
``off`` follows it. Use a dict (``{"hflip": 0, ...}``) to drop it.

Padding: ``"reflection"``. Pixels that come from outside the image mirror the border
instead of being a constant: many MedMNIST sets fill the whole frame (pathology, blood
smears, dermatoscopy, OCT), where black corners are an artefact test images never show, and
a reflection means the same before and after normalisation.

Randomness: each call draws exactly ``9 * B`` uniforms from ``generator`` (whatever the
config), so a seeded generator gives the same augmentation on every run. Parameters are
drawn on the generator's device (CPU or CUDA) and moved to the images' device if the two
differ.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "AugmentConfig", "AUGMENT_PRESETS", "ORIENTATION_FREE", "augment_config", "augment_batch", "for_dataset",
    "tta_flips",
]

DRAWS_PER_IMAGE = 9  # zoom, angle, crop x, crop y, hflip, shift x, shift y, vflip, rot90

# field -> (upper bound, whether the bound itself is allowed, description of the range)
_LIMITS: dict[str, tuple[float, bool, str]] = {
    "scale": (1.0, False, "0 <= scale < 1"),
    "rotation": (180.0, True, "0 <= rotation <= 180 (degrees)"),
    "crop": (0.5, False, "0 <= crop < 0.5 (fraction of the side)"),
    "hflip": (1.0, True, "0 <= hflip <= 1 (probability)"),
    "shift": (8.0, True, "0 <= shift <= 8 (whole pixels)"),
    "vflip": (1.0, True, "0 <= vflip <= 1 (probability)"),
    "rot90": (1.0, True, "0 <= rot90 <= 1 (probability)"),
}

# Datasets whose images have no canonical orientation: vertical flips and 90-degree
# rotations give images of the same kind (fundus, pathology, dermatoscopy, blood smear,
# kidney cortex microscopy).
ORIENTATION_FREE = frozenset({"retinamnist", "pathmnist", "dermamnist", "bloodmnist", "tissuemnist"})


@dataclass(frozen=True)
class AugmentConfig:
    scale: float = 0.0
    rotation: float = 0.0
    crop: float = 0.0
    hflip: float = 0.0
    shift: float = 0.0
    vflip: float = 0.0
    rot90: float = 0.0

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
            if f.name == "shift" and value != int(value):
                raise ValueError(f"augment: shift={value!r} is not whole; allowed: {allowed}")
            object.__setattr__(self, f.name, value)

    @property
    def is_identity(self) -> bool:
        return all(getattr(self, f.name) == 0.0 for f in fields(self))

    @property
    def is_sharp(self) -> bool:
        """No resampling: every output pixel is an input pixel."""
        return self.scale == 0.0 and self.rotation == 0.0 and self.crop == 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "off": AugmentConfig(),
    "flip": AugmentConfig(hflip=0.5, vflip=0.5, rot90=0.5),
    "shift": AugmentConfig(hflip=0.5, shift=2, vflip=0.5, rot90=0.5),
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


def for_dataset(cfg: AugmentConfig, dataset: str) -> AugmentConfig:
    """``cfg`` without vertical flips and 90-degree rotations where the anatomy has an up."""
    if dataset in ORIENTATION_FREE:
        return cfg
    return replace(cfg, vflip=0.0, rot90=0.0)


def tta_flips(dataset: str) -> tuple[tuple[int, ...], ...]:
    """The image dimensions flipped for each view of flip test-time augmentation: the
    identity and the flips training uses for ``dataset`` (horizontal everywhere, vertical and
    both only where the anatomy has no up)."""
    if dataset in ORIENTATION_FREE:
        return (), (-1,), (-2,), (-2, -1)
    return (), (-1,)


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
    """Augment a batch ``(B, C, H, W)``: one random transform per sample (float images; the
    sharp configs take any dtype, uint8 included, since they only move pixels).

    Sharp configs move whole pixels only; others resample one affine map per sample, then
    apply any sharp knobs (shift, vertical flip, quarter turns) on top. Returns ``images`` itself when the config switches everything off.
    """
    cfg = augment_config(cfg)
    if cfg.is_identity:
        return images
    if images.ndim != 4:
        raise ValueError(f"augment_batch: expected images (B, C, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point() and not cfg.is_sharp:
        raise TypeError(f"augment_batch: the affine knobs resample, so they need a float tensor, got {images.dtype}")
    if padding_mode not in ("reflection", "zeros", "border"):
        raise ValueError(f"augment_batch: padding_mode {padding_mode!r}; allowed: reflection, zeros, border")
    batch = images.shape[0]
    if batch == 0:
        return images
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch, DRAWS_PER_IMAGE, generator=generator, device=gen_device, dtype=torch.float32)
    u = u.to(images.device, non_blocking=True)
    if cfg.is_sharp:
        return _sharp(images, cfg, u)
    # sampling coordinates need more precision than half types give at 224 px
    work = images if images.dtype in (torch.float32, torch.float64) else images.float()
    theta = _affine_matrices(cfg, u[:, :5]).to(work.dtype)
    grid = F.affine_grid(theta, list(work.shape), align_corners=False)
    out = F.grid_sample(work, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return _sharp(out.to(images.dtype), replace(cfg, hflip=0.0), u)


def _sharp(images: torch.Tensor, cfg: AugmentConfig, u: torch.Tensor) -> torch.Tensor:
    """Integer shifts, mirror flips and quarter turns as one gather: pixels move, none is
    resampled, and the batch is read once whatever the knobs.

    ``u``: (B, 9) uniforms; columns 4 (hflip) and 5-8 (shift x, shift y, vflip, rot90) are used.
    The output is the input shifted, then mirrored left-right, then top-bottom, then turned
    counter-clockwise by k quarter turns (k = 1, 2 or 3, equally likely, when rot90 fires;
    square images only). Every such map sends output pixel (r, c) to source row
    ``ar*r + ac*c + a0`` and column ``br*r + bc*c + b0`` with coefficients in {-1, 0, 1}: the
    steps below compose them per sample (B numbers each), so the (B, H, W) index map costs one
    add over the batch, not one pass per knob. Any dtype: on uint8 images the gather moves a
    quarter of the bytes it moves on floats.
    """
    b, _, h, w = images.shape
    device = images.device
    # (ar, ac, a0, br, bc, b0) per number of quarter turns k: k = 0 the identity, k = 1 reads
    # (c, h-1-r), k = 2 (h-1-r, w-1-c), k = 3 (w-1-c, r)
    turns = torch.tensor([[1, 0, 0, 0, 1, 0], [0, 1, 0, -1, 0, h - 1], [-1, 0, h - 1, 0, -1, w - 1],
                          [0, -1, w - 1, 1, 0, 0]], device=device)
    k = torch.zeros(b, dtype=torch.long, device=device)
    if cfg.rot90 > 0 and h == w:
        k = torch.where(u[:, 8] < cfg.rot90, 1 + (3 * u[:, 8] / cfg.rot90).long().clamp_max(2), 0)
    ar, ac, a0, br, bc, b0 = turns[k].unbind(1)  # source row = ar*r + ac*c + a0, column = br*r + bc*c + b0
    if cfg.vflip > 0:
        flip = u[:, 7] < cfg.vflip
        ar, ac, a0 = torch.where(flip, -ar, ar), torch.where(flip, -ac, ac), torch.where(flip, h - 1 - a0, a0)
    if cfg.hflip > 0:
        flip = u[:, 4] < cfg.hflip
        br, bc, b0 = torch.where(flip, -br, br), torch.where(flip, -bc, bc), torch.where(flip, w - 1 - b0, b0)
    pad = int(cfg.shift)
    if pad > 0:
        if pad >= min(h, w):
            raise ValueError(f"augment_batch: shift={pad} needs images larger than {pad} px a side, got {h}x{w}")
        # move the window by (dy, dx) whole pixels in [-pad, pad]; what falls outside mirrors
        a0 = a0 + (u[:, 6] * (2 * pad + 1)).long().clamp_max(2 * pad) - pad
        b0 = b0 + (u[:, 5] * (2 * pad + 1)).long().clamp_max(2 * pad) - pad
    # One of each coefficient pair is 0, so the source row is a function of r alone or of c
    # alone (same for the column), and the mirroring can run on (B, 4, side) coordinates
    # before the one add over the (B, H, W) map: the batch is never padded.
    slope = torch.stack([ar, ac, br, bc], 1)
    offset = slope.abs() * torch.stack([a0, a0, b0, b0], 1)
    side = torch.arange(max(h, w), device=device)
    last = torch.tensor([h - 1, h - 1, w - 1, w - 1], device=device).view(1, 4, 1)
    coord = last - (last - (slope[:, :, None] * side + offset[:, :, None]).abs()).abs()  # reflect into [0, last]
    by_row = coord[:, 0, :h] * w + coord[:, 2, :h]  # (B, H): the parts that depend on r
    by_col = coord[:, 1, :w] * w + coord[:, 3, :w]  # (B, W): the parts that depend on c
    flat = (by_row[:, :, None] + by_col[:, None, :]).view(b, 1, h * w).expand(b, images.shape[1], h * w)
    return torch.gather(images.flatten(2), 2, flat).view(b, -1, h, w)
