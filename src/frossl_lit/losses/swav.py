"""SwAV (Caron, Misra, Mairal, Goyal, Bojanowski, Joulin, NeurIPS 2020, arXiv 2006.09882): swapped prediction of
cluster assignments computed online with Sinkhorn-Knopp.

Each view's embedding is projected onto the unit sphere, z = e / ‖e‖, and scored against the K prototypes c_k (the
rows of C, kept at unit norm by the method): s = z Cᵀ (N, K). The codes q of an assignment view (a large crop) are
the entropic optimal transport of its scores over the batch (the paper's eq. 3, solved by Sinkhorn-Knopp as the
official code and solo-learn's ``SinkhornKnopp`` do, with ε and the number of iterations T):

    Q = exp(Sᵀ / ε) (K × B),  Q ← Q / Σ Q
    T times:  Q ← Q / (K · row sums)   (each prototype gets 1/K of the mass)
              Q ← Q / (B · column sums) (each sample gets 1/B)
    codes = B · Qᵀ (each sample's code sums to 1)

B counts every sample of the Sinkhorn input: the global batch, plus the queue's stored embeddings (scored with the
current prototypes, no gradient) once the queue is in use; only the batch's own codes are used. The codes carry no
gradient. Each assignment view a predicts its codes from every other view v (large and small crops) with the
softmax of its scores at temperature τ (the paper's eq. 1-2):

    ℓ(q_a, s_v) = − Σ_k q_a,k log softmax(s_v / τ)_k
    loss = 1 / (A (V − 1)) Σ_a Σ_(v ≠ a) mean_i ℓ(q_a,i, s_v,i)

(A assignment views of V; the official code's ``subloss / (V − 1)`` averaged over ``crops_for_assign``, the same
as solo-learn's mean over all (a, v) pairs.) Under DDP with ``global_batch=True`` the Sinkhorn sums (the total and
the per-prototype sums) and the batch means run over every rank (:class:`Collective`), so codes, loss and gradient
equal one process's on the concatenated batch, as the official code and solo-learn all-reduce the Sinkhorn sums;
the per-sample (column) normalisation is each rank's own. ``global_batch=False`` gives each rank's own batch. The
queue is the same on every rank (the method fills it from the global batch), so its sums are added once, not summed
over ranks.

Numerically, the scores are shifted by their (global) maximum before the exponential; the first normalisation by
Σ Q cancels the shift exactly, so the codes are those of the formula, without overflow at a small ε.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from frossl_lit.losses.common import float32_maths, unit_rows
from frossl_lit.runtime.distributed import LOCAL, Collective


@torch.no_grad()
def sinkhorn_knopp(
    scores: torch.Tensor,
    epsilon: float = 0.05,
    iterations: int = 3,
    queue_scores: torch.Tensor | None = None,
    collective: Collective = LOCAL,
) -> torch.Tensor:
    """The SwAV codes (N, K) of this rank's ``scores`` (N, K): Sinkhorn-Knopp over the (global) batch and, when
    given, ``queue_scores`` (M, K), the same on every rank and counted once (see the module docstring). Rows of the
    result sum to 1; no gradient."""
    if not epsilon > 0:
        raise ValueError(f"Sinkhorn's epsilon={epsilon} must be > 0")
    if not (isinstance(iterations, int) and iterations >= 1):
        raise ValueError(f"Sinkhorn's iterations={iterations} must be a whole number >= 1")
    scores = scores.detach()
    if queue_scores is not None:
        queue_scores = queue_scores.detach().to(scores.dtype)
        if queue_scores.ndim != 2 or queue_scores.shape[1] != scores.shape[1]:
            raise ValueError(f"the queue's scores {tuple(queue_scores.shape)} must be (M, K={scores.shape[1]})")
    num_prototypes = scores.shape[1]
    samples = scores.shape[0] * collective.world_size + (queue_scores.shape[0] if queue_scores is not None else 0)
    # the same shift on every rank: the maximum over the global batch and the queue
    top = scores.max() if queue_scores is None else torch.maximum(scores.max(), queue_scores.max())
    top = collective.gather(top.reshape(1)).max()
    batch = torch.exp((scores - top) / epsilon)
    queue = torch.exp((queue_scores - top) / epsilon) if queue_scores is not None else None

    def over_batch_and_queue(part: torch.Tensor, queue_part: torch.Tensor | None) -> torch.Tensor:
        return collective.sum(part) + (queue_part if queue_part is not None else 0)

    total = over_batch_and_queue(batch.sum(), queue.sum() if queue is not None else None)
    batch = batch / total
    queue = queue / total if queue is not None else None
    for _ in range(iterations):
        per_prototype = over_batch_and_queue(batch.sum(dim=0, keepdim=True), queue.sum(dim=0, keepdim=True) if queue is not None else None)
        batch = batch / per_prototype / num_prototypes
        batch = batch / batch.sum(dim=1, keepdim=True) / samples
        if queue is not None:
            queue = queue / per_prototype / num_prototypes
            queue = queue / queue.sum(dim=1, keepdim=True) / samples
    return batch * samples


@float32_maths
def swav_loss(
    embeddings: Sequence[torch.Tensor],
    prototypes: torch.Tensor,
    queue: torch.Tensor | None = None,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    iterations: int = 3,
    assign_views: int | None = None,
    collective: Collective = LOCAL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SwAV's loss of V ≥ 2 projector outputs (N, D) (projected onto the unit sphere here) against the prototypes
    (K, D), used as given (the method keeps them at unit norm). The codes come from the first ``assign_views`` views
    (the large crops; default: all V); ``queue`` (A, M, D): stored unit embeddings of each assignment view, added to
    its Sinkhorn input (None: no queue). See the module docstring.

    Returns ``(total, {"code_entropy"})``: the mean entropy (nats) of the codes, a diagnostic of how sharply the
    samples are assigned (log K: uniform)."""
    num_views = len(embeddings)
    if num_views < 2:
        raise ValueError(f"SwAV needs at least 2 views, got {num_views}")
    assign = num_views if assign_views is None else assign_views
    if not (isinstance(assign, int) and 1 <= assign <= num_views):
        raise ValueError(f"SwAV's assign_views={assign_views} must be between 1 and the {num_views} views")
    if not temperature > 0:
        raise ValueError(f"SwAV's temperature={temperature} must be > 0")
    if prototypes.ndim != 2 or prototypes.shape[1] != embeddings[0].shape[1]:
        raise ValueError(f"the prototypes {tuple(prototypes.shape)} must be (K, D={embeddings[0].shape[1]})")
    if queue is not None and (queue.ndim != 3 or queue.shape[0] != assign or queue.shape[2] != embeddings[0].shape[1]):
        raise ValueError(f"the queue {tuple(queue.shape)} must be (assign_views={assign}, M, D={embeddings[0].shape[1]})")
    n = embeddings[0].shape[0] * collective.world_size
    scores = [unit_rows(e) @ prototypes.T for e in embeddings]
    codes = []
    with torch.no_grad():
        for a in range(assign):
            queue_scores = queue[a].to(prototypes.dtype) @ prototypes.detach().T if queue is not None else None
            codes.append(sinkhorn_knopp(scores[a], epsilon, iterations, queue_scores, collective))
    log_predictions = [F.log_softmax(s / temperature, dim=1) for s in scores]
    total = scores[0].new_zeros(())
    for a in range(assign):
        for v in range(num_views):
            if v != a:
                total = total - collective.sum((codes[a] * log_predictions[v]).sum()) / n
    total = total / (assign * (num_views - 1))
    entropy = sum(collective.sum(-torch.special.xlogy(q, q).sum()) / n for q in codes) / assign
    return total, {"code_entropy": entropy}
