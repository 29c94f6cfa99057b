"""Embedding normalisations shared by the losses. Batch statistics are summed over a :class:`Collective`, so that
under DDP they are those of the global batch (every rank must hold the same number of samples, as the
``drop_last`` sharded loaders guarantee)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from frossl_lit.distributed import LOCAL, Collective


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
