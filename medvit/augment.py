"""Batched, on-device data augmentation: sharp integer-pixel presets, affine presets and AugMix.

Three families, all applied to the whole batch on the images' device (no per-sample Python
loop, no PIL):

* **Sharp** (``flip``, ``shift``): integer translations (reflect-pad, then crop), mirror flips
  and 90-degree rotations. Every output pixel is an input pixel, so a training batch is as
  sharp as the test images. At 28 px this matters: bilinear resampling of a sub-pixel affine
  map keeps only about 0.6 of a batch's high-frequency (Laplacian) energy, so a network
  trained on blurred images is tested on sharp ones.
* **Affine** (``light``, ``medium``, ``strong``): the paper's random scaling, rotation,
  cropping and horizontal flip as one random affine map per sample, one ``F.affine_grid`` +
  ``F.grid_sample`` call per batch.
* **AugMix** (``augmix``): the official MedViT notebook's ``torchvision.transforms.AugMix()``
  at its defaults (Hendrycks et al. 2020): three chains of one to three random operations
  each, mixed with Dirichlet(1, 1, 1) weights, then mixed with the original image by a
  Beta(1, 1) weight. Unlike torchvision's, which draws each chain's operations once per call
  and shares them across a batch tensor (only the mixing weights are per image), every image
  here gets its own chains, as a per-image ``Dataset`` transform would give it. See ``augmix``.

``AugmentConfig`` fields (0 switches a knob off):

* ``scale``: maximum relative zoom; 0.1 draws a zoom factor uniformly in [0.9, 1.1] (> 1 zooms in).
* ``rotation``: maximum rotation in degrees, drawn uniformly in [-rotation, +rotation].
* ``crop``: maximum random-crop shift as a fraction of the image side, drawn uniformly per axis
  in [-crop, +crop] (sub-pixel, resampled).
* ``hflip``: probability of a horizontal (left-right) mirror.
* ``shift``: maximum integer translation in pixels per axis (sharp).
* ``vflip``: probability of a vertical (top-bottom) mirror (sharp).
* ``rot90``: probability of a rotation by 90, 180 or 270 degrees, each equally likely (sharp).
* ``augmix``: AugMix severity, a whole number 1..10 (torchvision's default and the preset: 3);
  0 is off. AugMix works on uint8 images and combines with the sharp knobs only (it runs first).

Presets, chosen for 28 px images (one pixel is 3.6 % of the side):

| preset | scale | rotation | crop (shift)   | hflip | shift | vflip | rot90 | augmix |
|--------|-------|----------|----------------|-------|-------|-------|-------|--------|
| off    | 0     | 0        | 0              | 0     | 0     | 0     | 0     | 0      |
| flip   | 0     | 0        | 0              | 0.5   | 0     | 0.5   | 0.5   | 0      |
| shift  | 0     | 0        | 0              | 0.5   | 2 px  | 0.5   | 0.5   | 0      |
| light  | 0.05  | +-10 deg | 0.05 (~1.4 px) | 0.5   | 0     | 0     | 0     | 0      |
| medium | 0.10  | +-15 deg | 0.10 (~2.8 px) | 0.5   | 0     | 0     | 0     | 0      |
| strong | 0.20  | +-30 deg | 0.15 (~4.2 px) | 0.5   | 0     | 0     | 0     | 0      |
| augmix | 0     | 0        | 0              | 0     | 0     | 0     | 0     | 3      |

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
config), then ``34 * B`` more when AugMix is on, so a seeded generator gives the same
augmentation on every run. Parameters are
drawn on the generator's device (CPU or CUDA) and moved to the images' device if the two
differ.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "AugmentConfig", "AUGMENT_PRESETS", "ORIENTATION_FREE", "augment_config", "augment_batch", "augmix",
    "for_dataset", "tta_flips",
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
    "augmix": (10.0, True, "0 (off) or a whole AugMix severity 1..10"),
}
WHOLE = frozenset({"shift", "augmix"})

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
    augmix: float = 0.0

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
            if f.name in WHOLE and value != int(value):
                raise ValueError(f"augment: {f.name}={value!r} is not whole; allowed: {allowed}")
            object.__setattr__(self, f.name, value)
        if self.augmix and self.resamples:
            raise ValueError("augment: augmix combines with the sharp knobs only (hflip, shift, vflip, rot90); "
                             "set scale, rotation and crop to 0")

    @property
    def is_identity(self) -> bool:
        return all(getattr(self, f.name) == 0.0 for f in fields(self))

    @property
    def resamples(self) -> bool:
        """Any affine knob on: the images are resampled, so they must be floats."""
        return self.scale != 0.0 or self.rotation != 0.0 or self.crop != 0.0

    @property
    def is_sharp(self) -> bool:
        """No resampling and no mixing: every output pixel is an input pixel."""
        return not self.resamples and self.augmix == 0.0

    @property
    def moves_pixels(self) -> bool:
        """Any sharp knob on (integer shifts, flips, quarter turns)."""
        return self.hflip != 0.0 or self.shift != 0.0 or self.vflip != 0.0 or self.rot90 != 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "off": AugmentConfig(),
    "flip": AugmentConfig(hflip=0.5, vflip=0.5, rot90=0.5),
    "shift": AugmentConfig(hflip=0.5, shift=2, vflip=0.5, rot90=0.5),
    "light": AugmentConfig(scale=0.05, rotation=10.0, crop=0.05, hflip=0.5),
    "medium": AugmentConfig(scale=0.10, rotation=15.0, crop=0.10, hflip=0.5),
    "strong": AugmentConfig(scale=0.20, rotation=30.0, crop=0.15, hflip=0.5),
    "augmix": AugmentConfig(augmix=3),
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
    sharp configs take any dtype, uint8 included, since they only move pixels; AugMix takes
    uint8 only, as torchvision's does).

    Sharp configs move whole pixels only; affine ones resample one affine map per sample, then
    apply any sharp knobs (shift, vertical flip, quarter turns) on top; AugMix mixes each
    image with its own augmentation chains, then applies any sharp knobs. Returns ``images``
    itself when the config switches everything off.
    """
    cfg = augment_config(cfg)
    if cfg.is_identity:
        return images
    if images.ndim != 4:
        raise ValueError(f"augment_batch: expected images (B, C, H, W), got shape {tuple(images.shape)}")
    if cfg.augmix and images.dtype != torch.uint8:
        raise TypeError(f"augment_batch: augmix works on uint8 images (0..255, as torchvision's AugMix), "
                        f"got {images.dtype}")
    if not images.is_floating_point() and cfg.resamples:
        raise TypeError(f"augment_batch: the affine knobs resample, so they need a float tensor, got {images.dtype}")
    if padding_mode not in ("reflection", "zeros", "border"):
        raise ValueError(f"augment_batch: padding_mode {padding_mode!r}; allowed: reflection, zeros, border")
    batch = images.shape[0]
    if batch == 0:
        return images
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch, DRAWS_PER_IMAGE, generator=generator, device=gen_device, dtype=torch.float32)
    u = u.to(images.device, non_blocking=True)
    if cfg.augmix:
        images = augmix(images, int(cfg.augmix), generator)
        return _sharp(images, cfg, u) if cfg.moves_pixels else images
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


