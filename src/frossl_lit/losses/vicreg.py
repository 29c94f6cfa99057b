"""VICReg (Bardes, Ponce, LeCun, ICLR 2022): variance-invariance-covariance regularisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from frossl_lit.losses.common import float32_maths
from frossl_lit.runtime.distributed import LOCAL, Collective


def _centred_covariance(z: torch.Tensor, collective: Collective) -> torch.Tensor:
    n = z.shape[0] * collective.world_size
    mean = collective.sum(z.sum(dim=0, keepdim=True)) / n
    centred = z - mean
    return collective.sum(centred.T @ centred) / (n - 1)


@float32_maths
def vicreg_loss(
    views: Sequence[torch.Tensor],
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    variance_target: float = 1.0,
    epsilon: float = 1e-4,
    collective: Collective = LOCAL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """VICReg loss of two embeddings (N, D).

    - invariance: mean squared error between the two views, averaged over N and D.
    - variance: ``mean_d relu(target - sqrt(Var(z_d) + eps))`` per view (unbiased variance), **averaged** over the
      two views, as in the official code (``std_loss / 2 + ...``) and lightly. The paper's equation *sums* the two
      views, i.e. it is twice this term: with the paper's weights 25/25/1 the official code is what produced the
      published numbers, so that is what ``variance_weight`` multiplies here.
    - covariance: sum of squared off-diagonal entries of each view's covariance divided by D, **summed** over
      the two views (paper and official code agree).

    Returns ``(total, {"invariance", "variance", "covariance"})``, the parts unweighted.
    """
    if len(views) != 2:
        raise ValueError(f"VICReg is defined on 2 views, got {len(views)}; set augment.num_views=2")
    za, zb = views
    n, dim = za.shape[0] * collective.world_size, za.shape[1]
    invariance = collective.sum((za - zb).pow(2).sum()) / (n * dim)

    variance = za.new_zeros(())
    covariance = za.new_zeros(())
    for z in (za, zb):
        cov = _centred_covariance(z, collective)
        std = torch.sqrt(torch.diagonal(cov) + epsilon)
        variance = variance + torch.relu(variance_target - std).mean() / 2
        off_diagonal = cov - torch.diag_embed(torch.diagonal(cov))
        covariance = covariance + off_diagonal.pow(2).sum() / dim

    total = invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance
    return total, {"invariance": invariance, "variance": variance, "covariance": covariance}
