"""BYOL (Grill et al., NeurIPS 2020, arXiv 2006.07733): predict the momentum target's projection of one view from
the online network's prediction of another.

With p_v the online prediction of view v and z̄_t the target projection of target view t (no gradient), both
projected onto the unit sphere, the normalised squared error of one pair is ‖p̄ − z̄‖² = 2 − 2 cos(p, z). The loss
sums it over ordered pairs, each averaged over the batch:

    loss = Σ_(t < T) Σ_(v ≠ t) mean_i ( 2 − 2 cos(p_(v,i), z_(t,i)) )

For two views that is the paper's symmetrised loss ℒ + ℒ̃ (§3.2). With more views (T large crops seen by the
target, V − T small ones), every view predicts every other target view, as solo-learn sums them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from frossl_lit.losses.common import float32_maths, unit_rows
from frossl_lit.runtime.distributed import LOCAL, Collective


@float32_maths
def byol_loss(
    predictions: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    collective: Collective = LOCAL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BYOL's loss of V ≥ 2 online predictions (N, D) and the target projections (N, D) of the first T ≤ V views
    (detached here). Returns ``(total, {"cosine_similarity"})``, the mean cosine over the pairs."""
    if len(predictions) < 2:
        raise ValueError(f"BYOL needs at least 2 views, got {len(predictions)}")
    if not 1 <= len(targets) <= len(predictions):
        raise ValueError(f"BYOL needs target projections of 1 to {len(predictions)} views, got {len(targets)}")
    n = predictions[0].shape[0] * collective.world_size
    # Σ_(v≠t) p̂_v · ẑ_t = (Σ_v p̂_v − p̂_t) · ẑ_t: each view normalised once, one product per target view, so the
    # cost grows with V, not with the V·(V − 1) pairs
    unit_predictions = [unit_rows(p) for p in predictions]
    all_predictions = torch.stack(unit_predictions).sum(dim=0)
    cosine_sum = predictions[0].new_zeros(())
    for t, target in enumerate(targets):
        others = all_predictions - unit_predictions[t]
        cosine_sum = cosine_sum + (others * unit_rows(target.detach())).sum()
    cosine_sum = collective.sum(cosine_sum) / n
    pairs = len(targets) * (len(predictions) - 1)
    total = 2 * pairs - 2 * cosine_sum
    return total, {"cosine_similarity": cosine_sum / pairs}
