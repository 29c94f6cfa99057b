"""The pipelines experiments/bench_decode.py compares: JPEG decoders for two random-resized crops of 224 px (one
image at a time), and the per-image torchvision transform ``ImageFolder`` runs in DataLoader workers."""

from __future__ import annotations

import io

import numpy as np
import torch

SIZE = 224


def decoders() -> dict:
    import torchvision.io as tvio
    from PIL import Image
    from torchvision.transforms import v2

    from frossl_lit.data.decode import Crop, decode_views, plan, resize_box

    crop = v2.RandomResizedCrop(SIZE, scale=(0.08, 1.0), antialias=True)
    to_tensor = v2.PILToTensor()
    crops = [Crop(SIZE), Crop(SIZE)]

    def pil_torchvision(data: bytes):
        image = Image.open(io.BytesIO(data)).convert("RGB")
        return [to_tensor(crop(image)) for _ in crops]

    def torchvision_tensor(data: bytes):
        image = tvio.decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        return [crop(image) for _ in crops]

    def pil_draft(data: bytes):
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        factor, boxes = plan(width, height, crops)
        image.draft("RGB", (-(-width // factor), -(-height // factor)))
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1)
        return [resize_box(pixels, box, SIZE, factor) for box in boxes]

    return {
        "Pillow decode + torchvision v2 crop (ImageFolder)": pil_torchvision,
        "torchvision decode_jpeg + v2 crop on tensors (before)": torchvision_tensor,
        "Pillow draft (DCT reduction) + torch resize": pil_draft,
        "crop-aware decode (frossl_lit.data.decode)": lambda data: decode_views(data, crops),
    }



class TorchvisionViews:
    """``ImageFolder``'s transform: the same per-image pipeline applied once per view."""

    def __init__(self, full_recipe: bool) -> None:
        from torchvision.transforms import v2

        steps = [v2.RandomResizedCrop(SIZE, scale=(0.08, 1.0), antialias=True), v2.PILToTensor()]
        if full_recipe:  # the ImageNet recipe of conf/augment/imagenet.yaml, view 1 and view 2
            colour = [v2.RandomHorizontalFlip(), v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), v2.RandomGrayscale(0.2)]
            tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
            blur = lambda p: v2.RandomApply([v2.GaussianBlur(23, (0.1, 2.0))], p=p)
            self.views = [
                v2.Compose([*steps, *colour, blur(1.0), *tail]),
                v2.Compose([*steps, *colour, blur(0.1), v2.RandomSolarize(128, p=0.2), *tail]),
            ]
        else:
            self.views = [v2.Compose(steps)] * 2

    def __call__(self, image):
        return [view(image) for view in self.views]