# -- AugMix ----------------------------------------------------------------------------
#
# torchvision's AugMix() at its defaults, which is what the official MedViT notebook calls:
# severity 3 of 10 levels, three chains of one to three operations, all thirteen operations
# (all_ops=True), bilinear resampling with a black fill, Dirichlet(1, 1, 1) chain weights and
# a Beta(1, 1) weight for the chains against the original. Each operation reproduces its
# torchvision counterpart on uint8 images (same float32 arithmetic, same rounding), so chains
# run on float32 tensors that hold whole numbers 0..255, exactly the uint8 values torchvision
# would hold after each step.

AUGMIX_WIDTH = 3
AUGMIX_MAX_DEPTH = 3
AUGMIX_LEVELS = 10  # severity s draws a level uniformly in 0..s-1 of these
AUGMIX_OPS = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate", "posterize", "solarize",
              "autocontrast", "equalize", "brightness", "color", "contrast", "sharpness")
_SIGNED = frozenset({"shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
                     "contrast", "sharpness"})
_GEOMETRIC = 5  # the first five operations move pixels: one affine warp serves them all
_SKIP = len(AUGMIX_OPS)  # the operation id of the steps past a chain's depth
# per image and chain: a depth, then per step an operation, a level and a sign
_CHAIN_DRAWS = AUGMIX_WIDTH * (1 + 3 * AUGMIX_MAX_DEPTH)
AUGMIX_DRAWS_PER_IMAGE = _CHAIN_DRAWS + AUGMIX_WIDTH + 1  # then the chain weights and the Beta weight


