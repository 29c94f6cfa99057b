"""Batched view augmentation: shapes, randomness per sample, recipe semantics, CPU determinism by seed."""

from __future__ import annotations

import pytest
import torch

from frossl_lit.data.augment import ViewAugment, ViewRecipe
from frossl_lit.data.augment.kernels import sample_crops
from frossl_lit.runtime.errors import UserError

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def _images(batch=32, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, size, size), generator=generator, dtype=torch.uint8)


def test_views_shapes_and_normalisation():
    augment = ViewAugment([ViewRecipe(size=24)], MEAN, STD, num_views=4, small_views=2, small_recipe=ViewRecipe(size=12))
    views = augment.views(_images())
    assert [tuple(v.shape) for v in views] == [(32, 3, 24, 24)] * 4 + [(32, 3, 12, 12)] * 2
    assert all(v.dtype == torch.float32 for v in views)
    # values are normalised [0, 1] pixels
    assert min(v.min().item() for v in views) >= (0 - 0.5) / 0.25 - 1e-5
    assert max(v.max().item() for v in views) <= (1 - 0.5) / 0.25 + 1e-5


def test_two_views_of_the_same_image_differ():
    views = ViewAugment([ViewRecipe()], MEAN, STD).views(_images())
    per_image_difference = (views[0] - views[1]).abs().flatten(1).mean(1)
    assert (per_image_difference > 1e-3).all()


def test_crop_parameters_vary_within_a_batch():
    theta = sample_crops(256, 32, 32, ViewRecipe(), torch.Generator().manual_seed(0), torch.device("cpu"))
    widths, centres = theta[:, 0, 0].abs(), theta[:, 0, 2]
    assert widths.std() > 0.1 and centres.std() > 0.05
    flips = (theta[:, 0, 0] < 0).float().mean()
    assert 0.35 < flips < 0.65  # hflip_prob 0.5
    area = theta[:, 0, 0].abs() * theta[:, 1, 1]
    assert area.min() >= 0.08 - 1e-6 and area.max() <= 1.0 + 1e-6


def test_identity_recipe_reproduces_the_image():
    recipe = ViewRecipe(size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0)
    images = _images(8)
    view = ViewAugment([recipe], [0, 0, 0], [1, 1, 1]).views(images)[0]
    torch.testing.assert_close(view, images.float() / 255, atol=1e-5, rtol=0)


def test_flip_only_mirrors():
    recipe = ViewRecipe(size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_prob=1.0, jitter_prob=0.0, grayscale_prob=0.0)
    images = _images(4)
    view = ViewAugment([recipe], [0, 0, 0], [1, 1, 1]).views(images)[0]
    torch.testing.assert_close(view, images.float().flip(-1) / 255, atol=1e-5, rtol=0)


def test_grayscale_and_solarize_always_on():
    recipe = ViewRecipe(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_prob=0.0, jitter_prob=0.0, grayscale_prob=1.0)
    view = ViewAugment([recipe], [0, 0, 0], [1, 1, 1]).views(_images(4))[0]
    torch.testing.assert_close(view[:, 0], view[:, 1])
    torch.testing.assert_close(view[:, 1], view[:, 2])
    solar = ViewRecipe(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, solarize_prob=1.0)
    images = _images(4)
    view = ViewAugment([solar], [0, 0, 0], [1, 1, 1]).views(images)[0]
    x = images.float() / 255
    torch.testing.assert_close(view, torch.where(x >= 0.5, 1 - x, x), atol=1e-5, rtol=0)


def test_jitter_and_blur_run_and_stay_in_range():
    recipe = ViewRecipe(size=32, jitter_prob=1.0, blur_prob=1.0, solarize_prob=0.5)
    view = ViewAugment([recipe], [0, 0, 0], [1, 1, 1]).views(_images(16))[0]
    assert view.min() >= 0 and view.max() <= 1


