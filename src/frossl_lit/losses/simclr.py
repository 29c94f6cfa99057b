"""SimCLR (Chen, Kornblith, Norouzi, Hinton, ICML 2020, arXiv 2002.05709): the NT-Xent contrastive loss.

Embeddings are projected onto the unit sphere; for an anchor view of sample i, the other views of i are its
positives and every view of every other sample is a negative (the anchor itself is neither). With cosine
similarities s and temperature t, the anchor's loss is

    −log( Σ_positives exp(s/t) / Σ_(positives + negatives) exp(s/t) )

averaged over all N·V anchors. Two views give the paper's NT-Xent; V > 2 views give the multi-positive form
solo-learn uses (every other view of the same image is a positive, their exponentials summed).

Under DDP the keys are the **global** batch, gathered with gradients flowing back to the rank that produced them
(:func:`frossl_lit.runtime.distributed.all_gather_cat`); peers that gather without a backward lose the negatives' share of
the gradient. ``global_batch=False`` contrasts each rank's own batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from frossl_lit.losses.common import float32_maths, unit_rows
from frossl_lit.runtime.distributed import LOCAL, Collective


@float32_maths
def simclr_loss(
    views: Sequence[torch.Tensor],
    temperature: float = 0.2,
    collective: Collective = LOCAL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SimCLR's loss of V ≥ 2 embeddings (N, D) (see the module docstring).

    Returns ``(total, {"positive_similarity"})``: the mean cosine similarity between positive pairs (unweighted,
    a diagnostic of alignment)."""
    if len(views) < 2:
        raise ValueError(f"SimCLR needs at least 2 views, got {len(views)}")
    if not temperature > 0:
        raise ValueError(f"SimCLR's temperature={temperature} must be > 0")
    num_views, n = len(views), views[0].shape[0]
    queries = unit_rows(torch.stack(list(views), dim=1))  # (N, V, D)
    keys = collective.gather(queries)  # (N_global, V, D)
    similarity = torch.einsum("ivd,jwd->ivjw", queries, keys)  # (N, V, N_global, V)
    same_sample = torch.zeros(n, keys.shape[0], dtype=torch.bool, device=queries.device)
    same_sample[torch.arange(n), collective.rank * n + torch.arange(n)] = True
    same_view = torch.eye(num_views, dtype=torch.bool, device=queries.device)
    itself = same_sample[:, None, :, None] & same_view[None, :, None, :]
    positive = same_sample[:, None, :, None] & ~same_view[None, :, None, :]

    logits = (similarity / temperature).reshape(n * num_views, -1)
    itself, positive = itself.reshape_as(logits), positive.reshape_as(logits)
    log_all = torch.logsumexp(logits.masked_fill(itself, float("-inf")), dim=1)
    log_positives = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    anchors = n * num_views * collective.world_size
    total = collective.sum((log_all - log_positives).sum()) / anchors
    positive_similarity = collective.sum((similarity.reshape_as(logits) * positive).sum()) / (anchors * (num_views - 1))
    return total, {"positive_similarity": positive_similarity}
