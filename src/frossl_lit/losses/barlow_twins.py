"""Barlow Twins (Zbontar et al., ICML 2021): cross-correlation matrix pushed to the identity."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from frossl_lit.losses.common import float32_maths, standardize
from frossl_lit.runtime.distributed import LOCAL, Collective


@float32_maths
def barlow_twins_loss(
    views: Sequence[torch.Tensor],
    off_diagonal_weight: float = 0.0051,
    scale: float = 1.0,
    collective: Collective = LOCAL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Barlow Twins loss of two embeddings (N, D).

    Each dimension is standardised over the (global) batch with the biased variance, as the paper's
    ``BatchNorm1d(affine=False)`` does; ``C = Z_a^T Z_b / N``;
    ``loss = scale * (sum_i (1 - C_ii)^2 + off_diagonal_weight * sum_{i != j} C_ij^2)``.

    Returns ``(total, {"on_diagonal", "off_diagonal"})``, the parts unweighted.
    """
    if len(views) != 2:
        raise ValueError(f"Barlow Twins is defined on 2 views, got {len(views)}; set augment.num_views=2")
    za, zb = (standardize(z, collective, eps=1e-5) for z in views)
    n = za.shape[0] * collective.world_size
    corr = collective.sum(za.T @ zb) / n
    diagonal = torch.diagonal(corr)
    on_diagonal = (1.0 - diagonal).pow(2).sum()
    off_diagonal = corr.pow(2).sum() - diagonal.pow(2).sum()
    total = scale * (on_diagonal + off_diagonal_weight * off_diagonal)
    return total, {"on_diagonal": on_diagonal, "off_diagonal": off_diagonal}
