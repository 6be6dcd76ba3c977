"""Batched, on-device image augmentations with per-sample random parameters.

Every function takes a whole batch ``x`` of float32 images in [0, 1], shape ``[N, C, H, W]``, on
any device, and returns a batch of the same dtype on the same device. Each sample gets its own
random parameters (crop box, flip, jitter factors, blur sigma, ...), drawn in one call for the
whole batch, so the work is a handful of tensor operations instead of ``N`` Python-level calls.
This is what keeps 2 Colab vCPUs from starving a GPU, and what makes SimCLR trainable on a
2-core CPU at all (``benchmarks/augment_throughput.py`` measures the difference).

Randomness. Every random function takes ``generator=`` (a ``torch.Generator``, or ``None`` for
torch's global CPU generator). Parameters are drawn by the course's one rule,
``replearn.train.draw``: **on the generator's device, then moved to the batch's device**. A CPU
generator is therefore always accepted, and a given seed gives the same parameters whether the
batch lives on the CPU or on a GPU; a CUDA generator keeps the draws on the GPU when the batch
is there. Each function draws a fixed number of numbers per call
whatever ``p`` is, so the same seed gives the same result.

Gradients do not flow through augmentations (every public function runs under
``torch.no_grad()``). Ops whose arithmetic can leave [0, 1] clamp their output, as torchvision
does; ``normalize`` is the one exception (its output is meant to leave [0, 1]).

Semantics follow torchvision (``torchvision.transforms.v2``) wherever it has the same op, and the
tests check parity on fixed parameters: crop-box sampling as ``RandomResizedCrop``, bilinear
resizing as ``resized_crop(..., antialias=False)``, brightness/contrast/saturation/hue as
``adjust_*``, grayscale with the ITU-R 601 luma weights, Gaussian blur with reflect padding,
erasing as ``RandomErasing``. Known differences are stated in each docstring.

Order of this file: crop, flip, colour jitter, grayscale, blur, rotation, occlusion (erasing,
cutout, patch masking), normalisation, then the SimCLR composition and the named pipelines used
by the ablations. Each random op sits next to the deterministic op it draws parameters for
(``sample_crop_boxes`` / ``resized_crop``, ``adjust_*``, ``blur``, ``erase``).

>>> g = torch.Generator().manual_seed(0)
>>> x = torch.rand(8, 3, 32, 32, generator=g)  # [N, C, H, W]
>>> v1, v2 = two_views(x, SimCLRAugment(size=32), generator=g)
>>> v1.shape, v1.dtype, bool(v1.min() >= 0 and v1.max() <= 1)
(torch.Size([8, 3, 32, 32]), torch.float32, True)
>>> sorted(PIPELINES)
['color', 'crop', 'crop+color', 'crop+color+blur', 'none']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from replearn.train import draw

__all__ = [
    "GRAY_WEIGHTS",
    "sample_crop_boxes",
    "resized_crop",
    "random_resized_crop",
    "random_horizontal_flip",
    "rgb_to_grayscale",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "color_jitter",
    "random_grayscale",
    "simclr_blur_kernel_size",
    "blur",
    "gaussian_blur",
    "rotate90",
    "random_rotate90",
    "sample_erasing_boxes",
    "erase",
    "random_erasing",
    "cutout",
    "mask_patches",
    "normalize",
    "denormalize",
    "SimCLRAugment",
    "simclr_augment",
    "two_views",
    "PIPELINES",
    "get_pipeline",
]

# ITU-R BT.601 luma weights, the values torchvision's rgb_to_grayscale uses.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

Size = int | tuple[int, int]


# ---------------------------------------------------------------------------------------------
# Input checks and random draws
# ---------------------------------------------------------------------------------------------


def _check_images(x: torch.Tensor, name: str = "x", channels: Sequence[int] | None = None) -> None:
    """Raise a clear error unless ``x`` is a float32 batch ``[N, C, H, W]``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N, C, H, W]; got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{name} must be a batch of images [N, C, H, W]; got shape {tuple(x.shape)}. "
            "For a single image [C, H, W] pass x.unsqueeze(0)."
        )
    if x.dtype != torch.float32:
        raise TypeError(
            f"{name} must be float32 in [0, 1]; got {x.dtype}. "
            "Convert uint8 images with replearn.data.to_float(x) (or x.float() / 255)."
        )
    if channels is not None and x.shape[1] not in channels:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, channels))} channels; got {x.shape[1]} "
            f"(shape {tuple(x.shape)}). Images are [N, C, H, W], channels first."
        )


def _check_probability(p: float, name: str = "p") -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1]; got {p}")


def _check_range(values: Sequence[float], name: str, low: float = 0.0) -> tuple[float, float]:
    """A ``(min, max)`` pair with ``low < min <= max``."""
    if len(values) != 2 or not (low < values[0] <= values[1]):
        raise ValueError(f"{name} must be a pair (min, max) with {low} < min <= max; got {values}")
    return float(values[0]), float(values[1])


def _pair(size: Size, name: str = "size") -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name} must be a positive int or a pair (height, width); got {size}")
    return int(size[0]), int(size[1])


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) float32 numbers drawn on the generator's device, moved to ``device``."""
    return draw(torch.rand, shape, generator=generator, device=device)


def _randint(high: int, shape: tuple[int, ...], generator: torch.Generator | None, device):
    """Integers uniform in [0, high) drawn on the generator's device, moved to ``device``."""
    return draw(torch.randint, 0, high, shape, generator=generator, device=device)


