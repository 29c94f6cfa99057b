"""Batched augmentation kernels: pure functions of a float batch (B, C, H, W) in [0, 1], a recipe and a
``torch.Generator``; per-sample random parameters, no per-sample Python. :func:`apply_recipe` makes one view of a
:class:`~frossl_lit.data.augment.recipe.ViewRecipe`; :class:`~frossl_lit.data.augment.views.ViewAugment` strings
views into a batch's V views.

Crop, flip and resize are one ``grid_sample`` with a per-sample affine grid (bilinear), or two batched products with
per-sample antialiased bicubic weight matrices (a recipe's ``interpolation: bicubic``, solo-learn's); colour jitter, grayscale and
solarisation are batched blends with per-sample factors (identity factors where a sample's coin says "skip"); hue is
a per-sample rotation about the grey axis in YIQ space (as NVIDIA DALI does) and blur is kornia's
``gaussian_blur2d`` with a per-sample sigma. Hand-written because torchvision's v2 transforms draw one set of
parameters per call (per batch), and kornia's per-sample ops cost several times more on CPU
(``experiments/results/augment_throughput.md``).
"""

from __future__ import annotations

import functools
import math
import random

import kornia
import torch
import torch.nn.functional as F

from frossl_lit.data.augment.recipe import ViewRecipe


def gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R 601) of an RGB batch, (B, 1, H, W); a single-channel batch unchanged."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if x.shape[1] == 3 else x


RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)  # once, on the CPU: on a GPU each inverse was a host sync


@functools.lru_cache(maxsize=64)
def _resident(values: tuple, shape: tuple, device: str) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(shape).to(device)


