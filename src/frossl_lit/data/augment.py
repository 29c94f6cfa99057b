"""Batched view augmentation: one implementation for CPU and GPU tensors, per-sample random parameters.

Runs after the batch reaches the training device (``on_after_batch_transfer``): the loader only moves uint8
images. Crop, flip and resize are one ``grid_sample`` with a per-sample affine grid; colour jitter, grayscale and
solarisation are batched blends with per-sample factors (identity factors where a sample's coin says "skip", so
there is no per-sample Python); hue is a per-sample rotation about the grey axis in YIQ space (as NVIDIA DALI
does) and blur is kornia's ``gaussian_blur2d`` with a per-sample sigma. Random numbers come from the
augmenter's own ``torch.Generator``, which the DataModule reseeds for every training batch from (seed, rank, epoch,
batch index): augmentation does not share the global RNG, every epoch draws fresh views, and a resumed run draws
exactly the views the uninterrupted run would have.

Differences from torchvision's per-image pipeline, by design: the colour-jitter order is one random permutation
per view batch rather than per image, and a random-resized crop whose sampled box does not fit is clamped to the
image instead of re-sampled up to ten times; hue turns in YIQ rather than HSV (see :func:`_hue_rotation`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F


@dataclass
class ViewRecipe:
    """The augmentation recipe of one view (torchvision/solo-learn names and defaults)."""

    size: int = 32
    random_resized_crop: bool = True  # false: the whole image resized to ``size`` (solo-learn's rrc.enabled=false)
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    solarize_threshold: float = 0.5

    def __post_init__(self) -> None:
        probabilities = ("hflip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob")
        for name in probabilities:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment: {name}={value} is not a probability in [0, 1]")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"augment: scale={tuple(self.scale)} must satisfy 0 < min <= max <= 1")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"augment: hue={self.hue} must lie in [0, 0.5]")
        if self.size < 1:
            raise ValueError(f"augment: size={self.size} must be a positive number of pixels")


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if x.shape[1] == 3 else x


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """Per-sample 3×3 RGB matrices rotating the chroma (I, Q) plane of YIQ by ``angle`` radians.

    The hue shift of NVIDIA DALI (and so of solo-learn's DALI pipeline): luma is kept, the colour turns around
    the grey axis. One batched matrix product instead of an RGB→HSV→RGB round trip, which cost 2/3 of a view on
    CPU; it differs from HSV's piecewise hue for strongly saturated colours.
    """
    to_yiq = _RGB_TO_YIQ.to(angle.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(angle.shape[0], 3, 3, device=angle.device)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    return torch.linalg.inv(to_yiq) @ rotation @ to_yiq


def _uniform(shape, low: float, high: float, generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device) * (high - low) + low


class ViewAugment:
    """Turn a uint8 batch (B, C, H, W) into V augmented, normalised float views.

    ``num_views`` views cycle through ``recipes`` (one recipe: symmetric; two: asymmetric, BYOL-style), then
    ``small_views`` views of ``small_recipe`` (multi-crop, e.g. 2×224 + 6×96).

    With ``crop_on_device=False`` (set by DataModules whose workers decode and crop, e.g. ImageNet folders) the
    call takes a list of V uint8 batches already cropped to each view's size and only flips and colours them.
    """

    def __init__(
        self,
        recipes: Sequence[ViewRecipe | dict],
        mean: Sequence[float],
        std: Sequence[float],
        num_views: int = 2,
        small_views: int = 0,
        small_recipe: ViewRecipe | dict | None = None,
        eval_size: int | None = None,
        channels_last: bool = False,
        seed: int = 0,
    ) -> None:
        if num_views < 1:
            raise ValueError(f"augment: num_views={num_views} must be at least 1")
        if not recipes:
            raise ValueError("augment: recipes is empty; give at least one view recipe")
        if small_views and small_recipe is None:
            raise ValueError("augment: small_views > 0 needs a small_recipe")
        self.recipes = [r if isinstance(r, ViewRecipe) else ViewRecipe(**r) for r in recipes]
        self.small_recipe = (
            None if small_recipe is None else small_recipe if isinstance(small_recipe, ViewRecipe) else ViewRecipe(**small_recipe)
        )
        self.num_views, self.small_views = num_views, small_views
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        self.eval_size = eval_size
        self.channels_last = channels_last
        self.seed = seed
        self.crop_on_device = True
        self._generators: dict[torch.device, torch.Generator] = {}

    @property
    def total_views(self) -> int:
        return self.num_views + self.small_views

    def view_recipes(self) -> list[ViewRecipe]:
        large = [self.recipes[v % len(self.recipes)] for v in range(self.num_views)]
        return large + [self.small_recipe] * self.small_views

    def reseed(self, seed: int) -> None:
        """Restart the random stream (the DataModule calls this before every training batch)."""
        self.seed = seed
        self._generators.clear()

    def generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    # -- public API ------------------------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """uint8 (B, C, H, W) → list of V float views, each normalised.

        Or, with ``crop_on_device=False``, a list of V uint8 batches already cropped per view.
        """
        recipes = self.view_recipes()
        if isinstance(images, torch.Tensor):
            x = images.float().div_(255.0)
            return [self._finish(self.augment_one(x, recipe)) for recipe in recipes]
        if len(images) != len(recipes):
            raise ValueError(f"got {len(images)} pre-cropped views for a recipe of {len(recipes)} views")
        return [self._finish(self.augment_one(v.float().div_(255.0), r, crop=False)) for v, r in zip(images, recipes)]

    def eval_transform(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) → normalised float, resized to ``eval_size`` when that differs."""
        x = images.float().div_(255.0)
        if self.eval_size is not None and x.shape[-1] != self.eval_size:
            x = F.interpolate(x, size=(self.eval_size, self.eval_size), mode="bilinear", antialias=True)
        return self._finish(x)

    # -- kernels ---------------------------------------------------------------------------------------------
    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def augment_one(self, x: torch.Tensor, recipe: ViewRecipe, crop: bool = True) -> torch.Tensor:
        """One view of a float batch in [0, 1]; returns floats in [0, 1]. ``crop=False``: flip only (the batch is
        already cropped); a recipe without ``random_resized_crop`` resizes the whole image to its size, then flips."""
        g, device, batch = self.generator(x.device), x.device, x.shape[0]
        if crop and recipe.random_resized_crop:
            x = self._resized_crop_flip(x, recipe, g)
        else:
            if crop and x.shape[-2:] != (recipe.size, recipe.size):
                x = F.interpolate(x, size=(recipe.size, recipe.size), mode="bicubic", antialias=True).clamp_(0, 1)
            if recipe.hflip_prob > 0:
                mask = (torch.rand(batch, generator=g, device=device) < recipe.hflip_prob).view(-1, 1, 1, 1)
                x = torch.where(mask, x.flip(-1), x)
        if recipe.jitter_prob > 0:
            x = self._color_jitter(x, recipe, g)
        if recipe.grayscale_prob > 0 and x.shape[1] == 3:
            mask = (torch.rand(batch, generator=g, device=device) < recipe.grayscale_prob).view(-1, 1, 1, 1)
            x = torch.where(mask, _gray(x).expand_as(x), x)
        if recipe.blur_prob > 0:
            sigma = _uniform((batch, 1), *recipe.blur_sigma, g, device).expand(batch, 2)
            kernel = max(3, int(round(recipe.size * 0.1)) | 1)
            blurred = kornia.filters.gaussian_blur2d(x, (kernel, kernel), sigma.contiguous(), border_type="reflect")
            mask = (torch.rand(batch, generator=g, device=device) < recipe.blur_prob).view(-1, 1, 1, 1)
            x = torch.where(mask, blurred.clamp_(0, 1), x)
        if recipe.solarize_prob > 0:
            mask = (torch.rand(batch, generator=g, device=device) < recipe.solarize_prob).view(-1, 1, 1, 1)
            x = torch.where(mask & (x >= recipe.solarize_threshold), 1.0 - x, x)
        return x

    def sample_crops(self, batch: int, height: int, width: int, recipe: ViewRecipe, g, device) -> torch.Tensor:
        """Per-sample affine matrices (B, 2, 3) in normalised coordinates: crop box, aspect ratio and flip."""
        area = _uniform(batch, *recipe.scale, g, device)
        log_ratio = _uniform(batch, math.log(recipe.ratio[0]), math.log(recipe.ratio[1]), g, device)
        ratio = torch.exp(log_ratio)
        crop_w = torch.sqrt(area * ratio * height / width).clamp(max=1.0)  # fraction of the width
        crop_h = torch.sqrt(area / ratio * width / height).clamp(max=1.0)
        centre_x = (torch.rand(batch, generator=g, device=device) * (1 - crop_w) + crop_w / 2) * 2 - 1
        centre_y = (torch.rand(batch, generator=g, device=device) * (1 - crop_h) + crop_h / 2) * 2 - 1
        flip = torch.where(torch.rand(batch, generator=g, device=device) < recipe.hflip_prob, -1.0, 1.0)
        theta = torch.zeros(batch, 2, 3, device=device)
        theta[:, 0, 0] = crop_w * flip
        theta[:, 0, 2] = centre_x
        theta[:, 1, 1] = crop_h
        theta[:, 1, 2] = centre_y
        return theta

    def _resized_crop_flip(self, x: torch.Tensor, recipe: ViewRecipe, g) -> torch.Tensor:
        batch, channels, height, width = x.shape
        theta = self.sample_crops(batch, height, width, recipe, g, x.device)
        grid = F.affine_grid(theta, [batch, channels, recipe.size, recipe.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _color_jitter(self, x: torch.Tensor, recipe: ViewRecipe, g) -> torch.Tensor:
        batch, device = x.shape[0], x.device
        apply = (torch.rand(batch, generator=g, device=device) < recipe.jitter_prob).view(-1, 1, 1, 1)

        def factor(strength: float) -> torch.Tensor:
            f = _uniform((batch, 1, 1, 1), max(0.0, 1 - strength), 1 + strength, g, device)
            return torch.where(apply, f, torch.ones_like(f))

        ops = []
        if recipe.brightness > 0:
            b = factor(recipe.brightness)
            ops.append(lambda im: (im * b).clamp_(0, 1))
        if recipe.contrast > 0:
            c = factor(recipe.contrast)
            ops.append(lambda im: (c * im + (1 - c) * _gray(im).mean(dim=(1, 2, 3), keepdim=True)).clamp_(0, 1))
        if recipe.saturation > 0 and x.shape[1] == 3:
            s = factor(recipe.saturation)
            ops.append(lambda im: (s * im + (1 - s) * _gray(im)).clamp_(0, 1))
        if recipe.hue > 0 and x.shape[1] == 3:
            angle = _uniform(batch, -recipe.hue, recipe.hue, g, device) * (2 * math.pi)
            rotation = _hue_rotation(torch.where(apply.view(-1), angle, torch.zeros_like(angle)))
            ops.append(lambda im: torch.einsum("bij,bjhw->bihw", rotation, im).clamp_(0, 1))
        for index in torch.randperm(len(ops), generator=self.generator(torch.device("cpu"))).tolist():
            x = ops[index](x)
        return x