def augmix(images: torch.Tensor, severity: int, generator: torch.Generator | None) -> torch.Tensor:
    """AugMix on a uint8 batch ``(B, C, H, W)`` (C is 1 or 3), every image with its own
    chains: its own depths, operations, levels and signs, and its own mixing weights.

    Draws ``AUGMIX_DRAWS_PER_IMAGE * B`` uniforms from ``generator`` on its device. The
    mixture is truncated to uint8, as torchvision's ``.to(uint8)`` does.
    """
    b, c = images.shape[:2]
    if c not in (1, 3):
        raise ValueError(f"augmix: expected 1 or 3 channels, as torchvision's AugMix, got {c}")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(b, AUGMIX_DRAWS_PER_IMAGE, generator=generator, device=gen_device, dtype=torch.float32)
    u = u.to(images.device, non_blocking=True)
    chains = _augmix_chains(images.float(), u[:, :_CHAIN_DRAWS], severity)
    return _augmix_mix(images, chains, u[:, _CHAIN_DRAWS:])


def _pick(u: torch.Tensor, n: int) -> torch.Tensor:
    """Uniform integers in 0..n-1 from uniforms in [0, 1)."""
    return (u * n).long().clamp_max(n - 1)


def _augmix_chains(x: torch.Tensor, u: torch.Tensor, severity: int) -> torch.Tensor:
    """The ``AUGMIX_WIDTH`` augmented versions of each image, ``(B, WIDTH, C, H, W)`` floats
    holding whole numbers 0..255. ``u``: (B, _CHAIN_DRAWS) uniforms."""
    b, c, h, w = x.shape
    depth_max = AUGMIX_MAX_DEPTH
    u = u.reshape(b * AUGMIX_WIDTH, 1 + 3 * depth_max)  # row i * WIDTH + k: image i, chain k
    depth = 1 + _pick(u[:, 0], depth_max)
    op = _pick(u[:, 1:1 + depth_max], len(AUGMIX_OPS))
    level = _pick(u[:, 1 + depth_max:1 + 2 * depth_max], severity)
    magnitudes, signed = _augmix_magnitudes(h, w, x.device)
    magnitude = magnitudes[op, level]
    magnitude = torch.where(signed[op] & (u[:, 1 + 2 * depth_max:] < 0.5), -magnitude, magnitude)
    # steps past the chain's depth do nothing, nor does a signed operation at magnitude 0 (the
    # level 0 of shears, translations, rotations and blends: a third of them at severity 3)
    active = (torch.arange(depth_max, device=x.device) < depth[:, None]) & ~(signed[op] & (magnitude == 0))
    op = torch.where(active, op, _SKIP)
    out = x.repeat_interleave(AUGMIX_WIDTH, dim=0)
    row = torch.arange(len(out), device=x.device)  # the (image, chain) row held at each position of ``out``
    for step in range(depth_max):
        order = torch.argsort(op[row, step])
        row, out = row[order], out.index_select(0, order)
        _augmix_step(out, op[row, step], magnitude[row, step])
    return out.index_select(0, torch.argsort(row)).view(b, AUGMIX_WIDTH, c, h, w)


