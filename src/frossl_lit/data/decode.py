"""Crop-aware decoding of image files: each view's box is drawn from the file's header, the JPEG is decoded once at
the smallest DCT scale that still gives every box its output size, and each view is cut and resized from that.

A random-resized crop of a 500×375 photo to 224 px uses a box of 120–430 px: decoding the whole file at full size
and then resizing (what a PIL ``ImageFolder`` pipeline does) spends most of its time in the resize. Here:

1. the header gives the size; every view draws its own box (:func:`random_box`, torchvision's algorithm);
2. libjpeg-turbo (through ``simplejpeg``, the fastest decoder measured here: ``experiments/bench_decode.py``)
   decodes once at 1/1, 1/2, 1/4 or 1/8 scale: the smallest at which every box still has at least its view's
   output size (:func:`dct_reduction`; libjpeg's other M/8 scales measured slower than a full decode);
3. each box, moved onto the grid of the reduction (:func:`snap`, under half a decoded pixel), is cut from the
   decoded pixels and resized with torch's uint8 antialiased bilinear kernel, which runs
   fastest on the decoder's pixel-interleaved (channels-last) layout; or its uint8 antialiased bicubic kernel
   (saturating at 0 and 255) for a recipe's ``interpolation: bicubic`` (solo-learn's and the official FroSSL code's
   ``RandomResizedCrop(..., interpolation=BICUBIC)``).

Non-JPEG files (PNG, WebP, …) take the same boxes on a full decode. Evaluation crops (short side resized to
``resize``, centre ``size``) are the box :func:`centre_box` with ``fraction = size / resize``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Box = tuple[int, int, int, int]  # left, top, width, height in full-image pixels
JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True)
class Crop:
    """What one output view takes from an image: a random-resized crop (``random``), or the centre square holding
    ``fraction`` of the short side (evaluation, and recipes without random crops: ``fraction=1``)."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    random: bool = True
    fraction: float = 1.0
    interpolation: str = "bilinear"  # the resize of the box: bilinear | bicubic (both antialiased)

    def box(self, width: int, height: int, rng: random.Random | None = None) -> Box:
        if self.random:
            return random_box(width, height, self.scale, self.ratio, rng or random)
        return centre_box(width, height, self.fraction)


def eval_resize(size: int) -> int:
    """The short side evaluation resizes to before the centre ``size`` crop (the ImageNet convention 256 → 224)."""
    return int(round(size * 256 / 224))


def eval_crop(size: int, resize: int | None = None) -> Crop:
    """The evaluation crop: the short side resized to ``resize`` (default :func:`eval_resize`), the centre ``size``."""
    return Crop(size, random=False, fraction=size / (resize or eval_resize(size)))


def view_crops(recipes) -> list[Crop]:
    """The crop of each view recipe (:class:`~frossl_lit.data.augment.recipe.ViewRecipe`: size, scale, ratio, random
    or whole), for loaders whose workers decode and crop every training view (image folders, streams of files)."""
    return [Crop(r.size, tuple(r.scale), tuple(r.ratio), r.random_resized_crop, interpolation=r.interpolation) for r in recipes]


