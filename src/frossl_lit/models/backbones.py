"""Backbones: torchvision ResNets (optionally with the CIFAR stem), a small CNN for CPU runs, and any timm model
(Vision Transformers included) through :func:`timm_backbone`.

The contract (:class:`Backbone`): a module that maps images (B, C, H, W) to features (B, out_dim) and carries
``out_dim`` (an int), which the projector, the online probe and the offline heads are sized by.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from frossl_lit.runtime.errors import UserError


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


def timm_backbone(
    name: str = "resnet50",
    pretrained: bool = False,
    img_size: int | None = None,
    in_channels: int = 3,
    **kwargs: Any,
) -> nn.Module:
    """Any timm model as a backbone: ``timm.create_model(name, num_classes=0, in_chans=in_channels, **kwargs)``,
    which returns pooled features; ``out_dim`` is the width of those features (``head_hidden_size``, else
    ``num_features``).

    ``img_size`` (the side of the training crops) is passed to models that take one (ViTs, Swin, …: their position
    embeddings are sized by it) and dropped for the others (ResNets, ConvNeXts, … run at any size). Other keyword
    arguments go to the model as they are (ViT: ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``,
    ``dynamic_img_size``, ``drop_path_rate``, …). ``pretrained=True`` loads timm's weights only from the local
    caches (Hugging Face hub or torch hub), never downloads them during a run: a UserError says how to fetch them
    when they are not there. An unknown ``name`` is a UserError naming the closest timm models.
    """
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else "python -c 'import timm; print(timm.list_models(\"*vit*\"))' lists them"
        raise UserError(f"backbone.name={name!r} is not a timm model; {hint}")
    if pretrained and not _cached_pretrained_weights(name, kwargs):
        raise UserError(
            f"backbone.pretrained=true: timm's weights of {name!r} are not in the local cache and runs never download; "
            f"fetch them once with python -c 'import timm; timm.create_model(\"{name}\", pretrained=True)', or set backbone.pretrained=false")
    options = dict(pretrained=pretrained, num_classes=0, in_chans=in_channels, **kwargs)
    if img_size is not None:
        try:
            model = timm.create_model(name, img_size=img_size, **options)
        except TypeError as error:  # a model without position embeddings: any size runs
            if "img_size" not in str(error):
                raise
            model = timm.create_model(name, **options)
    else:
        model = timm.create_model(name, **options)
    model.out_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return model


def _cached_pretrained_weights(name: str, kwargs: dict[str, Any]) -> bool:
    """Whether timm finds ``name``'s pretrained weights without the network: a local file (``pretrained_cfg_overlay``
    ``file``), the Hugging Face hub cache, or the torch hub cache of the weights' URL (where timm's
    ``download_cached_file`` puts them)."""
    from timm.models import get_pretrained_cfg

    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    if overlay.get("file"):
        return os.path.isfile(overlay["file"])
    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return False
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
        if any(isinstance(try_to_load_from_cache(repo, file, revision=revision or None), str) for file in files):
            return True
    if not cfg.url:
        return False
    return os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(cfg.url).path)))


def benefits_from_channels_last(backbone: nn.Module) -> bool:
    """Whether channels-last memory format can speed ``backbone`` up: it has convolutional stages, i.e. more than one
    ``nn.Conv2d``. A ViT's only convolution is its patch embedding, right after which the tokens are flattened:
    channels-last would only add a copy there."""
    return sum(isinstance(module, nn.Conv2d) for module in backbone.modules()) > 1
