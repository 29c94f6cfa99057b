"""Multi-view augmentation: :class:`ViewAugment` makes V views of a batch, each under its
:class:`~frossl_lit.data.augment.recipe.ViewRecipe`.

Runs after the batch reaches the training device (``on_after_batch_transfer``): the loader only moves uint8
images. The kernels are pure functions in :mod:`frossl_lit.data.augment.kernels`; this module strings them into
views and owns the random stream. Random numbers come from the augmenter's own ``torch.Generator``, which the DataModule
reseeds before every training batch from (seed, rank, epoch, batch index): augmentation does not share the global
RNG, every epoch draws fresh views, and a resumed run draws exactly the views the uninterrupted run would have
(nothing about the stream needs checkpointing: the seed is a function of the position in training).

The public calls: :meth:`ViewAugment.views` crops and colours a uint8 batch into V views (in-memory datasets);
:meth:`ViewAugment.colour_views` flips and colours V batches the loader's workers already cropped (image folders);
:meth:`ViewAugment.view` makes one view of a given recipe (the linear protocol); :meth:`ViewAugment.eval_transform`
normalises an evaluation batch; :meth:`ViewAugment.fitted_to` is a copy for images smaller than the recipe (an
augmenter is never edited in place: the DataModules and callbacks that share it see the same recipe).

Differences from torchvision's per-image pipeline, by design: the colour-jitter order is one random permutation
per view batch rather than per image, and a random-resized crop whose sampled box does not fit is clamped to the
image instead of re-sampled up to ten times; hue turns in YIQ rather than HSV (see
:func:`frossl_lit.data.augment.kernels.hue_rotation`).

Resampling: a recipe's ``interpolation`` (bilinear | bicubic) is the random-resized crop's on every path — on the
device (:func:`~frossl_lit.data.augment.kernels.crop_resample`) and in the workers' crop-aware decode
(:func:`frossl_lit.data.decode.resize_box`); bicubic is torchvision's antialiased bicubic of the same box, clamped.
A recipe without random crops resizes the whole image with antialiased bicubic on the device whatever
``interpolation`` says (solo-learn's ``Resize(..., BICUBIC)``, as before the key existed; with image files the
workers' resize follows ``interpolation``). The evaluation resize (:meth:`ViewAugment.eval_transform`, and the
decode's evaluation crop) stays antialiased bilinear: solo-learn's evaluation transforms use torchvision's default
(vturrisi/solo-learn@9187ea3 solo/data/classification_dataloader.py:57, ``Resize(256)``).
"""

from __future__ import annotations

import copy
import dataclasses
import random
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from frossl_lit.data.augment.kernels import apply_recipe, resident
from frossl_lit.data.augment.recipe import ViewRecipe
from frossl_lit.runtime.errors import refuse


def _recipe(settings: ViewRecipe | dict, where: str) -> ViewRecipe:
    """A recipe as it is, or one made from a config's settings, a bad value refused naming its key (``where``)."""
    return settings if isinstance(settings, ViewRecipe) else ViewRecipe(**settings, where=where)


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
            refuse("augment.recipes", [], "is empty", "give at least one view recipe (see conf/augment/)")
        if small_views and small_recipe is None:
            raise ValueError("augment: small_views > 0 needs a small_recipe")
        self.recipes = [_recipe(r, f"augment.recipes.{index}.") for index, r in enumerate(recipes)]
        self.small_recipe = None if small_recipe is None else _recipe(small_recipe, "augment.small_recipe.")
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

    @property
    def eval_image_size(self) -> int:
        """The side of evaluation images: ``eval_size``, else the first view's size (image files are decoded to it
        for evaluation, and the linear protocol crops to it)."""
        return self.eval_size or self.recipes[0].size

    def fitted_to(self, side: int, where) -> ViewAugment:
        """This augmentation for images whose typical short side is ``side`` (those in ``where``): itself when every
        view fits; else a copy (this one is left as it is) with every view and the evaluation size scaled down to
        ``side``, and a warning saying so. Images smaller than the recipe (e.g. CIFAR's 32 px under the 224 px
        ImageNet recipe) would otherwise be upsampled 7× and cost 49× the compute for nothing."""
        largest = max([r.size for r in self.view_recipes()] + [self.eval_size or 0])
        if side >= largest:
            return self
        fitted = self._scaled(side / largest)
        warnings.warn(
            f"the images in {where} are about {side} px, smaller than the recipe's {largest} px: training at "
            f"{side} px instead of upsampling them (views {sorted({r.size for r in fitted.view_recipes()})}). "
            f"To keep the recipe's sizes set data.fit_small_images=false.",
            stacklevel=2,
        )
        return fitted

    def _scaled(self, scale: float, smallest: int = 8) -> ViewAugment:
        """A copy with every recipe's size and ``eval_size`` times ``scale`` (at least ``smallest`` pixels) and the
        random stream where this one's is."""
        side = lambda size: max(smallest, int(round(size * scale)))
        scaled = copy.copy(self)
        scaled.recipes = [dataclasses.replace(r, size=side(r.size)) for r in self.recipes]
        if self.small_recipe is not None:
            scaled.small_recipe = dataclasses.replace(self.small_recipe, size=side(self.small_recipe.size))
        scaled.eval_size = side(self.eval_size) if self.eval_size else self.eval_size
        scaled._generators = {}
        scaled._order = random.Random()
        scaled._order.setstate(self._order.getstate())
        return scaled

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
        return (x - resident(self.mean, x.device)) / resident(self.std, x.device)  # no host sync per view

    def _apply(self, x: torch.Tensor, recipe: ViewRecipe, crop: bool = True) -> torch.Tensor:
        return apply_recipe(x, recipe, self.generator(x.device), self._order, crop)
