"""EDM's augmentation pipeline (Karras et al. 2022) as a pure function of explicit per-sample draws.

The same operations, parameters, defaults and labels as EDM's `training/augment.py` (itself
StyleGAN2-ADA's): pixel blitting (x/y flip, quarter turns, integer translation with mirrored
edges), geometric transforms (isotropic and anisotropic scaling, fractional rotation and
translation, resampled at twice the resolution between Symlet-6 wavelet filters) and colour
transforms (brightness, contrast, luma flip, hue, saturation).

Two differences from EDM, both so that sample j depends only on sample j's draws (the
trainer's results must not depend on how a batch is split over processes):

- randomness comes from a `DrawSource` (row j from sample j's own generator), never from a
  global RNG; `draw_augment_params` draws in EDM's order, `apply_augment` is deterministic;
- geometric resampling pads every image by the most that mirror padding allows (size - 1)
  instead of EDM's batch-wide margin, and samples whose transform is the identity are left
  exactly as they are (EDM's filter round trip changes them by float32 roundoff, ~1e-6).

Measured against EDM's own code on the same draws (tests/tools/edm_augment_check.py): flips,
integer moves and colour transforms agree bitwise, labels bitwise, geometric transforms within
~5e-5 of EDM padded the same way and within ~5e-4 of stock EDM, whose output for a sample
itself changes by as much with the batch around it.

Labels: `AugmentPipe.label_names`. EDM concatenates the labels of the enabled operations;
here the nine of EDM's training set (x/y flip, scale, rotation, anisotropy, translation: what
the networks' `augment_dim` 9 takes) are always present, zero when disabled (the label of
an operation that was not applied), and the other operations add their columns at EDM's
place when enabled. With EDM's training set enabled the layout is exactly EDM's.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from sidbench.errors import ConfigError

__all__ = ["SYM6", "AugmentParams", "AugmentPipe", "DrawSource", "apply_augment", "draw_augment_params"]

# Symlet-6 low-pass decomposition filter (Daubechies' least-asymmetric wavelet, 12 taps; the
# published coefficients, e.g. PyWavelets' `sym6` dec_lo). Orthonormal: sum h[k] h[k + 2n] = [n == 0].
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)
_EDGE = len(SYM6) // 4  # extra output pixels resampled beyond each edge, cropped by the down-filter

# (operation, label columns) in EDM's order. `_NINE`: always in the labels.
_LAYOUT = (
    ("xflip", ("xflip",)),
    ("yflip", ("yflip",)),
    ("rotate_int", ("rotate_int.x", "rotate_int.y")),
    ("translate_int", ("translate_int.x", "translate_int.y")),
    ("scale", ("scale",)),
    ("rotate_frac", ("rotate_frac.cos", "rotate_frac.sin")),
    ("aniso", ("aniso.cos", "aniso.sin")),
    ("translate_frac", ("translate_frac.x", "translate_frac.y")),
    ("brightness", ("brightness",)),
    ("contrast", ("contrast",)),
    ("lumaflip", ("lumaflip",)),
    ("hue", ("hue.cos", "hue.sin")),
    ("saturation", ("saturation",)),
)
_NINE = frozenset({"xflip", "yflip", "scale", "rotate_frac", "aniso", "translate_frac"})
_GEOMETRIC = ("scale", "rotate_frac", "aniso", "translate_frac")
_COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")


class DrawSource(Protocol):
    """Per-sample random numbers, as `sidbench.methods.base.Draws` gives them: every call
    returns [b, *shape] with row j from sample j's own generator."""

    def rand(self, *shape: int) -> torch.Tensor: ...

    def randn(self, *shape: int) -> torch.Tensor: ...

    def randint(self, high: int, *shape: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class AugmentParams:
    """One batch's augmentation, after the probability gates; None: the operation is disabled.

    Values are EDM's `w` (zero where the gate said no), so labels follow from them directly:
    xflip, yflip, lumaflip [b] int64 in {0, 1}; rotate_int [b] int64 counter-clockwise quarter
    turns 0..3 (torch.rot90); translate_int [b, 2] (x, y) in [-1, 1], times translate_int_max *
    size pixels (rounded; +x moves content right, +y up: EDM's signs); scale, brightness,
    contrast, saturation [b] in units of their std (log2 for scale, contrast and saturation;
    +scale enlarges); rotate_frac, hue [b] angles in radians (rotate_frac counter-clockwise as
    displayed); aniso [b, 2] (log2 stretch in units of aniso_std, angle of its axis in
    radians); translate_frac [b, 2] (x, y) in units of translate_frac_std * size (+x moves
    content right, +y down).
    """

    xflip: torch.Tensor | None = None
    yflip: torch.Tensor | None = None
    rotate_int: torch.Tensor | None = None
    translate_int: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    rotate_frac: torch.Tensor | None = None
    aniso: torch.Tensor | None = None
    translate_frac: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    lumaflip: torch.Tensor | None = None
    hue: torch.Tensor | None = None
    saturation: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> AugmentParams:
        return AugmentParams(**{k: None if v is None else v.to(device) for k, v in self._items()})

    def _items(self) -> list[tuple[str, torch.Tensor | None]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]


@dataclass(frozen=True)
class AugmentPipe:
    """EDM's AugmentPipe settings (same names and defaults; every operation off by default).

    An operation's multiplier times `p` is the probability that a sample gets it (EDM's
    training set uses xflip=1e8: always flip with probability 1/2, whatever p). Calling the
    pipe with images and draws returns (augmented images, [b, label_dim] float32 labels).
    """

    p: float = 1.0
    xflip: float = 0
    yflip: float = 0
    rotate_int: float = 0
    translate_int: float = 0
    translate_int_max: float = 0.125
    scale: float = 0
    rotate_frac: float = 0
    aniso: float = 0
    translate_frac: float = 0
    scale_std: float = 0.2
    rotate_frac_max: float = 1
    aniso_std: float = 0.2
    aniso_rotate_prob: float = 0.5
    translate_frac_std: float = 0.125
    brightness: float = 0
    contrast: float = 0
    lumaflip: float = 0
    hue: float = 0
    saturation: float = 0
    brightness_std: float = 0.2
    contrast_std: float = 0.5
    hue_max: float = 1
    saturation_std: float = 1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ConfigError(f"augmentation setting {f.name}={value!r} is not a finite number",
                                  hint="give a number such as 0, 1 or 0.12")
            object.__setattr__(self, f.name, float(value))
            probability = f.name in ("p", "aniso_rotate_prob")
            if value < 0 or (probability and value > 1):
                raise ConfigError(f"augmentation setting {f.name}={value} must be "
                                  f"{'in [0, 1]' if probability else 'at least 0'}",
                                  hint="p and aniso_rotate_prob are probabilities; multipliers, "
                                       "standard deviations and ranges are non-negative")
        if self.translate_int > 0 and self.translate_int_max == 0:
            raise ConfigError("augmentation setting translate_int_max must be above 0 when translate_int "
                              "is on", hint="EDM's default is 0.125 (an eighth of the image size)")

    @classmethod
    def edm_train(cls, p: float) -> AugmentPipe:
        """The pipeline EDM's train.py builds for `--augment p` (9 labels), which SiD uses."""
        return cls(p=p, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1)

    def enabled(self, op: str) -> bool:
        return getattr(self, op) > 0

    @property
    def label_names(self) -> tuple[str, ...]:
        """The label columns, in order (see the module docstring)."""
        return tuple(name for op, names in _LAYOUT if op in _NINE or self.enabled(op) for name in names)

    @property
    def label_dim(self) -> int:
        return len(self.label_names)

    def __call__(self, images: torch.Tensor, draws: DrawSource) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment [b, C, H, W] images with `draws` (b rows): (images, labels [b, label_dim])."""
        _check_images(images, self)
        return apply_augment(images, draw_augment_params(draws, images.shape[0], self), self)


def draw_augment_params(draws: DrawSource, b: int, pipe: AugmentPipe) -> AugmentParams:
    """Draw one batch's parameters, in EDM's order.

    For each enabled operation, in `_LAYOUT` order: its value(s), then its gate `rand() <
    multiplier * p`. Values: xflip, yflip `randint(2)`; rotate_int `randint(4)`; translate_int
    `rand(2)`; scale `randn()`; rotate_frac `rand()`; aniso `randn()`, `rand()` (its axis),
    gate, then the axis gate `rand() < aniso_rotate_prob`; translate_frac `randn(2)`;
    brightness, contrast `randn()`; lumaflip `randint(2)`; hue `rand()`; saturation `randn()`.
    Disabled operations draw nothing.
    """

    def take(kind: str, *args: int) -> torch.Tensor:
        out = getattr(draws, kind)(*args)
        shape = (b, *(args[1:] if kind == "randint" else args))
        if tuple(out.shape) != shape:
            raise ConfigError(f"the augmentation's draws gave shape {tuple(out.shape)}, expected {shape}",
                              hint="give one generator per sample of the batch")
        return out

    def gated(value: torch.Tensor, probability: float) -> torch.Tensor:
        keep = take("rand") < probability
        return torch.where(keep.view(b, *[1] * (value.ndim - 1)), value, torch.zeros_like(value))

    p, out = pipe.p, {}
    if pipe.xflip > 0:
        out["xflip"] = gated(take("randint", 2), pipe.xflip * p)
    if pipe.yflip > 0:
        out["yflip"] = gated(take("randint", 2), pipe.yflip * p)
    if pipe.rotate_int > 0:
        out["rotate_int"] = gated(take("randint", 4), pipe.rotate_int * p)
    if pipe.translate_int > 0:
        out["translate_int"] = gated(take("rand", 2) * 2 - 1, pipe.translate_int * p)
    if pipe.scale > 0:
        out["scale"] = gated(take("randn"), pipe.scale * p)
    if pipe.rotate_frac > 0:
        angle = (take("rand") * 2 - 1) * (math.pi * pipe.rotate_frac_max)
        out["rotate_frac"] = gated(angle, pipe.rotate_frac * p)
    if pipe.aniso > 0:
        w, r = take("randn"), (take("rand") * 2 - 1) * math.pi
        out["aniso"] = torch.stack([gated(w, pipe.aniso * p), gated(r, pipe.aniso_rotate_prob)], dim=1)
    if pipe.translate_frac > 0:
        out["translate_frac"] = gated(take("randn", 2), pipe.translate_frac * p)
    if pipe.brightness > 0:
        out["brightness"] = gated(take("randn"), pipe.brightness * p)
    if pipe.contrast > 0:
        out["contrast"] = gated(take("randn"), pipe.contrast * p)
    if pipe.lumaflip > 0:
        out["lumaflip"] = gated(take("randint", 2), pipe.lumaflip * p)
    if pipe.hue > 0:
        out["hue"] = gated((take("rand") * 2 - 1) * (math.pi * pipe.hue_max), pipe.hue * p)
    if pipe.saturation > 0:
        out["saturation"] = gated(take("randn"), pipe.saturation * p)
    return AugmentParams(**out)


def apply_augment(images: torch.Tensor, params: AugmentParams,
                  pipe: AugmentPipe) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply drawn parameters: (augmented images, same shape and dtype; labels [b, label_dim] float32).

    Deterministic; row j of the outputs depends only on row j of `images` and `params`.
    Float16/bfloat16 images are transformed in float32 and returned in their own dtype.
    """
    _check_images(images, pipe)
    b, _, h, w = images.shape
    _check_params(params, pipe, b)
    q = params.to(images.device)
    x = images if images.dtype == torch.float64 else images.to(torch.float32)
    labels: dict[str, torch.Tensor] = {}

    if q.xflip is not None:
        x = torch.where(_rows(q.xflip == 1), x.flip(3), x)
        labels["xflip"] = q.xflip
    if q.yflip is not None:
        x = torch.where(_rows(q.yflip == 1), x.flip(2), x)
        labels["yflip"] = q.yflip
    if q.rotate_int is not None:
        x, labels["rotate_int.x"], labels["rotate_int.y"] = _quarter_turns(x, q.rotate_int)
    if q.translate_int is not None:
        x, labels["translate_int.x"], labels["translate_int.y"] = _integer_shift(x, q.translate_int, pipe)

    if any(getattr(pipe, op) > 0 for op in _GEOMETRIC):
        x = _geometric(x, q, pipe)
    if q.scale is not None:
        labels["scale"] = q.scale
    if q.rotate_frac is not None:
        labels["rotate_frac.cos"], labels["rotate_frac.sin"] = q.rotate_frac.cos() - 1, q.rotate_frac.sin()
    if q.aniso is not None:
        stretch, axis = q.aniso.unbind(1)
        labels["aniso.cos"], labels["aniso.sin"] = stretch * axis.cos(), stretch * axis.sin()
    if q.translate_frac is not None:
        labels["translate_frac.x"], labels["translate_frac.y"] = q.translate_frac.unbind(1)

    if any(getattr(pipe, op) > 0 for op in _COLOR):
        x = _color(x, q, pipe)
    for op in ("brightness", "contrast", "lumaflip", "saturation"):
        if getattr(q, op) is not None:
            labels[op] = getattr(q, op)
    if q.hue is not None:
        labels["hue.cos"], labels["hue.sin"] = q.hue.cos() - 1, q.hue.sin()

    zero = torch.zeros(b, dtype=torch.float32, device=images.device)
    out = torch.stack([labels.get(name, zero).to(torch.float32) for name in pipe.label_names], dim=1)
    return x.to(images.dtype), out


# ----------------------------------------------------------------------------------------------
# Checks.

def _check_images(images: torch.Tensor, pipe: AugmentPipe) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = (f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor)
               else type(images).__name__)
        raise ConfigError("augmentation takes a floating-point [batch, channels, height, width] tensor, "
                          f"got {got}")
    _, c, h, w = images.shape
    if h < 2 or w < 2:
        raise ConfigError(f"augmentation needs images of at least 2x2 pixels, got {h}x{w}")
    if pipe.rotate_int > 0 and h != w:
        raise ConfigError(f"rotate_int turns images by quarter turns, which needs square images, got {h}x{w}",
                          hint="set rotate_int=0 for non-square images")
    if c not in (1, 3) and any(getattr(pipe, op) > 0 for op in _COLOR):
        raise ConfigError(f"colour augmentations need 1 (luma) or 3 (RGB) channels, got {c}",
                          hint="set brightness, contrast, lumaflip, hue and saturation to 0")


