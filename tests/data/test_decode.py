"""Crop-aware decoding: the same pixels as a full-size decode of the same box, one random box per view."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from frossl_lit.data.decode import Crop, centre_box, dct_reduction, decode_views, plan, random_box


def photo(width: int, height: int, fmt: str = "JPEG") -> bytes:
    """A real photograph (scikit-learn's sample image), resized to ``width``×``height`` and encoded."""
    from sklearn.datasets import load_sample_image

    image = Image.fromarray(load_sample_image("china.jpg")).resize((width, height), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.double() - b.double()).pow(2).mean().item()
    return 10 * np.log10(255.0**2 / mse) if mse else float("inf")


def full_size_reference(data: bytes, box, size: int) -> torch.Tensor:
    """What the plain pipeline gives for a box: decode everything with Pillow, crop, resize (antialiased)."""
    full = torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).copy()).permute(2, 0, 1)
    left, top, w, h = box
    return TF.resized_crop(full, top, left, h, w, [size, size], antialias=True)


@pytest.mark.parametrize("size, scale", [(64, (0.2, 1.0)), (112, (0.08, 1.0)), (224, (0.08, 1.0))])
def test_a_view_decoded_at_a_smaller_scale_matches_the_full_size_decode_of_its_box(size, scale):
    data = photo(1280, 960)
    crops = [Crop(size, scale), Crop(size, scale)]
    factors = []
    for seed in range(12):
        views = decode_views(data, crops, random.Random(seed))
        factor, boxes = plan(1280, 960, crops, random.Random(seed))
        factors.append(factor)
        for view, box in zip(views, boxes):
            assert view.shape == (3, size, size) and view.dtype == torch.uint8
            assert psnr(view, full_size_reference(data, box, size)) >= 30.0
    assert max(factors) > 1, "no view was small enough to decode below full size: the test would prove nothing"


def test_every_view_gets_its_own_random_box():
    data = photo(640, 480)
    crops = [Crop(96, (0.08, 1.0))] * 4
    views = decode_views(data, crops, random.Random(0))
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            assert not torch.equal(views[i], views[j])
    _, boxes = plan(640, 480, crops, random.Random(0))
    assert len(set(boxes)) == len(boxes)
    # and the next image draws new boxes (the generator moves on)
    assert decode_views(data, crops[:1], random.Random(1))[0].shape == (3, 96, 96)


def test_random_boxes_follow_the_scale_and_ratio_ranges():
    draw = random.Random(3)
    fractions = []
    for _ in range(2000):
        left, top, w, h = random_box(500, 375, (0.08, 1.0), (3 / 4, 4 / 3), draw)
        assert 0 <= left and 0 <= top and left + w <= 500 and top + h <= 375 and w > 0 and h > 0
        fractions.append(w * h / (500 * 375))
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02 or (w, h) == (500, 375)
    assert min(fractions) < 0.12 and max(fractions) > 0.9  # the whole range is drawn


def test_the_evaluation_crop_frames_what_resize_then_centre_crop_frames():
    data = photo(500, 375)
    view = decode_views(data, [Crop(224, random=False, fraction=224 / 256)])[0]
    box = centre_box(500, 375, 224 / 256)
    assert psnr(view, full_size_reference(data, box, 224)) >= 40.0
    # Resize(256) + CenterCrop(224) takes the full-size region x ∈ [85.0, 413.1), y ∈ [23.4, 351.6): within 1.5 px
    scale = 375 / 256
    left, top = round((round(500 / scale) - 224) / 2) * scale, round((256 - 224) / 2) * scale
    assert abs(box[0] - left) < 1.5 and abs(box[1] - top) < 1.5 and abs(box[2] - 224 * scale) < 1.5


def test_png_files_take_the_same_boxes_on_a_full_decode():
    data = photo(320, 240, "PNG")
    view = decode_views(data, [Crop(64, (0.5, 1.0))], random.Random(5))[0]
    box = Crop(64, (0.5, 1.0)).box(320, 240, random.Random(5))
    assert psnr(view, full_size_reference(data, box, 64)) >= 40.0


def test_snapped_boxes_stay_inside_the_image_and_within_half_a_step():
    from frossl_lit.data.decode import snap

    draw = random.Random(0)
    for _ in range(500):
        box = random_box(1283, 961, (0.08, 1.0), (3 / 4, 4 / 3), draw)
        for factor in (2, 4, 8):
            left, top, w, h = snap(box, factor, 1283, 961)
            assert all(v % factor == 0 for v in (left, top, w, h))
            assert left >= 0 and top >= 0 and left + w <= 1283 and top + h <= 961
            assert abs(w - box[2]) <= factor and abs(h - box[3]) <= factor


def test_dct_reduction_is_the_largest_power_of_two_every_box_allows():
    assert dct_reduction([(0, 0, 500, 400)], [224]) == 1
    assert dct_reduction([(0, 0, 500, 460)], [224]) == 2
    assert dct_reduction([(0, 0, 1000, 900), (0, 0, 300, 300)], [224, 96]) == 2  # the second view sets it
    assert dct_reduction([(0, 0, 800, 800)], [96]) == 8


def test_a_corrupt_jpeg_raises():
    data = photo(200, 150)
    with pytest.raises((OSError, RuntimeError, ValueError)):
        decode_views(data[:2] + b"\x00" * 200, [Crop(32)])