def _augmix_mix(images: torch.Tensor, chains: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``keep * image + (1 - keep) * sum_k weight_k * chain_k``, truncated to uint8.

    ``u``: (B, WIDTH + 1) uniforms. Dirichlet(1, ..., 1) weights are normalised Exp(1) draws,
    and Beta(1, 1) is uniform.
    """
    exp = -torch.log1p(-u[:, :AUGMIX_WIDTH])
    keep = u[:, AUGMIX_WIDTH]
    weight = exp / exp.sum(1, keepdim=True) * (1.0 - keep)[:, None]
    b = len(images)
    kept = keep.view(b, 1, 1) * images.view(b, 1, -1)
    mix = torch.baddbmm(kept, weight.view(b, 1, AUGMIX_WIDTH), chains.view(b, AUGMIX_WIDTH, -1))
    return mix.view(images.shape).to(torch.uint8)


@functools.cache
def _augmix_magnitudes(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ops, levels) magnitudes (float64 holding torchvision's float32 values, as its Python
    floats do) and which operations draw a random sign."""
    levels = AUGMIX_LEVELS
    ramp = {  # torchvision's float32 tables; posterize keeps bits, solarize is a threshold
        "shear_x": torch.linspace(0.0, 0.3, levels),
        "shear_y": torch.linspace(0.0, 0.3, levels),
        "translate_x": torch.linspace(0.0, width / 3.0, levels).trunc(),  # whole pixels, as int() gives
        "translate_y": torch.linspace(0.0, height / 3.0, levels).trunc(),
        "rotate": torch.linspace(0.0, 30.0, levels),
        "posterize": (4 - (torch.arange(levels) / ((levels - 1) / 4))).round(),
        "solarize": torch.linspace(255.0, 0.0, levels),
        "autocontrast": torch.zeros(levels),
        "equalize": torch.zeros(levels),
    }
    table = torch.stack([ramp.get(name, torch.linspace(0.0, 0.9, levels)) for name in AUGMIX_OPS])
    signed = torch.tensor([name in _SIGNED for name in AUGMIX_OPS])
    return table.double().to(device), signed.to(device)


def _augmix_step(x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> None:
    """One step of every chain, in place: ``x``'s rows are sorted by ``op``, so each operation
    (the five geometric ones together, as one warp) works on one contiguous slice."""
    counts = torch.bincount(op, minlength=_SKIP + 1).tolist()  # the one host sync of a step
    sizes = [sum(counts[:_GEOMETRIC]), *counts[_GEOMETRIC:_SKIP]]
    start = 0
    for size, fn in zip(sizes, (_warp, *_PIXEL_OPS)):
        if size:
            rows = slice(start, start + size)
            x[rows] = fn(x[rows], op[rows], magnitude[rows])
        start += size


def _warp(x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Shears, translations and rotations as one bilinear ``grid_sample`` with a matrix per
    row, sampled at pixel centres as torchvision's ``_gen_affine_grid`` does, black outside,
    rounded to whole numbers."""
    n, _, h, w = x.shape
    theta = _inverse_affine(op, magnitude, h, w).float()
    xs = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, w, device=x.device)
    ys = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, h, device=x.device)
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w, device=x.device)], -1)
    scaled = theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], device=x.device)  # (n, 3, 2)
    # every row's pixel-centre grid as one (H*W, 3) @ (3, n*2) product
    grid = base.view(h * w, 3).mm(scaled.permute(1, 0, 2).reshape(3, n * 2))
    grid = grid.view(h, w, n, 2).permute(2, 0, 1, 3)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).round()


def _inverse_affine(op: torch.Tensor, magnitude: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(n, 2, 3) float64 maps from output to input pixel coordinates (origin at the image
    centre): torchvision's ``_get_inverse_affine_matrix`` with the arguments its AugMix passes
    (shears about the top-left corner, whole-pixel translations, rotations about the centre)."""
    zero = torch.zeros_like(magnitude)
    shear = torch.deg2rad(torch.rad2deg(torch.atan(magnitude)))  # the degrees torchvision passes
    sx = torch.where(op == AUGMIX_OPS.index("shear_x"), shear, zero)
    sy = torch.where(op == AUGMIX_OPS.index("shear_y"), shear, zero)
    rot = torch.where(op == AUGMIX_OPS.index("rotate"), torch.deg2rad(-magnitude), zero)
    tx = torch.where(op == AUGMIX_OPS.index("translate_x"), magnitude, zero)
    ty = torch.where(op == AUGMIX_OPS.index("translate_y"), magnitude, zero)
    corner = (op == AUGMIX_OPS.index("shear_x")) | (op == AUGMIX_OPS.index("shear_y"))
    cx, cy = torch.where(corner, -0.5 * w, zero), torch.where(corner, -0.5 * h, zero)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    # inverse of the rotation-shear (determinant 1), then of the translation and the centre
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = m0 * (-cx - tx) + m1 * (-cy - ty) + cx
    m5 = m3 * (-cx - tx) + m4 * (-cy - ty) + cy
    return torch.stack([m0, m1, m2, m3, m4, m5], 1).view(-1, 2, 3)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend`` on uint8: ``ratio`` and ``1 - ratio`` rounded to float32 as
    its Python floats are, the sum clamped and truncated."""
    ratio = factor.float().view(-1, 1, 1, 1)
    rest = (1.0 - factor).float().view(-1, 1, 1, 1)
    return (ratio * x + rest * other).clamp(0, 255).trunc()


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """torchvision's uint8 luma, (n, 1, H, W), truncated."""
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).trunc().unsqueeze(1)


def _posterize(x: torch.Tensor, op: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    step = torch.exp2(8 - bits).float().view(-1, 1, 1, 1)  # keeping b bits zeroes the 8 - b low ones
    return (x / step).floor() * step


def _solarize(x: torch.Tensor, op: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= threshold.float().view(-1, 1, 1, 1), 255.0 - x, x)


def _autocontrast(x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    minimum = x.amin(dim=(-2, -1), keepdim=True)
    maximum = x.amax(dim=(-2, -1), keepdim=True)
    scale = 255.0 / (maximum - minimum)
    flat = ~torch.isfinite(scale)  # a constant channel stays as it is
    minimum, scale = minimum.masked_fill(flat, 0.0), scale.masked_fill(flat, 1.0)
    return ((x - minimum) * scale).clamp(0, 255).trunc()


def _equalize(x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """torchvision's per-channel histogram equalisation, every channel of every row at once:
    one histogram per (row, channel) by ``scatter_add``, then its lookup table."""
    n, c, h, w = x.shape
    values = x.long().view(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, values, torch.ones_like(values))
    # torchvision's step: the pixels not at the channel's brightest value, over 255
    step = (h * w - hist.gather(1, values.amax(1, keepdim=True))) // 255
    lut = (hist.cumsum(1) + step // 2) // step.clamp_min(1)
    lut = F.pad(lut, (1, 0))[:, :-1].clamp(0, 255)
    out = torch.where(step > 0, lut.gather(1, values), values)
    return out.view(n, c, h, w).to(x.dtype)


def _brightness(x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    return _blend(x, x.new_zeros(()), 1.0 + magnitude)


def _color(x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:  # a grey image has no saturation
        return x
    return _blend(x, _grayscale(x), 1.0 + magnitude)


def _contrast(x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    luma = _grayscale(x) if x.shape[1] == 3 else x
    return _blend(x, luma.mean(dim=(-3, -2, -1), keepdim=True), 1.0 + magnitude)


def _sharpness(x: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Blend with a 3x3-smoothed copy (centre weight 5 of 13, rounded); the border row and
    column of pixels keep their values, as in torchvision."""
    if x.shape[-2] <= 2 or x.shape[-1] <= 2:
        return x
    # The 3x3 sum plus 4 x the centre, summed exactly in whole numbers (separable: 4x faster
    # than a grouped convolution on a CPU); a whole number over 13 is never within 0.03 of a
    # half, so rounding it gives torchvision's rounded convolution exactly.
    rows = x[..., :, :-2] + x[..., :, 1:-1] + x[..., :, 2:]
    total = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :] + 4.0 * x[..., 1:-1, 1:-1]
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = (total / 13.0).round()
    return _blend(x, smooth, 1.0 + magnitude)


# in AUGMIX_OPS order after the five geometric ones
_PIXEL_OPS = (_posterize, _solarize, _autocontrast, _equalize, _brightness, _color, _contrast, _sharpness)
