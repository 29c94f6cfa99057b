"""The linear head on frozen features (the online probe's and the offline protocol's) and its optimizer."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from frossl_lit.runtime.errors import UserError, require

HEADS = ("bn_linear", "linear")


def linear_head(in_dim: int, num_classes: int, head: str = "bn_linear", key: str = "head") -> nn.Sequential:
    """The linear classifier on frozen features, as ``head`` says (``key``: its config key, named when refused):

    - ``bn_linear`` (default): ``BatchNorm1d(affine=False) → Linear``; the affine-free batch norm (the MAE
      linear-probe protocol) makes the head insensitive to the scale of the features, which differs widely between
      methods and over training;
    - ``linear``: ``Linear`` alone, the sources' head: solo-learn's online classifier and linear protocol
      (vturrisi/solo-learn@9187ea3 solo/methods/base.py:210 and solo/methods/linear.py:113, ``nn.Linear``), the
      official VICReg / Barlow Twins linear evaluations (facebookresearch/vicreg@4e12602 ``evaluate.py``,
      facebookresearch/barlowtwins@8e8d284 ``evaluate.py``: a bare ``nn.Linear`` after the frozen ResNet).

    Either is an ``nn.Sequential`` whose last module is the ``Linear`` (``head[-1]``)."""
    check_head(head, key)
    layers = [nn.BatchNorm1d(in_dim, affine=False)] if head == "bn_linear" else []
    return nn.Sequential(*layers, nn.Linear(in_dim, num_classes))


def check_head(head: str, key: str = "head") -> None:
    """Refuse a ``head`` that is not one of :data:`HEADS` (one line naming ``key``)."""
    require(key, head, lambda v: v in HEADS, "must be bn_linear or linear",
            f"e.g. {key}=linear (a plain Linear, as solo-learn) or {key}=bn_linear")


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