def _per_sample(value: float | torch.Tensor, n: int, x: torch.Tensor) -> torch.Tensor:
    """A scalar or ``[N]`` parameter as a ``[N, 1, 1, 1]`` tensor on ``x``'s device."""
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if value.dim() == 0:
        value = value.expand(n)
    if value.shape != (n,):
        raise ValueError(f"expected a number or a tensor of shape [{n}]; got {tuple(value.shape)}")
    return value.view(n, 1, 1, 1)


def _apply_to_chosen(x: torch.Tensor, chosen: torch.Tensor, op) -> torch.Tensor:
    """Run ``op(x[idx], idx)`` on the chosen samples only (``chosen``: bool ``[N]``); copy the rest.

    Cheaper than computing the op for every sample and selecting with ``torch.where``: the
    skipped samples cost nothing.
    """
    idx = chosen.nonzero().squeeze(1)  # [N_chosen]
    if len(idx) == len(x):
        return op(x, idx)
    out = x.clone()  # [N, C, H, W]
    if len(idx) > 0:
        out[idx] = op(x[idx], idx)
    return out


# ---------------------------------------------------------------------------------------------
# Random resized crop
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device=None,
    attempts: int = 10,
) -> torch.Tensor:
    """Crop boxes ``[N, 4]`` (top, left, height, width; int64) as torchvision samples them.

    Same rule as ``torchvision.transforms.v2.RandomResizedCrop.make_params``, vectorised: up to
    ``attempts`` tries per sample draw an area fraction uniformly in ``scale`` and a log-aspect
    ratio (width / height) uniformly in ``log(ratio)``, round the sides, and keep the first try
    that fits; a sample with no fitting try falls back to the central crop clamped to ``ratio``.
    The offset is uniform over every position where the box fits.
    """
    lo_scale, hi_scale = _check_range(scale, "scale")
    lo_ratio, hi_ratio = _check_range(ratio, "ratio")
    device = torch.device("cpu") if device is None else device
    u = _rand((n, 2 * attempts + 2), generator, device)  # [N, 2T+2]
    u_area, u_ratio, u_pos = u[:, :attempts], u[:, attempts : 2 * attempts], u[:, -2:]
    target_area = height * width * (lo_scale + (hi_scale - lo_scale) * u_area)  # [N, T]
    log_lo, log_hi = math.log(lo_ratio), math.log(hi_ratio)
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)  # [N, T]
    w = torch.round(torch.sqrt(target_area * aspect))  # [N, T]  (round half to even, as Python)
    h = torch.round(torch.sqrt(target_area / aspect))  # [N, T]
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # [N, T]
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # [N, 1] first fitting try
    w = w.gather(1, first).squeeze(1)  # [N]
    h = h.gather(1, first).squeeze(1)  # [N]

    # Fallback (no try fits): the whole image, cut down to the nearest allowed aspect ratio.
    in_ratio = width / height
    if in_ratio < lo_ratio:
        fb_w, fb_h = width, int(round(width / lo_ratio))
    elif in_ratio > hi_ratio:
        fb_w, fb_h = int(round(height * hi_ratio)), height
    else:
        fb_w, fb_h = width, height
    found = fits.any(dim=1)  # [N]
    w = torch.where(found, w, torch.full_like(w, fb_w))  # [N]
    h = torch.where(found, h, torch.full_like(h, fb_h))  # [N]
    # Offsets uniform in {0, ..., H - h} and {0, ..., W - w}; central for the fallback.
    top = torch.minimum(torch.floor(u_pos[:, 0] * (height - h + 1)), height - h)  # [N]
    left = torch.minimum(torch.floor(u_pos[:, 1] * (width - w + 1)), width - w)  # [N]
    top = torch.where(found, top, torch.full_like(top, (height - fb_h) // 2))  # [N]
    left = torch.where(found, left, torch.full_like(left, (width - fb_w) // 2))  # [N]
    return torch.stack([top, left, h, w], dim=1).long()  # [N, 4]


def _box_axis_coords(
    start: torch.Tensor, length: torch.Tensor, out_len: int, in_len: int
) -> torch.Tensor:
    """Normalised sampling positions ``[N, out_len]`` along one axis of each box.

    Output pixel ``q`` reads input position ``start + (q + 0.5) * length / out_len - 0.5``,
    clamped to the box: exactly what ``F.interpolate(mode="bilinear", align_corners=False)`` does
    on the cropped image. The result is in grid_sample's ``align_corners=False`` units.
    """
    q = torch.arange(out_len, device=start.device, dtype=torch.float32) + 0.5  # [out]
    src = q * (length[:, None] / out_len) - 0.5  # [N, out] position inside the box
    src = torch.minimum(src.clamp(min=0.0), length[:, None] - 1)  # [N, out] stay inside the box
    return (2.0 * (start[:, None] + src) + 1.0) / in_len - 1.0  # [N, out]


@torch.no_grad()
def resized_crop(
    x: torch.Tensor, boxes: torch.Tensor, size: Size, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Crop box ``boxes[i]`` out of image ``i`` and resize it bilinearly to ``size``.

    Args:
        x: images, shape ``[N, C, H, W]``, float32.
        boxes: ``[N, 4]`` integer (top, left, height, width), e.g. from ``sample_crop_boxes``.
        size: output side, or ``(height, width)``.
        flip: optional bool ``[N]``; those crops are also mirrored left-right, for free (the
            sampling grid is read backwards), which is how ``SimCLRAugment`` flips.

    Returns:
        ``[N, C, size_h, size_w]``. Matches torchvision's ``resized_crop(..., antialias=False)``;
        that also equals its default ``antialias=True`` whenever a box is no larger than the
        output (always the case when the output has the input's size, as in SimCLR on CIFAR).
        Shrinking a large box is not low-pass filtered first, so it can alias.
    """
    _check_images(x)
    out_h, out_w = _pair(size)
    n, _, height, width = x.shape
    if boxes.shape != (n, 4):
        raise ValueError(f"boxes must be [N, 4] = [{n}, 4] (top, left, h, w); got {boxes.shape}")
    top, left, h, w = boxes.to(device=x.device, dtype=torch.float32).unbind(1)  # [N] each
    gy = _box_axis_coords(top, h, out_h, height)  # [N, out_h]
    gx = _box_axis_coords(left, w, out_w, width)  # [N, out_w]
    if flip is not None:
        gx = torch.where(flip.to(x.device).view(n, 1), gx.flip(1), gx)  # [N, out_w]
    grid = torch.stack(
        [gx[:, None, :].expand(n, out_h, out_w), gy[:, :, None].expand(n, out_h, out_w)], dim=-1
    )  # [N, out_h, out_w, 2]  (x, y) order, as grid_sample expects
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0)  # [N, C, out_h, out_w]


@torch.no_grad()
def random_resized_crop(
    x: torch.Tensor,
    size: Size,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inception-style random crop, resized to ``size``, with a different box per sample.

    SimCLR (Chen et al., 2020, arXiv:2002.05709, Appendix A) uses "a crop of random size
    (uniform from 0.08 to 1.0 in area) of the original size and a random aspect ratio
    (default: of 3/4 to 4/3)". The boxes follow torchvision's ``RandomResizedCrop`` sampling
    (``sample_crop_boxes``); the resize is ``resized_crop``.

    Shapes: ``[N, C, H, W]`` -> ``[N, C, size_h, size_w]``.
    """
    _check_images(x)
    boxes = sample_crop_boxes(len(x), x.shape[2], x.shape[3], scale, ratio, generator, x.device)
    return resized_crop(x, boxes, size)  # [N, C, size_h, size_w]


# ---------------------------------------------------------------------------------------------
# Horizontal flip
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def random_horizontal_flip(
    x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``. Shapes: ``[N, C, H, W]`` -> same."""
    _check_images(x)
    _check_probability(p)
    flip = _rand((len(x),), generator, x.device) < p  # [N]
    return _apply_to_chosen(x, flip, lambda chosen, idx: chosen.flip(-1))  # [N, C, H, W]


# ---------------------------------------------------------------------------------------------
# Colour: the four jitter ops with per-sample factors, then jitter and grayscale
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma ``0.2989 R + 0.587 G + 0.114 B`` (ITU-R 601, as torchvision). ``[N, 3|1, H, W] -> [N, 1, H, W]``."""
    _check_images(x, channels=(1, 3))
    if x.shape[1] == 1:
        return x.clone()
    wr, wg, wb = GRAY_WEIGHTS
    return x[:, 0:1] * wr + x[:, 1:2] * wg + x[:, 2:3] * wb  # [N, 1, H, W]


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor * a + (1 - factor) * b``, clamped to [0, 1] (torchvision's ``_blend``)."""
    return (factor * a + (1.0 - factor) * b).clamp_(0.0, 1.0)


@torch.no_grad()
def adjust_brightness(x: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """Scale intensities by ``factor`` (number or ``[N]``); 1 keeps the image. Same shape out."""
    _check_images(x, channels=(1, 3))
    return (x * _per_sample(factor, len(x), x)).clamp_(0.0, 1.0)  # [N, C, H, W]


@torch.no_grad()
def adjust_contrast(x: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean grey level; ``factor`` (number or ``[N]``) 1 keeps it."""
    _check_images(x, channels=(1, 3))
    mean = rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # [N, 1, 1, 1]
    return _blend(x, mean, _per_sample(factor, len(x), x))  # [N, C, H, W]


@torch.no_grad()
def adjust_saturation(x: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """Blend each image with its grayscale version; ``factor`` 0 gives grey, 1 keeps the image.

    A one-channel batch is returned unchanged (as torchvision and PIL do).
    """
    _check_images(x, channels=(1, 3))
    if x.shape[1] == 1:
        return x.clone()
    return _blend(x, rgb_to_grayscale(x), _per_sample(factor, len(x), x))  # [N, 3, H, W]


@torch.no_grad()
def adjust_hue(x: torch.Tensor, shift: float | torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns (number or ``[N]``, in [-0.5, 0.5]), exactly, in HSV.

    We use the exact RGB -> HSV -> RGB round trip, as torchvision's ``adjust_hue`` and PIL do,
    rather than a rotation of the chroma plane in YIQ: the HSV shift keeps each pixel's maximum
    and minimum channel (so value and saturation are unchanged and the result stays in [0, 1]
    with no clamping), and it agrees with torchvision to float precision, which the tests check.
    A YIQ rotation is a little cheaper but changes the luma-chroma balance differently and
    leaves the RGB cube for saturated colours.

    Hue is measured in sextants ``h`` in [0, 6); the inverse map is the branch-free form
    ``channel = min + C * clamp(|((h + n) mod 6) - 3| - 1, 0, 1)`` with ``n = 0, 4, 2`` for
    R, G, B (C = max - min channel). A one-channel batch is returned unchanged.
    """
    _check_images(x, channels=(1, 3))
    if x.shape[1] == 1:
        return x.clone()
    shift = _per_sample(shift, len(x), x)  # [N, 1, 1, 1]
    if shift.abs().max() > 0.5:
        raise ValueError(
            f"hue shift must lie in [-0.5, 0.5] turns; got max |shift| {shift.abs().max()}"
        )
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]  # [N, 1, H, W] each
    value = x.amax(dim=1, keepdim=True)  # [N, 1, H, W]  V
    minimum = x.amin(dim=1, keepdim=True)  # [N, 1, H, W]
    chroma = value - minimum  # [N, 1, H, W]  C = max - min
    # Which channel is the maximum (ties: R before G before B), as 0/1 floats; masks and
    # arithmetic are several times faster than torch.where on the CPU.
    is_r = (value == r).to(x.dtype)  # [N, 1, H, W]
    is_g = (value == g).to(x.dtype) * (1.0 - is_r)  # [N, 1, H, W]
    is_b = 1.0 - is_r - is_g  # [N, 1, H, W]
    numerator = is_r * (g - b) + is_g * (b - r) + is_b * (r - g)  # [N, 1, H, W]
    safe_chroma = chroma + (chroma == 0).to(x.dtype)  # [N, 1, H, W] grey pixels: divide by 1
    sextant = 2.0 * is_g + 4.0 * is_b + 6.0 * shift  # [N, 1, H, W] base of each sextant + shift
    hue = torch.addcdiv(sextant, numerator, safe_chroma)  # [N, 1, H, W] rotated hue, sextants
    k = (hue + _HSV_CHANNEL_OFFSETS.to(x.device)).remainder_(6.0)  # [N, 3, H, W] in [0, 6)
    weight = (k - 3.0).abs_().sub_(1.0).clamp_(0.0, 1.0)  # [N, 3, H, W]
    return torch.addcmul(minimum, chroma, weight).clamp_(0.0, 1.0)  # [N, 3, H, W]


# n in the HSV -> RGB formula of adjust_hue, for R, G, B.
_HSV_CHANNEL_OFFSETS = torch.tensor([0.0, 4.0, 2.0]).view(1, 3, 1, 1)


def _factor_range(strength: float | Sequence[float], name: str) -> tuple[float, float]:
    """torchvision's ColorJitter convention: ``s`` means factors in ``[max(0, 1 - s), 1 + s]``."""
    if isinstance(strength, (int, float)):
        if strength < 0:
            raise ValueError(f"{name} strength must be >= 0; got {strength}")
        return max(0.0, 1.0 - strength), 1.0 + strength
    lo, hi = strength
    if not 0.0 <= lo <= hi:
        raise ValueError(f"{name} range must satisfy 0 <= min <= max; got {strength}")
    return float(lo), float(hi)


def _hue_range(strength: float | Sequence[float]) -> tuple[float, float]:
    """``h`` means shifts in ``[-h, h]`` turns, with ``0 <= h <= 0.5`` (as torchvision)."""
    if isinstance(strength, (int, float)):
        if not 0.0 <= strength <= 0.5:
            raise ValueError(f"hue strength must lie in [0, 0.5]; got {strength}")
        return -float(strength), float(strength)
    lo, hi = strength
    if not -0.5 <= lo <= hi <= 0.5:
        raise ValueError(f"hue range must satisfy -0.5 <= min <= max <= 0.5; got {strength}")
    return float(lo), float(hi)


@torch.no_grad()
def color_jitter(
    x: torch.Tensor,
    brightness: float | Sequence[float] = 0.4,
    contrast: float | Sequence[float] = 0.4,
    saturation: float | Sequence[float] = 0.4,
    hue: float | Sequence[float] = 0.1,
    p: float = 0.8,
    random_order: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue, each sample with its own factors.

    Strengths follow torchvision's ``ColorJitter``: a number ``s`` gives factors uniform in
    ``[max(0, 1 - s), 1 + s]`` (hue: shifts uniform in ``[-s, s]`` turns), a pair gives the range
    itself; strength 0 skips the op. Each sample is jittered with probability ``p``
    (``RandomApply(ColorJitter, p)``); the others pass through untouched.

    Order. torchvision draws a new order of the four ops for every image. Here one random order
    is drawn per call (per batch; ``two_views`` draws one per view), because a per-image order
    would split the batch into up to 24 groups. ``random_order=False`` uses the fixed order
    brightness, contrast, saturation, hue.

    SimCLR's colour distortion is ``ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)`` applied with
    p = 0.8 (Chen et al., 2020, Appendix A pseudocode); the defaults here are ``s = 0.5``, the
    strength SimCLR uses on CIFAR-10 (Appendix B.9).

    Shapes: ``[N, 3, H, W]`` -> same (``[N, 1, H, W]`` is allowed when saturation and hue are 0).
    """
    _check_images(x, channels=(1, 3))
    _check_probability(p)
    ranges = {
        "brightness": _factor_range(brightness, "brightness"),
        "contrast": _factor_range(contrast, "contrast"),
        "saturation": _factor_range(saturation, "saturation"),
        "hue": _hue_range(hue),
    }
    identity = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
    if x.shape[1] == 1 and (ranges["saturation"] != (1.0, 1.0) or ranges["hue"] != (0.0, 0.0)):
        raise ValueError("saturation and hue jitter need RGB images [N, 3, H, W]; set them to 0")
    ops = {
        "brightness": adjust_brightness,
        "contrast": adjust_contrast,
        "saturation": adjust_saturation,
        "hue": adjust_hue,
    }
    names = list(ops)
    u = _rand((len(x), 5), generator, x.device)  # [N, 5] four factors + apply
    order = list(range(4))
    if random_order:
        order = draw(torch.randperm, 4, generator=generator).tolist()
    active = [i for i in order if ranges[names[i]] != (identity[names[i]],) * 2]  # 0: skip

    def jitter(chosen: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        for op_index in active:
            lo, hi = ranges[names[op_index]]
            factor = lo + (hi - lo) * u[idx, op_index]  # [N_chosen]
            chosen = ops[names[op_index]](chosen, factor)  # [N_chosen, C, H, W]
        return chosen

    return _apply_to_chosen(x, u[:, 4] < p, jitter)  # [N, C, H, W]


@torch.no_grad()
def random_grayscale(
    x: torch.Tensor, p: float = 0.2, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each RGB image by its luma on all three channels with probability ``p``.

    SimCLR's "colour drop" (``RandomGrayscale(p=0.2)``, Chen et al., 2020, Appendix A).
    Shapes: ``[N, 3, H, W]`` -> same.
    """
    _check_images(x, channels=(3,))
    _check_probability(p)
    drop = _rand((len(x),), generator, x.device) < p  # [N]
    to_gray = lambda chosen, idx: rgb_to_grayscale(chosen).expand_as(chosen)
    return _apply_to_chosen(x, drop, to_gray)  # [N, 3, H, W]


# ---------------------------------------------------------------------------------------------
# Gaussian blur
# ---------------------------------------------------------------------------------------------


def simclr_blur_kernel_size(image_size: int) -> int:
    """SimCLR's blur kernel: about 10% of the image side, made odd.

    The official code (google-research/simclr ``data_util.random_blur``) passes
    ``kernel_size=height // 10`` and ``gaussian_blur`` uses ``2 * (kernel_size // 2) + 1``.

    >>> simclr_blur_kernel_size(224), simclr_blur_kernel_size(32), simclr_blur_kernel_size(96)
    (23, 3, 9)
    """
    return 2 * ((image_size // 10) // 2) + 1


@torch.no_grad()
def blur(x: torch.Tensor, kernel_size: int, sigma: float | torch.Tensor) -> torch.Tensor:
    """Gaussian blur with one ``sigma`` per sample (number or ``[N]``), reflect padding.

    The kernel is ``exp(-t^2 / (2 sigma^2))`` at integer offsets ``t`` in
    ``[-(k-1)/2, (k-1)/2]``, normalised to sum 1, applied as two 1-D passes (rows, then columns)
    with one group per (sample, channel), so every sample has its own kernel in one conv call.
    This is torchvision's ``gaussian_blur`` with per-sample sigma.
    Shapes: ``[N, C, H, W]`` -> same.
    """
    _check_images(x)
    n, c, height, width = x.shape
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int; got {kernel_size}")
    half = kernel_size // 2
    if half >= min(height, width):
        raise ValueError(
            f"kernel_size {kernel_size} is too large for {height}x{width} images "
            f"(reflect padding needs kernel_size // 2 < {min(height, width)})"
        )
    sigma = _per_sample(sigma, n, x).view(n, 1)  # [N, 1]
    if (sigma <= 0).any():
        raise ValueError("sigma must be positive")
    offsets = torch.arange(kernel_size, dtype=x.dtype, device=x.device) - half  # [k]
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)  # [N, k]
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [N, k]
    kernel = kernel.repeat_interleave(c, dim=0)  # [N*C, k] one kernel per (sample, channel)
    planes = x.reshape(1, n * c, height, width)  # [1, N*C, H, W]
    planes = F.pad(planes, (half, half, half, half), mode="reflect")  # [1, N*C, H+2h, W+2h]
    planes = F.conv2d(planes, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)  # along W
    planes = F.conv2d(planes, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)  # along H
    return planes.view(n, c, height, width).clamp_(0.0, 1.0)  # [N, C, H, W]


@torch.no_grad()
def gaussian_blur(
    x: torch.Tensor,
    kernel_size: int | None = None,
    sigma: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blur each sample with probability ``p``, with its own sigma uniform in ``sigma``.

    SimCLR: "we blur the image 50% of the time using a Gaussian kernel. We randomly sample
    sigma in [0.1, 2.0], and the kernel size is set to be 10% of the image height/width"
    (Chen et al., 2020, Appendix A). ``kernel_size=None`` uses that rule
    (``simclr_blur_kernel_size``). Shapes: ``[N, C, H, W]`` -> same.
    """
    _check_images(x)
    _check_probability(p)
    lo, hi = _check_range(sigma, "sigma")
    if kernel_size is None:
        kernel_size = simclr_blur_kernel_size(x.shape[2])
    if kernel_size < 1 or kernel_size % 2 == 0 or kernel_size // 2 >= min(x.shape[2:]):
        raise ValueError(
            f"kernel_size must be a positive odd int with kernel_size // 2 < min(H, W) = "
            f"{min(x.shape[2:])}; got {kernel_size}"
        )
    u = _rand((len(x), 2), generator, x.device)  # [N, 2] sigma, apply
    if kernel_size == 1:
        return x.clone()  # a 1-tap kernel is the identity
    sigmas = lo + (hi - lo) * u[:, 0]  # [N]
    blur_some = lambda chosen, idx: blur(chosen, kernel_size, sigmas[idx])
    return _apply_to_chosen(x, u[:, 1] < p, blur_some)  # [N, C, H, W]


# ---------------------------------------------------------------------------------------------
# Rotation by quarter turns
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def rotate90(x: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
    """Rotate by ``k`` quarter turns counter-clockwise (``torch.rot90`` on the H, W axes).

    ``k`` is one int for the whole batch, or an integer tensor ``[N]`` with one ``k`` per sample
    (then the images must be square, so that every output has the same shape).
    """
    _check_images(x)
    if isinstance(k, int):
        return torch.rot90(x, k, dims=(2, 3))  # [N, C, W, H] for odd k, else [N, C, H, W]
    if k.shape != (len(x),) or k.is_floating_point():
        raise ValueError(f"k must be an int or an integer tensor [N] = [{len(x)}]; got {k}")
    if x.shape[2] != x.shape[3]:
        raise ValueError(
            f"per-sample rotations need square images; got H={x.shape[2]}, W={x.shape[3]}. "
            "Crop or resize first, or pass one int k for the whole batch."
        )
    k = k.to(x.device).remainder(4)  # [N]
    out = torch.empty_like(x)  # [N, C, H, W]
    for quarter_turns in range(4):
        chosen = k == quarter_turns  # [N]
        out[chosen] = torch.rot90(x[chosen], quarter_turns, dims=(2, 3))
    return out


@torch.no_grad()
def random_rotate90(
    x: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each square image by a random multiple of 90 degrees; return it and ``k`` ``[N]``.

    The label ``k`` (0, 1, 2, 3 quarter turns counter-clockwise) is the RotNet pretext target
    (Gidaris et al., 2018, "Unsupervised Representation Learning by Predicting Image
    Rotations", arXiv:1803.07728).
    """
    _check_images(x)
    k = _randint(4, (len(x),), generator, x.device)  # [N] int64
    return rotate90(x, k), k


# ---------------------------------------------------------------------------------------------
# Occlusion: random erasing, cutout, patch masking
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_erasing_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    generator: torch.Generator | None = None,
    device=None,
    attempts: int = 10,
) -> torch.Tensor:
    """Erasing boxes ``[N, 4]`` (top, left, height, width) as torchvision's ``RandomErasing``.

    Up to ``attempts`` tries draw an area fraction in ``scale`` and a log-aspect ratio
    (height / width, note: the reverse of the crop's) in ``log(ratio)``; the first box strictly
    smaller than the image wins. A sample with no such try gets an empty box (height 0): its
    image is left as it is, as torchvision does.
    """
    lo_scale, hi_scale = _check_range(scale, "scale")
    lo_ratio, hi_ratio = _check_range(ratio, "ratio")
    device = torch.device("cpu") if device is None else device
    u = _rand((n, 2 * attempts + 2), generator, device)  # [N, 2T+2]
    u_area, u_ratio, u_pos = u[:, :attempts], u[:, attempts : 2 * attempts], u[:, -2:]
    area = height * width * (lo_scale + (hi_scale - lo_scale) * u_area)  # [N, T]
    log_lo, log_hi = math.log(lo_ratio), math.log(hi_ratio)
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)  # [N, T]
    h = torch.round(torch.sqrt(area * aspect))  # [N, T]
    w = torch.round(torch.sqrt(area / aspect))  # [N, T]
    fits = (h < height) & (w < width)  # [N, T]
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # [N, 1]
    found = fits.any(dim=1)  # [N]
    h = torch.where(found, h.gather(1, first).squeeze(1), torch.zeros_like(found, dtype=h.dtype))
    w = torch.where(found, w.gather(1, first).squeeze(1), torch.zeros_like(found, dtype=w.dtype))
    top = torch.minimum(torch.floor(u_pos[:, 0] * (height - h + 1)), height - h)  # [N]
    left = torch.minimum(torch.floor(u_pos[:, 1] * (width - w + 1)), width - w)  # [N]
    return torch.stack([top, left, h, w], dim=1).long()  # [N, 4]


def _box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boolean ``[N, 1, H, W]``, True inside each sample's box (top, left, height, width)."""
    top, left, h, w = boxes.unbind(1)  # [N] each
    rows = torch.arange(height, device=boxes.device)  # [H]
    cols = torch.arange(width, device=boxes.device)  # [W]
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # [N, H]
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # [N, W]
    return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)  # [N, 1, H, W]


def _fill_value(value: float | Sequence[float], x: torch.Tensor) -> torch.Tensor:
    """A fill value as ``[1, C, 1, 1]`` (one number, or one per channel), checked to be in [0, 1]."""
    fill = torch.as_tensor(value, dtype=x.dtype, device=x.device).flatten()  # [1] or [C]
    if fill.numel() not in (1, x.shape[1]):
        raise ValueError(f"value must be one number or {x.shape[1]} (one per channel); got {value}")
    if (fill < 0).any() or (fill > 1).any():
        raise ValueError(f"value must lie in [0, 1] (images are in [0, 1]); got {value}")
    return fill.view(1, -1, 1, 1)


@torch.no_grad()
def erase(
    x: torch.Tensor, boxes: torch.Tensor, value: float | Sequence[float] = 0.0
) -> torch.Tensor:
    """Fill box ``boxes[i]`` (top, left, height, width) of image ``i`` with ``value``."""
    _check_images(x)
    mask = _box_mask(boxes.to(x.device), x.shape[2], x.shape[3])  # [N, 1, H, W]
    return torch.where(mask, _fill_value(value, x), x)  # [N, C, H, W]


@torch.no_grad()
def random_erasing(
    x: torch.Tensor,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float | Sequence[float] = 0.0,
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random erasing (Zhong et al., 2020, arXiv:1708.04896) with torchvision's defaults.

    With probability ``p`` each sample gets one rectangle filled with ``value`` (one number or
    one per channel; torchvision's ``value="random"`` noise is not offered, since noise would
    leave [0, 1]). Boxes come from ``sample_erasing_boxes``. Shapes: ``[N, C, H, W]`` -> same.
    """
    _check_images(x)
    _check_probability(p)
    boxes = sample_erasing_boxes(len(x), x.shape[2], x.shape[3], scale, ratio, generator, x.device)
    apply = _rand((len(x),), generator, x.device) < p  # [N]
    boxes[~apply, 2:] = 0  # an empty box leaves the sample unchanged
    return erase(x, boxes, value)  # [N, C, H, W]


@torch.no_grad()
def cutout(
    x: torch.Tensor,
    size: int,
    value: float | Sequence[float] = 0.0,
    p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cutout (DeVries and Taylor, 2017, arXiv:1708.04552): zero a square at a random centre.

    The centre is uniform over all pixels and the square (side ``2 * (size // 2)``, the span the
    authors' reference code fills) is clipped at the image border, so a square near the border
    is only partly inside (at least a quarter of it always is). With probability ``1 - p`` a
    sample is left as it is. Shapes: ``[N, C, H, W]`` -> same.
    """
    _check_images(x)
    _check_probability(p)
    if size < 0:
        raise ValueError(f"cutout size must be >= 0 pixels; got {size}")
    n, _, height, width = x.shape
    centre_y = _randint(height, (n,), generator, x.device)  # [N]
    centre_x = _randint(width, (n,), generator, x.device)  # [N]
    apply = _rand((n,), generator, x.device) < p  # [N]
    half = size // 2
    top, bottom = (centre_y - half).clamp(min=0), (centre_y + half).clamp(max=height)  # [N]
    left, right = (centre_x - half).clamp(min=0), (centre_x + half).clamp(max=width)  # [N]
    boxes = torch.stack([top, left, bottom - top, right - left], dim=1)  # [N, 4]
    boxes[~apply, 2:] = 0
    return erase(x, boxes, value)  # [N, C, H, W]


@torch.no_grad()
def mask_patches(
    x: torch.Tensor,
    patch_size: int,
    mask_ratio: float = 0.75,
    value: float | Sequence[float] = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide a random subset of non-overlapping ``p x p`` patches of each image, in pixel space.

    Each sample loses exactly ``L - int(L * (1 - mask_ratio))`` of its ``L`` patches, chosen by
    sorting per-sample uniform noise, the shuffle MAE uses (He et al., 2021, arXiv:2111.06377).
    This is the picture of masking for plots and for pixel-space baselines; MAE itself drops the
    masked tokens inside the encoder (the assignment's ``random_masking``).

    Returns:
        ``(x_masked [N, C, H, W], mask [N, L])`` with ``mask`` True where a patch is hidden,
        patches in row-major order (``L = (H / p) * (W / p)``).
    """
    _check_images(x)
    n, _, height, width = x.shape
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide the image size {height}x{width}")
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1); got {mask_ratio}")
    grid_h, grid_w = height // patch_size, width // patch_size
    num_patches = grid_h * grid_w
    num_keep = int(num_patches * (1 - mask_ratio))
    noise = _rand((n, num_patches), generator, x.device)  # [N, L]
    rank = noise.argsort(dim=1).argsort(dim=1)  # [N, L] rank of each patch's noise
    mask = rank >= num_keep  # [N, L] the num_keep lowest-noise patches stay visible
    pixel_mask = mask.view(n, 1, grid_h, 1, grid_w, 1)  # [N, 1, gh, 1, gw, 1]
    pixel_mask = pixel_mask.expand(n, 1, grid_h, patch_size, grid_w, patch_size)
    pixel_mask = pixel_mask.reshape(n, 1, height, width)  # [N, 1, H, W]
    return torch.where(pixel_mask, _fill_value(value, x), x), mask


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------


def _channel_stats(mean, std, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).flatten()  # [C]
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).flatten()  # [C]
    c = x.shape[1]
    if mean.numel() not in (1, c) or std.numel() not in (1, c):
        raise ValueError(f"mean and std need 1 or {c} values (one per channel); got {mean}, {std}")
    if (std <= 0).any():
        raise ValueError(f"std must be positive; got {std.tolist()}")
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)


@torch.no_grad()
def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(x - mean) / std``. The output is meant to leave [0, 1]. Same shape out."""
    _check_images(x)
    mean_, std_ = _channel_stats(mean, std, x)
    return (x - mean_) / std_  # [N, C, H, W]


@torch.no_grad()
def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo ``normalize``: ``x * std + mean``, clamped to [0, 1] for display. Same shape out."""
    _check_images(x)
    mean_, std_ = _channel_stats(mean, std, x)
    return (x * std_ + mean_).clamp_(0.0, 1.0)  # [N, C, H, W]


# ---------------------------------------------------------------------------------------------
# SimCLR composition and named pipelines
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimCLRAugment:
    """SimCLR's augmentation of one view, batched: crop+flip, colour distortion, optional blur.

    SimCLR "sequentially appl[ies] three simple augmentations: random cropping followed by
    resize back to the original size, random color distortions, and random Gaussian blur"
    (Chen et al., 2020, arXiv:2002.05709, Sec. 2.1). Appendix A gives the parameters: crop area
    uniform in [0.08, 1] with aspect ratio in [3/4, 4/3], always followed by a horizontal flip
    with probability 0.5; colour distortion ``ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)`` applied with
    p = 0.8, then grayscale with p = 0.2; blur with p = 0.5, sigma in [0.1, 2.0], kernel 10% of
    the side. For CIFAR-10 (Appendix B.9): "we use the same Inception crop (flip and resize to
    32x32) as ImageNet, and color distortion (strength=0.5), leaving out Gaussian blur"; the
    authors' CIFAR-10 command (google-research/simclr README) likewise passes
    ``--use_blur=False --color_jitter_strength=0.5``. Those are the defaults here.

    Call it as ``aug(x, generator) -> view`` on a batch ``[N, C, H, W]`` (float32 in [0, 1]);
    the view is ``[N, C, size, size]``. Parameters are drawn per sample; the jitter order per call.
    """

    size: int = 32  # output side in pixels
    crop: bool = True  # random resized crop + horizontal flip
    crop_scale: tuple[float, float] = (0.08, 1.0)  # area fraction of the crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio (width / height) of the crop
    flip_p: float = 0.5  # horizontal flip probability (part of the crop step)
    color: bool = True  # colour jitter + random grayscale
    jitter_strength: float = 0.5  # s: ColorJitter(0.8s, 0.8s, 0.8s, 0.2s); 0.5 on CIFAR-10
    jitter_p: float = 0.8  # probability of applying the jitter
    grayscale_p: float = 0.2  # probability of colour drop
    blur: bool = False  # Gaussian blur (off for CIFAR-10 in SimCLR)
    blur_p: float = 0.5  # probability of blurring a sample
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # sigma range in pixels
    blur_kernel_size: int | None = None  # None: about 10% of `size`, odd

    @property
    def jitter(self) -> tuple[float, float, float, float]:
        """(brightness, contrast, saturation, hue) strengths: (0.8s, 0.8s, 0.8s, 0.2s)."""
        s = self.jitter_strength
        return 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            _check_images(x, channels=(3,) if self.color else None)
            view = x  # [N, C, H, W]
            if self.crop:  # crop, resize and flip in one grid_sample
                n, _, height, width = x.shape
                boxes = sample_crop_boxes(
                    n, height, width, self.crop_scale, self.crop_ratio, generator, x.device
                )  # [N, 4]
                flip = _rand((n,), generator, x.device) < self.flip_p  # [N]
                view = resized_crop(x, boxes, self.size, flip)  # [N, C, S, S]
            elif view.shape[-2:] != (self.size, self.size):
                n, _, height, width = view.shape
                whole = torch.tensor([[0, 0, height, width]], device=x.device).expand(n, 4)
                view = resized_crop(view, whole, self.size)  # [N, C, S, S] plain resize
            if self.color:
                brightness, contrast, saturation, hue = self.jitter
                view = color_jitter(
                    view, brightness, contrast, saturation, hue, self.jitter_p, generator=generator
                )
                view = random_grayscale(view, self.grayscale_p, generator)  # [N, 3, S, S]
            if self.blur:
                view = gaussian_blur(
                    view, self.blur_kernel_size, self.blur_sigma, self.blur_p, generator
                )
            return view if view is not x else x.clone()  # [N, C, S, S]


def simclr_augment(
    x: torch.Tensor, generator: torch.Generator | None = None, **changes
) -> torch.Tensor:
    """One SimCLR view of ``x`` at its own size (``SimCLRAugment`` with optional field changes)."""
    _check_images(x)
    return SimCLRAugment(size=x.shape[-1], **changes)(x, generator)


def two_views(
    x: torch.Tensor, aug=None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent augmentations of the same batch: SimCLR's positive pairs.

    "We randomly sample a minibatch of N examples and define the contrastive prediction task on
    pairs of augmented examples derived from the minibatch" (Chen et al., 2020, Sec. 2.1).
    ``aug`` is any callable ``(x, generator) -> view``; ``None`` means ``SimCLRAugment`` at the
    input's size. Returns ``(view_1, view_2)``, each ``[N, C, S, S]``.
    """
    _check_images(x)
    if aug is None:
        aug = SimCLRAugment(size=x.shape[-1])
    return aug(x, generator), aug(x, generator)


# Named pipelines for the augmentation ablation (cf. SimCLR Fig. 5: crop and colour matter most).
# "crop" includes the horizontal flip that Appendix A always pairs with the crop; "color" is
# colour jitter plus colour drop. Configured for 32 px; get_pipeline changes the size.
PIPELINES: dict[str, SimCLRAugment] = {
    "none": SimCLRAugment(crop=False, color=False),
    "crop": SimCLRAugment(crop=True, color=False),
    "color": SimCLRAugment(crop=False, color=True),
    "crop+color": SimCLRAugment(crop=True, color=True),
    "crop+color+blur": SimCLRAugment(crop=True, color=True, blur=True),
}


def get_pipeline(name: str, size: int = 32, **changes) -> SimCLRAugment:
    """The named pipeline at ``size`` pixels, with optional field changes.

    >>> get_pipeline("crop+color", size=96).jitter
    (0.4, 0.4, 0.4, 0.1)
    >>> get_pipeline("crop+color+blur").blur
    True
    """
    if name not in PIPELINES:
        raise ValueError(
            f"unknown augmentation pipeline {name!r}; choose one of {sorted(PIPELINES)}"
        )
    return replace(PIPELINES[name], size=size, **changes)
