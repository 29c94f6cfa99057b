"""MMCR (Yerxa, Kuang, Simoncelli, Chung, NeurIPS 2023, arXiv 2303.03307): Maximum Manifold Capacity Representations.

Each embedding is projected onto the unit sphere; the V views of sample i form its "manifold" Z_i (V×D) and its
centroid c_i is their mean. MMCR maximises the nuclear norm (the sum of singular values) of the centroid matrix
C (N×D): views of one sample pulled together make long centroids, different samples spread over many directions
make many large singular values. An optional term with weight λ shrinks each sample's own manifold:

    loss = −‖C‖_*  +  λ · (1/N) Σ_i ‖Z_i‖_*

λ = 0 is the setting of the paper's main runs (the centroid term alone). The multiview baseline the FroSSL paper
compares against on STL-10.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from frossl_lit.losses.common import float32_maths, unit_rows
from frossl_lit.runtime.distributed import LOCAL, Collective


@float32_maths
def mmcr_loss(
    views: Sequence[torch.Tensor],
    local_weight: float = 0.0,
    collective: Collective = LOCAL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MMCR loss of V ≥ 2 embeddings (N, D) (see the module docstring).

    Under DDP the centroids of every rank are gathered, so ``‖C‖_*`` is the nuclear norm of the global batch's
    centroid matrix; the per-sample term is averaged over the global batch. Returns
    ``(total, {"centroid_nuclear_norm", "local_nuclear_norm"})``, the parts unweighted and unsigned.
    """
    if len(views) < 2:
        raise ValueError(f"MMCR needs at least 2 views, got {len(views)}")
    if local_weight < 0:
        raise ValueError(f"MMCR's local_weight={local_weight} must be non-negative")
    z = unit_rows(torch.stack(list(views), dim=1))  # (N, V, D): each sample's manifold
    centroids = collective.gather(z.mean(dim=1))  # (N_global, D)
    centroid_norm = torch.linalg.svdvals(centroids).sum()
    total = -centroid_norm
    local_norm = centroid_norm.new_zeros(())
    if local_weight > 0:
        n_global = z.shape[0] * collective.world_size
        local_norm = collective.sum(torch.linalg.svdvals(z).sum()) / n_global
        total = total + local_weight * local_norm
    return total, {"centroid_nuclear_norm": centroid_norm, "local_nuclear_norm": local_norm}