def test_same_seed_same_views_and_reseed_changes_them():
    a = ViewAugment([ViewRecipe()], MEAN, STD, seed=3).views(_images())
    b = ViewAugment([ViewRecipe()], MEAN, STD, seed=3).views(_images())
    c = ViewAugment([ViewRecipe()], MEAN, STD, seed=4).views(_images())
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[0], c[0])


def test_asymmetric_recipes_cycle_over_views():
    first, second = ViewRecipe(size=16), ViewRecipe(size=8)
    views = ViewAugment([first, second], MEAN, STD, num_views=4).views(_images())
    assert [v.shape[-1] for v in views] == [16, 8, 16, 8]


@pytest.mark.parametrize(
    "kwargs,message",
    [({"hflip_prob": 1.5}, r"^hflip_prob=1\.5 is a probability"), ({"scale": (0.0, 1.0)}, r"^scale=\(0\.0, 1\.0\) must be"),
     ({"hue": 0.7}, r"^hue=0\.7 must lie in"), ({"size": "32"}, r"^size='32' must be a positive number of pixels")],
)
def test_bad_recipe_values_are_named(kwargs, message):
    with pytest.raises(UserError, match=message):
        ViewRecipe(**kwargs)


def test_a_bad_recipe_value_names_its_whole_config_key():
    with pytest.raises(UserError, match=r"^augment\.recipes\.1\.scale=\[0\.5, 0\.2\] must be .*; e\.g\. augment\.recipes\.1\.scale=\[0\.08,1\.0\]$"):
        ViewAugment([{}, {"scale": [0.5, 0.2]}], MEAN, STD)
    with pytest.raises(UserError, match=r"^augment\.small_recipe\.blur_prob=2 is a probability"):
        ViewAugment([{}], MEAN, STD, small_views=2, small_recipe={"blur_prob": 2})
    with pytest.raises(UserError, match=r"^augment\.recipes=\[\] is empty"):
        ViewAugment([], MEAN, STD)


def test_hue_rotation_keeps_grey_and_luma_and_turns_colour():
    from frossl_lit.data.augment.kernels import RGB_TO_YIQ as _RGB_TO_YIQ
    from frossl_lit.data.augment.kernels import hue_rotation as _hue_rotation

    matrices = _hue_rotation(torch.tensor([0.0, 1.0, -2.0]))
    torch.testing.assert_close(matrices[0], torch.eye(3), atol=1e-5, rtol=0)
    grey = torch.full((3,), 0.4)
    for matrix in matrices:
        torch.testing.assert_close(matrix @ grey, grey, atol=1e-5, rtol=0)  # grey stays grey
    red = torch.tensor([0.8, 0.1, 0.1])
    turned = matrices[1] @ red
    torch.testing.assert_close((_RGB_TO_YIQ @ turned)[0], (_RGB_TO_YIQ @ red)[0], atol=1e-5, rtol=0)  # same luma
    assert (turned - red).abs().max() > 0.1


def test_fitting_to_small_images_scales_a_copy_and_leaves_the_recipe_alone():
    augment = ViewAugment([ViewRecipe(size=224)], [0.5] * 3, [0.25] * 3, num_views=2, small_views=1,
                          small_recipe=ViewRecipe(size=96), eval_size=224)
    assert augment.fitted_to(224, "here") is augment and augment.eval_image_size == 224
    with pytest.warns(UserWarning, match=r"about 32 px, smaller than the recipe's 224 px.*views \[14, 32\]"):
        fitted = augment.fitted_to(32, "here")
    assert [r.size for r in fitted.view_recipes()] == [32, 32, 14] and fitted.eval_size == 32
    assert [r.size for r in augment.view_recipes()] == [224, 224, 96] and augment.eval_size == 224
    assert ViewAugment([ViewRecipe(size=24)], [0.5] * 3, [0.25] * 3).eval_image_size == 24  # no eval_size: the first view's