def resident(constant: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU constant's copy on ``device``, made once per device and value: copying a pageable CPU tensor to
    a GPU at every view was a host sync each time (experiments/results/gpu_check.md counted 8 a step)."""
    if device.type == "cpu":
        return constant
    return _resident(tuple(constant.flatten().tolist()), tuple(constant.shape), str(device))


def hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """Per-sample 3×3 RGB matrices rotating the chroma (I, Q) plane of YIQ by ``angle`` radians.

    The hue shift of NVIDIA DALI (and so of solo-learn's DALI pipeline): luma is kept, the colour turns around
    the grey axis. One batched matrix product instead of an RGB→HSV→RGB round trip, which cost 2/3 of a view on
    CPU; it differs from HSV's piecewise hue for strongly saturated colours.
    """
    to_yiq, to_rgb = resident(RGB_TO_YIQ, angle.device), resident(YIQ_TO_RGB, angle.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(angle.shape[0], 3, 3, device=angle.device)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    return to_rgb @ rotation @ to_yiq


def uniform(shape, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device) * (high - low) + low


def coin(batch: int, prob: float, generator: torch.Generator, device) -> torch.Tensor:
    """A per-sample boolean (B, 1, 1, 1), true with probability ``prob``."""
    return (torch.rand(batch, generator=generator, device=device) < prob).view(-1, 1, 1, 1)


def sample_crops(batch: int, height: int, width: int, recipe: ViewRecipe, generator: torch.Generator, device) -> torch.Tensor:
    """Per-sample affine matrices (B, 2, 3) in normalised coordinates: crop box, aspect ratio and flip.

    A box whose sampled size does not fit is clamped to the image (torchvision re-samples up to ten times)."""
    area = uniform(batch, *recipe.scale, generator, device)
    ratio = torch.exp(uniform(batch, math.log(recipe.ratio[0]), math.log(recipe.ratio[1]), generator, device))
    crop_w = torch.sqrt(area * ratio * height / width).clamp(max=1.0)  # fraction of the width
    crop_h = torch.sqrt(area / ratio * width / height).clamp(max=1.0)
    centre_x = (torch.rand(batch, generator=generator, device=device) * (1 - crop_w) + crop_w / 2) * 2 - 1
    centre_y = (torch.rand(batch, generator=generator, device=device) * (1 - crop_h) + crop_h / 2) * 2 - 1
    flip = torch.where(torch.rand(batch, generator=generator, device=device) < recipe.hflip_prob, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = crop_w * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = crop_h
    theta[:, 1, 2] = centre_y
    return theta


def resized_crop_flip(x: torch.Tensor, recipe: ViewRecipe, generator: torch.Generator) -> torch.Tensor:
    """A random resized crop (with a random horizontal flip) of every sample, at ``recipe.size``, resampled as
    ``recipe.interpolation`` says (:func:`crop_resample`)."""
    batch, _, height, width = x.shape
    theta = sample_crops(batch, height, width, recipe, generator, x.device)
    return crop_resample(x, theta, recipe.size, recipe.interpolation)


def crop_resample(x: torch.Tensor, theta: torch.Tensor, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """The boxes of ``theta`` (:func:`sample_crops`' affine matrices: box, aspect and flip) cut from ``x`` and
    resampled to ``size`` × ``size``.

    ``bilinear``: one ``grid_sample`` (bilinear taps, no antialiasing, reflection at the image border); this
    framework's crop. ``bicubic``: the crop torchvision's ``RandomResizedCrop(..., interpolation=BICUBIC)`` makes
    (solo-learn's, vturrisi/solo-learn@9187ea3 solo/data/pretrain_dataloader.py:221-225, and the official FroSSL
    code's, OFSkean/FroSSL@e841c57 solo/data/pretrain_dataloader.py:222-226): antialiased bicubic (Keys' a=-0.5,
    PIL's and torch's antialiased kernel) over the pixels inside the box, as :func:`bicubic_weights`; clamped to
    [0, 1] (bicubic overshoots at edges)."""
    batch, channels, height, width = x.shape
    if interpolation == "bilinear":
        grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if interpolation != "bicubic":
        raise ValueError(f"interpolation={interpolation!r} must be bilinear or bicubic")
    # normalised [-1, 1] (align_corners=False: pixel edges) → pixels; a negative x scale is a horizontal flip
    half_w, half_h = theta[:, 0, 0].abs(), theta[:, 1, 1]
    left = (theta[:, 0, 2] - half_w + 1) * (width / 2)
    top = (theta[:, 1, 2] - half_h + 1) * (height / 2)
    rows = bicubic_weights(top, half_h * height, height, size, x.dtype)  # (B, size, H)
    columns = bicubic_weights(left, half_w * width, width, size, x.dtype)  # (B, size, W)
    columns = torch.where((theta[:, 0, 0] < 0).view(-1, 1, 1), columns.flip(1), columns)
    out = torch.einsum("bsh,bchw->bcsw", rows, x)
    return torch.einsum("bcsw,btw->bcst", out, columns).clamp_(0, 1)


def _keys_cubic(d: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    d = d.abs()
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return torch.where(d < 1, near, torch.where(d < 2, far, torch.zeros_like(d)))


def bicubic_weights(start: torch.Tensor, length: torch.Tensor, pixels: int, size: int, dtype=torch.float32) -> torch.Tensor:
    """Per-sample resampling matrices (B, ``size``, ``pixels``) of an antialiased bicubic resize of the interval
    [``start``, ``start + length``) (pixel units, per sample (B,)) of a line of ``pixels`` pixels to ``size``.

    torch's antialiased kernel (``F.interpolate(..., mode="bicubic", antialias=True)``, aten UpSampleKernel's
    ``_compute_indices_min_size_weights_aa``): output pixel i is centred at ``start + (i + 0.5) · scale``
    (``scale = length / size``); input pixel j (centre j + 0.5) weighs ``cubic((j + 0.5 − centre) / max(scale, 1))``
    with Keys' a = −0.5, over the pixels whose centres lie in the interval (what cropping first, as torchvision
    does, leaves), normalised to sum 1. For an integer box this is exactly ``resized_crop``'s bicubic antialiased
    resize; a fractional box (the device's continuous crop) is the same formula."""
    scale = length / size
    stretch = scale.clamp(min=1.0)
    centres = start[:, None] + scale[:, None] * (torch.arange(size, device=start.device, dtype=start.dtype) + 0.5)
    pixel = torch.arange(pixels, device=start.device, dtype=start.dtype) + 0.5
    weights = _keys_cubic((pixel[None, None, :] - centres[:, :, None]) / stretch[:, None, None])
    inside = (pixel[None, :] >= start[:, None] - 1e-4) & (pixel[None, :] <= (start + length)[:, None] + 1e-4)
    weights = weights * inside[:, None, :]
    total = weights.sum(-1, keepdim=True)
    nearest = F.one_hot(centres.floor().long().clamp(0, pixels - 1), pixels).to(weights.dtype)  # a box under a pixel
    return torch.where(total > 0, weights / total.clamp_min(1e-12), nearest).to(dtype)


def resize(x: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """The whole image resized to ``size`` × ``size`` (antialiased), unchanged when it already is."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode=mode, antialias=True).clamp_(0, 1)


def hflip(x: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    return torch.where(coin(x.shape[0], prob, generator, x.device), x.flip(-1), x) if prob > 0 else x


def color_jitter(x: torch.Tensor, recipe: ViewRecipe, generator: torch.Generator, order: random.Random) -> torch.Tensor:
    """Brightness, contrast, saturation and hue with per-sample factors, in one random order per batch (drawn from
    ``order``, a host-side Python RNG: no tensor is read back)."""
    batch, device = x.shape[0], x.device
    apply = coin(batch, recipe.jitter_prob, generator, device)

    def factor(strength: float) -> torch.Tensor:
        f = uniform((batch, 1, 1, 1), max(0.0, 1 - strength), 1 + strength, generator, device)
        return torch.where(apply, f, torch.ones_like(f))

    ops = []
    if recipe.brightness > 0:
        b = factor(recipe.brightness)
        ops.append(lambda im: (im * b).clamp_(0, 1))
    if recipe.contrast > 0:
        c = factor(recipe.contrast)
        ops.append(lambda im: (c * im + (1 - c) * gray(im).mean(dim=(1, 2, 3), keepdim=True)).clamp_(0, 1))
    if recipe.saturation > 0 and x.shape[1] == 3:
        s = factor(recipe.saturation)
        ops.append(lambda im: (s * im + (1 - s) * gray(im)).clamp_(0, 1))
    if recipe.hue > 0 and x.shape[1] == 3:
        angle = uniform(batch, -recipe.hue, recipe.hue, generator, device) * (2 * math.pi)
        rotation = hue_rotation(torch.where(apply.view(-1), angle, torch.zeros_like(angle)))
        ops.append(lambda im: torch.einsum("bij,bjhw->bihw", rotation, im).clamp_(0, 1))
    for index in order.sample(range(len(ops)), len(ops)):
        x = ops[index](x)
    return x


def grayscale(x: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    if prob <= 0 or x.shape[1] != 3:
        return x
    return torch.where(coin(x.shape[0], prob, generator, x.device), gray(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, recipe: ViewRecipe, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur with a per-sample sigma in ``recipe.blur_sigma`` (kernel ≈ 10% of the view's size)."""
    batch = x.shape[0]
    sigma = uniform((batch, 1), *recipe.blur_sigma, generator, x.device).expand(batch, 2)
    kernel = max(3, int(round(recipe.size * 0.1)) | 1)
    blurred = kornia.filters.gaussian_blur2d(x, (kernel, kernel), sigma.contiguous(), border_type="reflect")
    return torch.where(coin(batch, recipe.blur_prob, generator, x.device), blurred.clamp_(0, 1), x)


def solarize(x: torch.Tensor, recipe: ViewRecipe, generator: torch.Generator) -> torch.Tensor:
    chosen = coin(x.shape[0], recipe.solarize_prob, generator, x.device)
    return torch.where(chosen & (x >= recipe.solarize_threshold), 1.0 - x, x)


def apply_recipe(x: torch.Tensor, recipe: ViewRecipe, generator: torch.Generator, order: random.Random, crop: bool = True) -> torch.Tensor:
    """One view of a float batch in [0, 1] (floats in [0, 1] out). ``crop=False``: the batch is already cropped
    to the view's size, only flip and colour; a recipe without ``random_resized_crop`` resizes the whole image."""
    if crop and recipe.random_resized_crop:
        x = resized_crop_flip(x, recipe, generator)
    else:
        x = hflip(resize(x, recipe.size) if crop else x, recipe.hflip_prob, generator)
    if recipe.jitter_prob > 0:
        x = color_jitter(x, recipe, generator, order)
    x = grayscale(x, recipe.grayscale_prob, generator)
    if recipe.blur_prob > 0:
        x = gaussian_blur(x, recipe, generator)
    if recipe.solarize_prob > 0:
        x = solarize(x, recipe, generator)
    return x