def _check_params(params: AugmentParams, pipe: AugmentPipe, b: int) -> None:
    for name, value in params._items():
        if (value is None) == pipe.enabled(name):
            state = "enabled" if pipe.enabled(name) else "disabled"
            raise ConfigError(f"augmentation parameters do not match the pipe: {name} is {state} "
                              f"but its parameters are {'missing' if value is None else 'given'}",
                              hint="draw them with draw_augment_params(draws, b, pipe) for the same pipe")
        if value is not None and value.shape[0] != b:
            raise ConfigError(f"augmentation parameters are for {value.shape[0]} samples, the batch has {b}")


# ----------------------------------------------------------------------------------------------
# Pixel blitting.

def _rows(mask: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, 1, 1, 1)


def _quarter_turns(x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn sample j by k_j quarter turns (torch.rot90 on dims (2, 3)) as EDM does: flip x for
    k in {1, 2}, flip y for k in {2, 3}, then transpose for odd k. Labels: the two flips."""
    flip_x, flip_y = (k == 1) | (k == 2), (k == 2) | (k == 3)
    x = torch.where(_rows(flip_x), x.flip(3), x)
    x = torch.where(_rows(flip_y), x.flip(2), x)
    x = torch.where(_rows(k % 2 == 1), x.transpose(2, 3), x)
    return x, flip_x, flip_y


def _mirror(index: torch.Tensor, n: int) -> torch.Tensor:
    """Fold integer coordinates into [0, n) by mirroring about the edge pixels (period 2n - 2)."""
    return (n - 1) - ((n - 1) - index.remainder(2 * n - 2)).abs()


def _integer_shift(x: torch.Tensor, w: torch.Tensor,
                   pipe: AugmentPipe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shift by whole pixels with mirrored edges: out[y, x] = in[y + ty, x - tx] (EDM's signs)."""
    b, c, h, width = x.shape
    tx = (w[:, 0] * (width * pipe.translate_int_max)).round().to(torch.int64)
    ty = (w[:, 1] * (h * pipe.translate_int_max)).round().to(torch.int64)
    cols = _mirror(torch.arange(width, device=x.device)[None] - tx[:, None], width)  # [b, W]
    rows = _mirror(torch.arange(h, device=x.device)[None] + ty[:, None], h)  # [b, H]
    x = x.gather(3, cols[:, None, None, :].expand(b, c, h, width))
    x = x.gather(2, rows[:, None, :, None].expand(b, c, h, width))
    span_x, span_y = width * pipe.translate_int_max, h * pipe.translate_int_max
    return x, tx.to(torch.float32) / span_x, ty.to(torch.float32) / span_y


# ----------------------------------------------------------------------------------------------
# Geometric transforms.

def _rotation(theta: torch.Tensor) -> torch.Tensor:
    """[b, 2, 2] matrices [[cos, -sin], [sin, cos]]."""
    c, s = theta.cos(), theta.sin()
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _geometric(x: torch.Tensor, q: AugmentParams, pipe: AugmentPipe) -> torch.Tensor:
    """Scale, rotate, stretch and translate each sample about the image centre.

    The inverse map (output pixel -> input pixel, centred pixel coordinates) is
    u_in = L (u_out - t), L = 2^(-scale) R(rotation) R(-axis) diag(2^-stretch, 2^stretch) R(axis),
    t = the translation in pixels. Identity samples are returned untouched.
    """
    b, _, h, w = x.shape
    kw = dict(dtype=x.dtype, device=x.device)
    lin = torch.eye(2, **kw).expand(b, 2, 2)
    shift = torch.zeros(b, 2, **kw)
    moving = torch.zeros(b, dtype=torch.bool, device=x.device)
    if q.scale is not None:
        lin = lin * (q.scale * pipe.scale_std).exp2().reciprocal()[:, None, None]
        moving |= q.scale != 0
    if q.rotate_frac is not None:
        lin = lin @ _rotation(q.rotate_frac.to(x.dtype))
        moving |= q.rotate_frac != 0
    if q.aniso is not None:
        stretch, axis = q.aniso.to(x.dtype).unbind(1)
        s = (stretch * pipe.aniso_std).exp2()
        diag = torch.diag_embed(torch.stack([s.reciprocal(), s], -1))
        lin = lin @ _rotation(-axis) @ diag @ _rotation(axis)
        moving |= stretch != 0
    if q.translate_frac is not None:
        shift = q.translate_frac.to(x.dtype) * torch.tensor([w, h], **kw) * pipe.translate_frac_std
        moving |= (q.translate_frac != 0).any(1)
    idx = moving.nonzero().squeeze(1)
    if idx.numel() == 0:
        return x
    out = x.clone()
    out[idx] = _resample(x[idx], lin[idx], shift[idx])
    return out


def _filters(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise Symlet-6 kernels along width [C, 1, 1, 12] and height [C, 1, 12, 1]."""
    h = torch.tensor(SYM6, dtype=x.dtype, device=x.device)
    c = x.shape[1]
    return h.view(1, 1, 1, -1).repeat(c, 1, 1, 1), h.view(1, 1, -1, 1).repeat(c, 1, 1, 1)


def _resample(x: torch.Tensor, lin: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Apply u_in = lin (u_out - shift) to each image (centred pixel coordinates).

    Mirror-pad by size - 1, upsample 2x (zero-stuffing then the synthesis filter: input pixel i
    lands on fine sample 2i), sample bilinearly on a 2x grid reaching `_EDGE` pixels beyond the
    output edges (zeros outside the padding), then filter and take every second sample (the
    analysis filter; with the identity map the round trip is exact, as the filter is orthonormal).
    """
    b, c, h, w = x.shape
    row, col = _filters(x)
    pw, ph = w - 1, h - 1
    x = F.pad(x, [pw, pw, ph, ph], mode="reflect")
    x = F.conv_transpose2d(x, row, stride=(1, 2), padding=(0, len(SYM6) // 2 - 1), groups=c)
    x = F.conv_transpose2d(x, col, stride=(2, 1), padding=(len(SYM6) // 2 - 1, 0), groups=c)
    wide, tall = w + 2 * pw, h + 2 * ph  # padded size; x is now 2 tall x 2 wide

    def centred(n: int) -> torch.Tensor:  # output fine sample k sits at pixel k/2 - _EDGE
        return torch.arange(2 * (n + 2 * _EDGE), dtype=x.dtype, device=x.device) / 2 - _EDGE - (n - 1) / 2

    ux = centred(w)[None, None, :] - shift[:, 0, None, None]  # [b, 1, Wo]
    uy = centred(h)[None, :, None] - shift[:, 1, None, None]  # [b, Ho, 1]
    ix = lin[:, 0, 0, None, None] * ux + lin[:, 0, 1, None, None] * uy
    iy = lin[:, 1, 0, None, None] * ux + lin[:, 1, 1, None, None] * uy
    # A centred input coordinate u is fine sample 2u + (2 * size - 1)/2 - 1/2 of the padded image;
    # grid_sample (align_corners=False) wants (2 * sample + 1) / (2 * size) - 1.
    grid = torch.stack([(2 * ix - 0.5) / wide, (2 * iy - 0.5) / tall], dim=-1)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = F.conv2d(x[:, :, :, 1:], row, stride=(1, 2), groups=c)
    return F.conv2d(x[:, :, 1:, :], col, stride=(2, 1), groups=c)


# ----------------------------------------------------------------------------------------------
# Colour transforms.

def _color(x: torch.Tensor, q: AugmentParams, pipe: AugmentPipe) -> torch.Tensor:
    """Compose each sample's 4x4 affine colour matrix (RGB + 1) and apply it; 1-channel images
    take the mean of its RGB rows (EDM's rule for luma). Identity samples are untouched."""
    b, c, h, w = x.shape
    kw = dict(dtype=x.dtype, device=x.device)
    eye = torch.eye(4, **kw)
    luma = (torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64) / math.sqrt(3)).to(**kw)
    on_luma = torch.outer(luma, luma)
    m = eye.repeat(b, 1, 1)
    changed = torch.zeros(b, dtype=torch.bool, device=x.device)

    def col(v: torch.Tensor) -> torch.Tensor:
        return v.to(x.dtype)[:, None, None]

    if q.brightness is not None:
        offset = eye.repeat(b, 1, 1)
        offset[:, :3, 3] = (q.brightness.to(x.dtype) * pipe.brightness_std)[:, None]
        m = offset @ m
        changed |= q.brightness != 0
    if q.contrast is not None:
        gain = (q.contrast.to(x.dtype) * pipe.contrast_std).exp2()
        m = torch.diag_embed(torch.stack([gain, gain, gain, torch.ones_like(gain)], 1)) @ m
        changed |= q.contrast != 0
    if q.lumaflip is not None:
        m = (eye - 2 * on_luma * col(q.lumaflip)) @ m
        changed |= q.lumaflip != 0
    if q.hue is not None:  # Rodrigues: cos(t) I + (1 - cos(t)) v v^T + sin(t) [v]x, about the luma axis v
        cos, sin = col(q.hue).cos(), col(q.hue).sin()
        v = luma[:3]
        cross = torch.zeros(3, 3, **kw)
        cross[0, 1], cross[0, 2], cross[1, 2] = -v[2], v[1], -v[0]
        cross = cross - cross.T
        turn = eye.repeat(b, 1, 1)
        turn[:, :3, :3] = cos * eye[:3, :3] + (1 - cos) * on_luma[:3, :3] + sin * cross
        m = turn @ m
        changed |= q.hue != 0
    if q.saturation is not None:
        m = (on_luma + (eye - on_luma) * (col(q.saturation) * pipe.saturation_std).exp2()) @ m
        changed |= q.saturation != 0

    flat = x.reshape(b, c, h * w)
    if c == 3:
        y = m[:, :3, :3] @ flat + m[:, :3, 3:]
    else:
        grey = m[:, :3, :].mean(dim=1, keepdim=True)  # [b, 1, 4]
        y = flat * grey[:, :, :3].sum(dim=2, keepdim=True) + grey[:, :, 3:]
    return torch.where(_rows(changed), y.reshape(b, c, h, w), x)
