"""W-MSE (Ermolov, Siarohin, Sangineto, Sebe, ICML 2021, arXiv 2007.06346): the MSE between whitened views.

The batch of N images gives V views z_v (N × D). A random permutation splits the N samples into N / w sub-batches
of w samples; each view of each sub-batch is whitened on its own by Cholesky (``Whitening2d`` of the official code,
htdt/self-supervised@d9662c8 ``methods/whitening.py``, and solo-learn@9187ea3 ``solo/utils/whitening.py``):

    x̄ = x − mean_rows(x)                                   (x: the w × D rows of one view in one sub-batch)
    C = x̄ᵀ x̄ / (w − 1)           C_ε = (1 − ε) C + ε I       (shrinkage ε, 0 in every published run)
    C_ε = L Lᵀ  (Cholesky)        W = L⁻¹                     x̂ = x̄ Wᵀ   (so that x̂ᵀ x̂ / (w − 1) = I)

Each whitened row is projected onto the unit sphere, and the loss is the squared distance of the two views of each
image, ‖x̂̄_i − x̂̄_j‖² = 2 − 2 cos(x̂_i, x̂_j), averaged over the N images, over the V(V − 1)/2 pairs of views
i < j and over ``whitening_iters`` fresh permutations (the paper's eq. 6 with the normalisation of both codes,
``loss /= w_iter * num_pairs``):

    loss = 1 / (iters · P) Σ_(k < iters) Σ_(i < j) mean_n ( 2 − 2 cos(x̂ᵏ_(i,n), x̂ᵏ_(j,n)) )

The whitening's covariance is a batch-wide term: with a global-batch :class:`Collective` every rank's embeddings
are gathered (autograd-aware) and the sub-batches are drawn from the global batch, so that the loss and its
gradient are those of one process on the concatenated batch (every rank computes the same loss; the gather's
backward sums the gradients). ``global_batch=False`` whitens each rank's own batch, as solo-learn does (its
``WMSE.training_step`` splits ``self.batch_size``, the per-GPU batch, and gathers nothing).

The permutations are an argument: the method draws them from a generator seeded by (run seed, global step), the
same on every rank and again on a resumed run.

``detach_second_view`` reproduces solo-learn's ``wmse_loss_func`` (``simplified=True``, the only path its method
takes): ``2 − 2·cos(x̂_i, x̂_j.detach())``, so the gradient reaches only the first view of each pair (with 2 views,
the second view gets none). The paper's code (``norm_mse_loss``) detaches nothing: the default.

A Cholesky factorisation fails when a sub-batch's covariance is not positive definite (a collapsed embedding, or
D ≥ w with ε = 0: w centred samples span at most w − 1 dimensions); it is not checked on the host (no
synchronisation): its sub-batch turns the loss into NaN, which the divergence guard reports, and the part
``cholesky_failures`` counts them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from frossl_lit.losses.common import float32_maths, unit_rows
from frossl_lit.runtime.distributed import LOCAL, Collective


def whiten(x: torch.Tensor, eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Whiten each sub-batch ``x`` (..., w, D) by Cholesky (see the module docstring); returns the whitened rows and
    the number of failed factorisations (a 0-d tensor; failed sub-batches are NaN)."""
    w, dim = x.shape[-2], x.shape[-1]
    centred = x - x.mean(dim=-2, keepdim=True)
    cov = centred.mT @ centred / (w - 1)
    if eps:
        cov = (1 - eps) * cov + eps * torch.eye(dim, dtype=cov.dtype, device=cov.device)
    chol, info = torch.linalg.cholesky_ex(cov)  # no host check: a failure is marked NaN below
    failed = info != 0
    chol = torch.where(failed[..., None, None], torch.full_like(chol, float("nan")), chol)
    whitened = torch.linalg.solve_triangular(chol, centred.mT, upper=False).mT  # (L⁻¹ x̄ᵀ)ᵀ = x̄ Wᵀ
    return whitened, failed.sum().to(x.dtype)


@float32_maths
def wmse_loss(
    views: Sequence[torch.Tensor],
    permutations: torch.Tensor,
    whitening_size: int,
    eps: float = 0.0,
    detach_second_view: bool = False,
    collective: Collective = LOCAL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """W-MSE loss of V ≥ 2 views (N, D) (see the module docstring).

    ``permutations`` (iters, N_global) holds one permutation of the N_global = N × ``collective.world_size``
    samples the whitening sees per whitening iteration; N_global must be a multiple of ``whitening_size``.
    Returns ``(total, {"cosine_similarity", "cholesky_failures"})``: the mean cosine of the whitened pairs and the
    number of sub-batch covariances that were not positive definite."""
    if len(views) < 2:
        raise ValueError(f"W-MSE needs at least 2 views, got {len(views)}")
    if not (isinstance(whitening_size, int) and whitening_size >= 2):
        raise ValueError(f"whitening_size={whitening_size!r} must be a whole number >= 2")
    if not 0 <= eps <= 1:
        raise ValueError(f"eps={eps} must be a shrinkage weight in [0, 1]")
    n_global = views[0].shape[0] * collective.world_size
    if n_global % whitening_size:
        raise ValueError(f"the batch ({n_global}) must be a multiple of whitening_size={whitening_size}")
    if permutations.ndim != 2 or permutations.shape[1] != n_global or permutations.shape[0] < 1:
        raise ValueError(f"permutations must be (iters >= 1, {n_global}), got {tuple(permutations.shape)}")

    z = collective.gather(torch.stack(list(views), dim=1))  # (N_global, V, D), gradient-carrying
    iters, num_views = permutations.shape[0], z.shape[1]
    index = permutations.to(z.device).view(iters, -1, whitening_size)  # (iters, S, w)
    sub_batches = z[index].permute(0, 1, 3, 2, 4)  # (iters, S, V, w, D)
    whitened, failures = whiten(sub_batches, eps)
    unit = unit_rows(whitened)
    first, second = torch.triu_indices(num_views, num_views, 1, device=z.device)
    a, b = unit[:, :, first], unit[:, :, second]  # (iters, S, P, w, D)
    if detach_second_view:
        b = b.detach()
    cosine = (a * b).sum(dim=-1).mean()  # over iterations, sub-batches, pairs and samples
    return 2 - 2 * cosine, {"cosine_similarity": cosine, "cholesky_failures": failures}
