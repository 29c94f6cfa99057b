"""Backbones: torchvision ResNets (optionally with the CIFAR stem) and a small CNN for CPU runs.

The contract (:class:`Backbone`): a module that maps images (B, C, H, W) to features (B, out_dim) and carries
``out_dim`` (an int), which the projector, the online probe and the offline heads are sized by.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torchvision
from torch import nn


@runtime_checkable
class Backbone(Protocol):
    """What every backbone is: ``forward(images (B, C, H, W)) -> features (B, out_dim)`` with ``out_dim: int``."""

    out_dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def check_backbone(backbone: nn.Module) -> nn.Module:
    """``backbone`` itself, once it meets the :class:`Backbone` contract (a TypeError naming what is missing)."""
    if not isinstance(backbone, nn.Module) or not isinstance(getattr(backbone, "out_dim", None), int):
        raise TypeError(f"a backbone is an nn.Module with an int out_dim (its feature width); got {type(backbone).__name__} "
                        f"with out_dim={getattr(backbone, 'out_dim', None)!r}")
    return backbone

_RESNET_WIDTH = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


def resnet(
    name: str = "resnet18",
    cifar_stem: bool = False,
    in_channels: int = 3,
    stem_padding: int = 2,
    zero_init_residual: bool = False,
) -> nn.Module:
    """A randomly initialised torchvision ResNet without its classifier.

    ``cifar_stem`` replaces the 7×7/2 convolution and the max-pool by one 3×3/1 convolution, the usual choice for
    32×32 images; solo-learn and the official FroSSL code pad it by ``stem_padding=2`` (34×34 maps from 32 px
    images), others by 1. ``zero_init_residual`` starts each residual branch's last BN at zero: the official
    VICReg and Barlow Twins code do, solo-learn and FroSSL do not.
    """
    if name not in _RESNET_WIDTH:
        raise ValueError(f"unknown ResNet {name!r}; choose one of {', '.join(_RESNET_WIDTH)}")
    model = getattr(torchvision.models, name)(weights=None, zero_init_residual=zero_init_residual)
    if cifar_stem:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=stem_padding, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.fc = nn.Identity()
    model.out_dim = _RESNET_WIDTH[name]
    return model


class SmallCNN(nn.Module):
    """An all-convolutional net: Conv3×3-BN-ReLU stages, the first at stride 1 and each later one at stride 2,
    then global average pooling.

    Strided convolutions rather than max-pooling: a random max-pooled CNN is already a strong kNN feature on
    small images (0.94 top-1 on digits), which hides what self-supervision learns; the strided net starts near
    0.87 and learns as far. Widths (32, 64, 128, 256) train at several hundred 32×32 images/s on 2 CPU cores.
    ``downsample="maxpool"`` halves with a 2×2 max-pool before each later stage instead (same cost, a stronger
    feature from the first step: the laptop preset's choice). ``depths``: Conv-BN-ReLU layers per stage (one count
    for all stages, or one per stage); the extra layers keep the stage's width and resolution.
    """

    def __init__(
        self,
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        in_channels: int = 3,
        downsample: str = "stride",
        depths: int | tuple[int, ...] | list[int] = 1,
    ) -> None:
        super().__init__()
        if downsample not in ("stride", "maxpool"):
            raise ValueError(f"backbone.downsample={downsample!r} must be stride or maxpool")
        depths = [depths] * len(widths) if isinstance(depths, int) else list(depths)
        if len(depths) != len(widths) or min(depths) < 1:
            raise ValueError(f"backbone.depths={depths} must be one count ≥ 1 for each of the {len(widths)} stages of backbone.widths")
        layers: list[nn.Module] = []
        previous = in_channels
        for index, (width, depth) in enumerate(zip(widths, depths)):
            stride = 1 if index == 0 or downsample == "maxpool" else 2
            if index > 0 and downsample == "maxpool":
                layers.append(nn.MaxPool2d(2))  # halve, then convolve: the same multiply-adds as a strided conv
            for _ in range(depth):
                layers += [nn.Conv2d(previous, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                previous, stride = width, 1
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)
