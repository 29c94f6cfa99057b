"""What the losses share: :func:`float32_maths` and the embedding normalisations.

In the normalisations, batch statistics are summed over a :class:`Collective`, so that under DDP they are those
of the global batch (every rank must hold the same number of samples, as the ``drop_last`` sharded loaders
guarantee)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from frossl_lit.runtime.distributed import LOCAL, Collective


def unit_columns(z: torch.Tensor, collective: Collective = LOCAL, eps: float = 1e-12) -> torch.Tensor:
    """Each dimension (column) of ``z`` (..., N, D) scaled to unit L2 norm over the batch axis -2
    (``F.normalize(z, dim=0)`` on the global batch)."""
    col_sq = collective.sum(z.pow(2).sum(dim=-2, keepdim=True))
    return z * torch.rsqrt(col_sq.clamp_min(eps * eps))


def unit_rows(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Each embedding (row) of ``z`` (..., N, D) scaled to unit L2 norm (``F.normalize(z, dim=-1)``)."""
    return F.normalize(z, dim=-1, eps=eps)


def centre(z: torch.Tensor, collective: Collective = LOCAL) -> torch.Tensor:
    """``z`` (..., N, D) minus its mean over the (global) batch."""
    n = z.shape[-2] * collective.world_size
    return z - collective.sum(z.sum(dim=-2, keepdim=True)) / n


def standardize(z: torch.Tensor, collective: Collective = LOCAL, eps: float = 1e-5) -> torch.Tensor:
    """Each dimension centred and scaled to unit biased variance over the (global) batch, as
    ``BatchNorm1d(affine=False)`` in training mode does."""
    centred = centre(z, collective)
    var = collective.sum(centred.pow(2).sum(dim=-2, keepdim=True)) / (z.shape[-2] * collective.world_size)
    return centred * torch.rsqrt(var + eps)


def float32_maths(loss: Callable) -> Callable:
    """Run ``loss(views, ...)`` in float32 under mixed precision: autocast off inside it and half-precision inputs
    (bf16 / fp16 embeddings from an autocast projector) cast up, so Gram matrices, covariances, logarithms and
    singular values are computed in fp32 (float64 views stay float64). Every positional argument that is a tensor
    or a list of tensors is cast (predictions and targets, a queue). Gradients flow back through the cast."""

    def up(value):
        if isinstance(value, torch.Tensor):
            return value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
            return [up(v) for v in value]
        return value

    @functools.wraps(loss)
    def in_float32(views, *args, **kwargs):
        views, args = up(list(views)), [up(arg) for arg in args]
        with torch.autocast(device_type=views[0].device.type if views else "cpu", enabled=False):
            return loss(views, *args, **kwargs)

    return in_float32
