"""The linear head on frozen features (the online probe's and the offline protocol's) and its optimizer."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from frossl_lit.runtime.errors import UserError


def linear_head(in_dim: int, num_classes: int) -> nn.Sequential:
    """``BatchNorm1d(affine=False) → Linear``: the affine-free batch norm (the MAE linear-probe protocol) makes the
    head insensitive to the scale of the features, which differs widely between methods and over training."""
    return nn.Sequential(nn.BatchNorm1d(in_dim, affine=False), nn.Linear(in_dim, num_classes))


def linear_optimizer(head: nn.Module, settings: DictConfig):
    """``(optimizer, per-epoch scheduler)`` of the offline protocol: SGD (momentum) or Adam, with cosine over the
    epochs or steps at ``lr_decay_steps`` × ``gamma``."""
    if settings.optimizer == "adam":
        optimizer = torch.optim.Adam(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    elif settings.optimizer == "sgd":
        optimizer = torch.optim.SGD(head.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    else:
        raise UserError(f"linear.optimizer={settings.optimizer!r} must be sgd or adam")
    if settings.scheduler == "cosine":
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    if settings.scheduler == "step":
        return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, list(settings.lr_decay_steps), settings.gamma)
    raise UserError(f"linear.scheduler={settings.scheduler!r} must be cosine or step")
