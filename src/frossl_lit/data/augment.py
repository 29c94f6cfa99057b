"""Multi-view augmentation: :class:`ViewRecipe` (one view's settings) and :class:`ViewAugment` (V views of a batch).

Runs after the batch reaches the training device (``on_after_batch_transfer``): the loader only moves uint8
images. The kernels are pure functions in :mod:`frossl_lit.data.kernels`; this module strings them into views and
owns the random stream. Random numbers come from the augmenter's own ``torch.Generator``, which the DataModule
reseeds before every training batch from (seed, rank, epoch, batch index): augmentation does not share the global
RNG, every epoch draws fresh views, and a resumed run draws exactly the views the uninterrupted run would have
(nothing about the stream needs checkpointing: the seed is a function of the position in training).

The public calls: :meth:`ViewAugment.views` crops and colours a uint8 batch into V views (in-memory datasets);
:meth:`ViewAugment.colour_views` flips and colours V batches the loader's workers already cropped (image folders);
:meth:`ViewAugment.view` makes one view of a given recipe (the linear protocol); :meth:`ViewAugment.eval_transform`
normalises an evaluation batch.

Differences from torchvision's per-image pipeline, by design: the colour-jitter order is one random permutation
per view batch rather than per image, and a random-resized crop whose sampled box does not fit is clamped to the
image instead of re-sampled up to ten times; hue turns in YIQ rather than HSV (see
:func:`frossl_lit.data.kernels.hue_rotation`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from frossl_lit.data.kernels import apply_recipe


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


class ViewAugment:
    """Turn a uint8 batch (B, C, H, W) into V augmented, normalised float views.

    ``num_views`` views cycle through ``recipes`` (one recipe: symmetric; two: asymmetric, BYOL-style), then
    ``small_views`` views of ``small_recipe`` (multi-crop, e.g. 2×224 + 6×96).

    :meth:`views` crops on the device; :meth:`colour_views` takes views the loader's workers cropped (the
    DataModule picks, in ``make_views``).
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
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}
        self._order = random.Random(seed)  # the colour-jitter order, drawn on the host

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
        self._order = random.Random(seed)

    def generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    # -- public API ------------------------------------------------------------------------------------------
    def views(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Crop and colour: uint8 (B, C, H, W) → V normalised float views, one per recipe of :meth:`view_recipes`."""
        x = images.float().div_(255.0)
        return [self.normalize(self._apply(x, recipe)) for recipe in self.view_recipes()]

    def colour_views(self, cropped: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Colour pre-cropped views: V uint8 batches, each already cropped to its recipe's size (by the loader's
        workers) → V normalised float views, flipped and coloured."""
        recipes = self.view_recipes()
        if len(cropped) != len(recipes):
            raise ValueError(f"got {len(cropped)} pre-cropped views for a recipe of {len(recipes)} views")
        return [self.normalize(self._apply(v.float().div_(255.0), r, crop=False)) for v, r in zip(cropped, recipes)]

    def view(self, images: torch.Tensor, recipe: ViewRecipe) -> torch.Tensor:
        """One normalised view of a uint8 batch under ``recipe`` (e.g. the linear protocol's crop and flip)."""
        return self.normalize(self._apply(images.float().div_(255.0), recipe))

    def eval_transform(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) → normalised float, resized to ``eval_size`` when that differs."""
        x = images.float().div_(255.0)
        if self.eval_size is not None and x.shape[-1] != self.eval_size:
            x = F.interpolate(x, size=(self.eval_size, self.eval_size), mode="bilinear", antialias=True)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Floats in [0, 1] → (x − mean) / std per channel."""
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def _apply(self, x: torch.Tensor, recipe: ViewRecipe, crop: bool = True) -> torch.Tensor:
        return apply_recipe(x, recipe, self.generator(x.device), self._order, crop)
