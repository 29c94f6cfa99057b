"""FroSSL (Skean et al., arXiv 2310.02903): Frobenius-norm regulariser plus invariance to the mean view."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from frossl_lit.distributed import LOCAL, Collective

NORMALIZATIONS = ("dimension", "standardize", "sample")


def normalize_embeddings(
    z: torch.Tensor, mode: str = "dimension", collective: Collective = LOCAL, eps: float = 1e-6
) -> torch.Tensor:
    """Normalise embeddings ``z`` of shape (..., N, D); the batch axis is -2.

    - ``dimension``: each dimension (column) has unit L2 norm over the batch (the official multiview default).
    - ``standardize``: each dimension centred and scaled to unit (biased) variance over the batch, as batch norm
      without affine parameters does (the paper's description and its first two-view code).
    - ``sample``: each embedding (row) has unit L2 norm.

    Batch statistics are summed over ``collective`` so that under DDP they are those of the global batch
    (every rank must hold the same number of samples, as ``drop_last=True`` loaders guarantee).
    """
    if mode == "dimension":
        col_sq = collective.sum(z.pow(2).sum(dim=-2, keepdim=True))
        return z * torch.rsqrt(col_sq.clamp_min(eps * eps))
    if mode == "standardize":
        n = z.shape[-2] * collective.world_size
        mean = collective.sum(z.sum(dim=-2, keepdim=True)) / n
        centred = z - mean
        var = collective.sum(centred.pow(2).sum(dim=-2, keepdim=True)) / n
        return centred * torch.rsqrt(var + eps)
    if mode == "sample":
        return F.normalize(z, dim=-1, eps=eps)
    raise ValueError(f"unknown embedding normalization {mode!r}; choose one of {', '.join(NORMALIZATIONS)}")


def frossl_loss(
    views: Sequence[torch.Tensor],
    invariance_weight: float = 1.0,
    normalization: str = "dimension",
    collective: Collective = LOCAL,
    gram: str = "auto",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Multiview FroSSL loss of V embeddings ``views[v]`` of shape (N, D).

    For each view, with Z_v normalised (see :func:`normalize_embeddings`) and K_v its Gram matrix (D×D, or N×N
    when the global batch N is smaller than D: both have the same Frobenius norm and trace):

        regularizer_v = log ||K_v / tr(K_v)||_F^2
        invariance_v  = V · D · invariance_weight · mean_{n,d} (Z_v - mean_u Z_u)^2

    and the loss is the sum over views of both. Minimising the regulariser maximises the collision entropy of
    K_v (it spreads the eigenvalue spectrum); the logarithm balances it against the invariance term. The
    invariance total grows as V² against the regulariser's V, so ``V · invariance_weight`` sets the balance:
    halve the weight when doubling the views (V = 4 at weight 1 collapsed where V = 4 at 0.5 did not).

    ``gram`` forces the D×D (``"features"``) or N×N (``"samples"``) Gram matrix; ``"auto"`` takes the smaller.

    Returns ``(total, {"regularizer": (V,), "invariance": (V,)})``.
    """
    if gram not in ("auto", "features", "samples"):
        raise ValueError(f"gram={gram!r} must be auto, features or samples")
    if len(views) < 2:
        raise ValueError(f"FroSSL needs at least 2 views, got {len(views)}")
    z = normalize_embeddings(torch.stack(list(views)), normalization, collective)  # (V, N, D)
    num_views, n_local, dim = z.shape
    n_global = n_local * collective.world_size

    if gram == "samples" or (gram == "auto" and n_global < dim):  # N×N of the gathered samples: the smaller
        gathered = collective.gather(z.transpose(0, 1).contiguous()).transpose(0, 1)
        kernel = gathered @ gathered.mT
    else:  # D×D: per-rank Grams summed over ranks, no gather needed
        kernel = collective.sum(z.mT @ z)
    trace = torch.diagonal(kernel, dim1=-2, dim2=-1).sum(-1)
    regularizer = torch.log(kernel.pow(2).sum(dim=(-2, -1))) - 2.0 * torch.log(trace)

    squared_error = collective.sum((z - z.mean(dim=0, keepdim=True)).pow(2).sum(dim=(-2, -1)))
    invariance = invariance_weight * num_views * dim * squared_error / (n_global * dim)

    total = regularizer.sum() + invariance.sum()
    return total, {"regularizer": regularizer, "invariance": invariance}
