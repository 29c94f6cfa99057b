"""A recipe's ``interpolation``: bicubic crops are torchvision's ``resized_crop(..., BICUBIC, antialias=True)`` of
the same box on every path (device tensors, crop-aware decode of files, streams through the same crops); bilinear
is what it was; a bad value is one line naming its key."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from frossl_lit.data.augment import ViewAugment, ViewRecipe
from frossl_lit.data.augment.kernels import crop_resample, sample_crops
from frossl_lit.data.decode import Crop, decode_views, plan, view_crops
from frossl_lit.data.folder import ImageFiles
from frossl_lit.runtime.errors import UserError

BICUBIC = InterpolationMode.BICUBIC
PLAIN = dict(hflip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0)  # crop only: nothing else touches the pixels


def _theta(boxes, height: int, width: int) -> torch.Tensor:
    """:func:`sample_crops`' matrices for integer boxes ``(top, left, h, w, flip)``."""
    theta = torch.zeros(len(boxes), 2, 3)
    for b, (top, left, h, w, flip) in enumerate(boxes):
        theta[b, 0, 0] = w / width * (-1.0 if flip else 1.0)
        theta[b, 0, 2] = (left + w / 2) / width * 2 - 1
        theta[b, 1, 1] = h / height
        theta[b, 1, 2] = (top + h / 2) / height * 2 - 1
    return theta


@pytest.mark.parametrize("size", [12, 32, 72])  # down, mixed, up
def test_a_bicubic_device_crop_is_torchvisions_bicubic_antialiased_resized_crop_of_its_box(size):
    x = torch.rand(4, 3, 40, 50, generator=torch.Generator().manual_seed(0))
    boxes = [(3, 5, 17, 23, False), (0, 0, 40, 50, True), (10, 2, 30, 40, False), (7, 30, 9, 20, True)]
    out = crop_resample(x, _theta(boxes, 40, 50), size, "bicubic")
    assert out.min() >= 0 and out.max() <= 1  # bicubic overshoots: clamped
    for b, (top, left, h, w, flip) in enumerate(boxes):
        expected = TF.resized_crop(x[b], top, left, h, w, [size, size], BICUBIC, antialias=True).clamp(0, 1)
        torch.testing.assert_close(out[b], expected.flip(-1) if flip else expected, atol=1e-5, rtol=0)


def test_a_bicubic_recipe_through_the_augmenter_resizes_as_torchvision():
    images = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for size in (24, 64):
        whole = ViewRecipe(size=size, scale=(1.0, 1.0), ratio=(1.0, 1.0), interpolation="bicubic", **PLAIN)
        augment = ViewAugment([whole], [0.0] * 3, [1.0] * 3, num_views=1)  # mean 0, std 1: the [0, 1] pixels
        expected = TF.resize(images.float() / 255, [size, size], BICUBIC, antialias=True).clamp(0, 1)
        torch.testing.assert_close(augment.views(images)[0], expected, atol=1e-5, rtol=0)


def test_random_bicubic_crops_draw_the_same_boxes_and_bilinear_is_the_grid_sample_it_was():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    x = images.float() / 255
    recipes = {mode: ViewRecipe(size=24, scale=(0.3, 1.0), hflip_prob=0.5, jitter_prob=0.0, grayscale_prob=0.0,
                                interpolation=mode) for mode in ("bilinear", "bicubic")}
    theta = sample_crops(16, 32, 32, recipes["bilinear"], torch.Generator().manual_seed(5), torch.device("cpu"))
    grid = F.affine_grid(theta, [16, 3, 24, 24], align_corners=False)
    before = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)  # the old kernel
    views = {}
    for mode, recipe in recipes.items():
        augment = ViewAugment([recipe], [0.0] * 3, [1.0] * 3, num_views=1, seed=5)
        views[mode] = augment.views(images)[0]
    torch.testing.assert_close(views["bilinear"], before, atol=0, rtol=0)
    torch.testing.assert_close(views["bicubic"], crop_resample(x, theta, 24, "bicubic"), atol=0, rtol=0)
    assert (views["bicubic"] - views["bilinear"]).abs().max() > 0.01  # and bicubic is not bilinear


def _encoded(fmt: str, width: int = 80, height: int = 60) -> tuple[bytes, torch.Tensor]:
    """A noise image encoded as ``fmt`` and its pixels as the decode sees them (libjpeg-turbo's fast settings for
    a JPEG, as :func:`decode_views` decodes it at full size)."""
    pixels = np.random.RandomState(3).randint(0, 256, (height, width, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    data = buffer.getvalue()
    if fmt == "JPEG":
        import simplejpeg

        decoded = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=True)
    else:
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).copy()
    return data, torch.from_numpy(decoded).permute(2, 0, 1)


@pytest.mark.parametrize("fmt, size", [("PNG", 16), ("PNG", 48), ("PNG", 96), ("JPEG", 48), ("JPEG", 96)])
def test_the_crop_aware_decode_resizes_a_bicubic_recipes_box_as_torchvision(fmt, size):
    data, full = _encoded(fmt)
    crop = view_crops([ViewRecipe(size=size, scale=(0.2, 1.0), interpolation="bicubic")])[0]
    assert crop.interpolation == "bicubic"  # image folders, Tiny ImageNet and streams of files take these crops
    view = decode_views(data, [crop], random.Random(1))[0]
    left, top, w, h = crop.box(80, 60, random.Random(1))  # the box the decode drew
    if fmt == "JPEG":  # every box of a 60 px image is under twice these sizes: decoded at 1/1, the box as drawn
        assert plan(80, 60, [crop], random.Random(1)) == (1, [(left, top, w, h)])
    expected = TF.resized_crop(full, top, left, h, w, [size, size], BICUBIC, antialias=True)  # uint8: saturates
    assert view.dtype == torch.uint8 and torch.equal(view, expected)
    bilinear = decode_views(data, [Crop(size, (0.2, 1.0))], random.Random(1))[0]
    assert not torch.equal(view, bilinear)


def test_image_files_decode_each_view_with_its_recipes_interpolation(tmp_path):
    data, full = _encoded("PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    recipes = [ViewRecipe(size=32, interpolation="bicubic"), ViewRecipe(size=32)]
    files = ImageFiles([str(path)], [0], view_crops(recipes), train=True)
    random.seed(7)
    views, _ = files[0]
    random.seed(7)
    boxes = [crop.box(80, 60, random) for crop in view_crops(recipes)]
    for view, (left, top, w, h), mode in zip(views, boxes, (BICUBIC, InterpolationMode.BILINEAR)):
        assert torch.equal(view, TF.resized_crop(full, top, left, h, w, [32, 32], mode, antialias=True))


def test_a_bad_interpolation_is_one_line_naming_its_key():
    with pytest.raises(UserError, match=r"^augment\.recipes\.1\.interpolation='nearest' must be bilinear or bicubic"):
        ViewAugment([{"size": 8}, {"size": 8, "interpolation": "nearest"}], [0.5] * 3, [0.25] * 3)
    with pytest.raises(UserError, match=r"^interpolation='BICUBIC' must be"):
        ViewRecipe(interpolation="BICUBIC")
