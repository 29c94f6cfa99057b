"""SimSiam (Chen and He, CVPR 2021, arXiv 2011.10566): a predictor on one branch, a stop-gradient on the other,
no momentum network and no negatives.

With p_v the prediction and z_v the projection of view v, the symmetrised negative cosine similarity (the paper's
eq. 2 and Algorithm 1) is

    loss = −( mean_i cos(p_(1,i), sg(z_(2,i))) + mean_i cos(p_(2,i), sg(z_(1,i))) ) / 2
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from frossl_lit.losses.common import float32_maths
from frossl_lit.runtime.distributed import LOCAL, Collective


@float32_maths
def simsiam_loss(
    predictions: Sequence[torch.Tensor],
    embeddings: Sequence[torch.Tensor],
    collective: Collective = LOCAL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SimSiam's loss of two predictions (N, D) and the two views' projections (N, D; the stop-gradient is applied
    here). Returns ``(total, {})``: the loss is its only term."""
    if len(predictions) != 2 or len(embeddings) != 2:
        raise ValueError(f"SimSiam is defined on 2 views, got {len(predictions)}; set augment.num_views=2")
    n = predictions[0].shape[0] * collective.world_size
    total = predictions[0].new_zeros(())
    for p, z in ((predictions[0], embeddings[1]), (predictions[1], embeddings[0])):
        total = total - collective.sum(F.cosine_similarity(p, z.detach(), dim=-1).sum()) / n / 2
    return total, {}
