"""MoCo v2 (Chen, Fan, Girshick, He, arXiv 2003.04297), in solo-learn's symmetric "MoCo v2+" form.

Queries q_v come from the online network, keys k_v from the momentum target (no gradient), both projected onto
the unit sphere; each view has a queue of past keys. The query of one view is contrasted with the key of the other
view of the same image (its positive) against the other view's queue (the negatives), as a (1 + K)-way
classification at temperature t (InfoNCE, the MoCo paper's eq. 1):

    ℓ(q, k⁺, Q) = −log( exp(q·k⁺/t) / (exp(q·k⁺/t) + Σ_(k ∈ Q) exp(q·k/t)) )
    loss = ( mean_i ℓ(q_1, k_2, Q_2) + mean_i ℓ(q_2, k_1, Q_1) ) / 2

The queue is the method's state (:class:`frossl_lit.methods.queue.KeyQueue`): this function only reads it. The
means run over the global batch under DDP (``global_batch=False``: each rank's own, as solo-learn's per-GPU loss);
the queue is filled from the global batch either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from frossl_lit.losses.common import float32_maths, unit_rows
from frossl_lit.runtime.distributed import LOCAL, Collective


@float32_maths
def mocov2_loss(
    queries: Sequence[torch.Tensor],
    keys: Sequence[torch.Tensor],
    queues: torch.Tensor,
    temperature: float = 0.2,
    collective: Collective = LOCAL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MoCo v2+ loss of two query views (N, D), their two key views (N, D; detached here) and the two views'
    queues (2, K, D) of unit keys (see the module docstring). Returns ``(total, {"positive_similarity"})``, the
    mean cosine similarity of each query with its positive key."""
    if len(queries) != 2 or len(keys) != 2:
        raise ValueError(f"MoCo v2+ is defined on 2 views, got {len(queries)} queries and {len(keys)} keys; set augment.num_views=2")
    if not temperature > 0:
        raise ValueError(f"MoCo's temperature={temperature} must be > 0")
    if queues.shape[0] != 2:
        raise ValueError(f"MoCo v2+ needs one queue per view (2, K, D), got {tuple(queues.shape)}")
    n = queries[0].shape[0] * collective.world_size
    q = [unit_rows(z) for z in queries]
    k = [unit_rows(z).detach() for z in keys]
    queues = queues.detach()
    total = q[0].new_zeros(())
    positive_similarity = q[0].new_zeros(())
    for view, other in ((0, 1), (1, 0)):
        positive = (q[view] * k[other]).sum(dim=1, keepdim=True)  # (N, 1)
        negatives = q[view] @ queues[other].T  # (N, K)
        logits = torch.cat([positive, negatives], dim=1) / temperature
        cross_entropy = torch.logsumexp(logits, dim=1) - logits[:, 0]
        total = total + collective.sum(cross_entropy.sum()) / n / 2
        positive_similarity = positive_similarity + collective.sum(positive.sum()) / n / 2
    return total, {"positive_similarity": positive_similarity}