def random_box(width: int, height: int, scale, ratio, rng=random) -> Box:
    """A random-resized-crop box: area a uniform fraction in ``scale`` of the image, aspect ratio log-uniform in
    ``ratio``; after 10 misses the largest centred box within ``ratio`` (torchvision's ``RandomResizedCrop``)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    aspect = width / height
    if aspect < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif aspect > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def centre_box(width: int, height: int, fraction: float = 1.0) -> Box:
    """The centred square of side ``fraction`` × the short side (``Resize(s) + CenterCrop(c)`` is ``fraction=c/s``)."""
    side = max(1, min(width, height, int(round(min(width, height) * fraction))))
    return (width - side) // 2, (height - side) // 2, side, side


def dct_reduction(boxes: list[Box], sizes: list[int]) -> int:
    """The largest of 8, 4, 2, 1 by which the image can be decoded smaller with every box still at least as large
    as its output size in both directions."""
    for factor in (8, 4, 2):
        if all(min(w, h) >= size * factor for (_, _, w, h), size in zip(boxes, sizes)):
            return factor
    return 1


def snap(box: Box, factor: int, width: int, height: int) -> Box:
    """``box`` moved and sized onto the grid of ``factor`` pixels, so that at 1/``factor`` scale it covers whole
    decoded pixels: the region cut is then exactly the full-size box (a misaligned box is off by up to
    ``factor`` − 1 pixels, which costs 5–10 dB of PSNR at 1/8). Moves each edge by under ``factor`` / 2 pixels."""
    if factor == 1:
        return box
    limit_w, limit_h = width // factor * factor, height // factor * factor
    w = min(limit_w, max(factor, int(round(box[2] / factor)) * factor))
    h = min(limit_h, max(factor, int(round(box[3] / factor)) * factor))
    left = min(limit_w - w, int(round(box[0] / factor)) * factor)
    top = min(limit_h - h, int(round(box[1] / factor)) * factor)
    return left, top, w, h


def plan(width: int, height: int, crops: list[Crop], rng: random.Random | None = None) -> tuple[int, list[Box]]:
    """The DCT reduction one decode of a ``width``×``height`` JPEG can use and every crop's box (on its grid)."""
    boxes = [crop.box(width, height, rng) for crop in crops]
    factor = dct_reduction(boxes, [crop.size for crop in crops])
    return factor, [snap(box, factor, width, height) for box in boxes]


def resize_box(pixels: torch.Tensor, box: Box, size: int, factor: int = 1, interpolation: str = "bilinear") -> torch.Tensor:
    """Cut ``box`` (full-image pixels) from ``pixels`` (uint8 C×H×W, decoded at 1/``factor`` scale) and resize it
    to ``size``×``size`` (uint8, antialiased ``interpolation``: bilinear or bicubic; torch's uint8 kernels round and
    saturate, so bicubic's overshoot is clamped to [0, 255])."""
    left, top, w, h = box
    height, width = pixels.shape[-2:]
    x0, y0 = min(width - 1, int(left / factor)), min(height - 1, int(top / factor))
    x1 = min(width, max(x0 + 1, int(round((left + w) / factor))))
    y1 = min(height, max(y0 + 1, int(round((top + h) / factor))))
    region = pixels[None, :, y0:y1, x0:x1]
    if region.shape[-2:] == (size, size):
        return region[0].contiguous()
    return F.interpolate(region, size=(size, size), mode=interpolation, antialias=True, align_corners=False)[0]


def decode_views(data: bytes, crops: list[Crop], rng: random.Random | None = None) -> list[torch.Tensor]:
    """Every crop's view (uint8 3×size×size, in the decoder's channels-last memory layout: the batch is stacked
    from them in one copy) of one encoded image, its bytes decoded once."""
    if data[:2] == JPEG_MAGIC:
        import simplejpeg

        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError:
            height = 0  # a JPEG libjpeg cannot parse: the generic decoder says what is wrong
        if height:
            factor, boxes = plan(width, height, crops, rng)
            min_size = {"min_height": -(-height // factor), "min_width": -(-width // factor)} if factor > 1 else {}
            pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=True, **min_size)
            pixels = torch.from_numpy(pixels).permute(2, 0, 1)
            return [resize_box(pixels, box, crop.size, factor, crop.interpolation) for box, crop in zip(boxes, crops)]
    pixels = decode_any(data).permute(1, 2, 0).contiguous().permute(2, 0, 1)  # channels-last: the fast resize
    height, width = pixels.shape[-2:]
    return [resize_box(pixels, crop.box(width, height, rng), crop.size, interpolation=crop.interpolation) for crop in crops]


def decode_any(data: bytes) -> torch.Tensor:
    """uint8 (3, H, W) of any image format: torchvision's decoders (libjpeg-turbo, libpng, libwebp) first, Pillow
    for the rest (BMP, TIFF, GIF, PPM)."""
    import torchvision.io as tvio

    try:
        return tvio.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=tvio.ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        import io

        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).contiguous()
