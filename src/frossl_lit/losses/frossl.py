"""FroSSL (Skean et al., arXiv 2310.02903): Frobenius-norm regulariser plus invariance, in each published formulation.

The official code (OFSkean/FroSSL ``solo/losses/frossl.py``) changed its loss after the paper's runs, and the
invariance weight λ does not carry from one formulation to another, nor (in ``official``) from one view count to
another. Every formulation shares the regulariser ``log ||K_v / tr K_v||_F^2`` of each view's Gram matrix K_v; they
differ in how each view's embeddings Z_v (N×D) are normalised and how the invariance is weighted:

- ``official`` (``multiview_frossl_loss_func`` since 2024-08-06, every view count): each column of Z_v unit norm
  over the batch; per view ``V·D·λ·MSE(Z_v, mean_u Z_u)`` (eq. 3 of the paper scaled by D).
- ``paper_two_view`` (``frossl_loss_func``, the paper's 2-view runs, and SEAR-MSE before it): each column centred,
  divided by its std, rescaled to norm √D; ``λ·MSE(Z_a, Z_b)`` once for the pair (reported as half on each view).
- ``paper_multiview`` (the multiview function of the paper's 4- and 8-view runs, until 2024-08-06): each row
  rescaled to norm √D; per view ``λ·MSE(Z_v, mean_u Z_u)``.

MSE is the mean over the N·D entries (``F.mse_loss``). Until 2024-08-06 ``frossl_loss_func`` divided the D×D Gram
matrix by N instead of its trace; with columns of norm √D the two differ by the constant 2·log(D²/N) per view
(identical gradients): this module divides by the trace, as the code kept "for compatibility with the paper" does.

**Views and the balance of the two terms.** Summed over the views, the ``official`` invariance is
``V·D·λ·(V − 1)·s²``, with s² the (unbiased, per-entry) variance of the V normalised views around their mean, while
the regulariser sums V terms of at most log min(N, D) in size. So with λ fixed the invariance outweighs the
regulariser V − 1 times more than at V = 2 (3× at V = 4, 7× at V = 8), and its scale also grows with D/N (each
column has unit norm, so entries are ~1/√N). Past a point the cheapest way down is to make the views identical by
collapsing the spectrum: on CIFAR-10 (small CNN, projector 2048-2048-1024, batch 256) V = 4 at λ = 1 reached an
effective rank of 4 (of 1024) within 40 steps, and faster without warm-up; the same run trains with D = 256, with
the paper-era multiview loss, or with this balance (``experiments/results/views_collapse.md``). The warm-up and the
optimizer only change how fast it happens. ``balance_views=True`` divides the ``official`` invariance by V − 1,
i.e. weights V·D·λ·s², whose ratio to the regulariser does not depend on V: one λ serves every view count, and at
V = 2 nothing changes. ``paper_multiview`` has no factor V and ``paper_two_view`` takes 2 views: the switch
changes neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from frossl_lit.losses.common import centre, float32_maths, unit_columns, unit_rows
from frossl_lit.runtime.distributed import LOCAL, Collective

FORMULATIONS = ("official", "paper_two_view", "paper_multiview")


class _Gram(torch.autograd.Function):
    """``a @ aᵀ`` (batched) whose backward takes one matrix product, ``(G + Gᵀ) a``, where autograd's rule for a
    general product takes two: the Gram matrix is the loss's largest cost (N²·D or D²·N multiply-adds), so this
    makes FroSSL's forward + backward about 1.5× cheaper at large D (``experiments/results/loss_cost.md``)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a)
        return a @ a.mT

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (a,) = ctx.saved_tensors
        return (grad + grad.mT) @ a


def _normalize(z: torch.Tensor, formulation: str, collective: Collective) -> torch.Tensor:
    """Normalise stacked views ``z`` (V, N, D) as ``formulation`` does."""
    dim = z.shape[-1]
    if formulation == "official":
        return unit_columns(z, collective)
    if formulation == "paper_two_view":  # dividing by the std first changes nothing once columns are rescaled
        return dim**0.5 * unit_columns(centre(z, collective), collective)
    return dim**0.5 * unit_rows(z)


@float32_maths
def frossl_loss(
    views: Sequence[torch.Tensor],
    invariance_weight: float = 1.0,
    formulation: str = "official",
    balance_views: bool = False,
    collective: Collective = LOCAL,
    gram: str = "auto",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """FroSSL loss of V embeddings ``views[v]`` of shape (N, D) (see the module docstring for the formulations).

    For each view, with Z_v normalised and K_v its Gram matrix (D×D, or N×N when the global batch N is smaller
    than D: both have the same Frobenius norm and trace), ``regularizer_v = log ||K_v / tr(K_v)||_F^2``; the loss
    is the sum over views of the regulariser and the formulation's invariance term. Minimising the regulariser
    maximises the collision entropy of K_v (it spreads the eigenvalue spectrum); the logarithm balances it
    against the invariance term.

    ``balance_views`` (``official`` only) divides the invariance by V − 1; ``gram`` forces the D×D (``"features"``)
    or N×N (``"samples"``) Gram matrix, ``"auto"`` takes the smaller.

    Returns ``(total, {"regularizer": (V,), "invariance": (V,)})``.
    """
    if formulation not in FORMULATIONS:
        raise ValueError(f"unknown FroSSL formulation {formulation!r}; choose one of {', '.join(FORMULATIONS)}")
    if gram not in ("auto", "features", "samples"):
        raise ValueError(f"gram={gram!r} must be auto, features or samples")
    if len(views) < 2:
        raise ValueError(f"FroSSL needs at least 2 views, got {len(views)}")
    if formulation == "paper_two_view" and len(views) != 2:
        raise ValueError(f"the paper_two_view formulation takes exactly 2 views, got {len(views)}")
    z = _normalize(torch.stack(list(views)), formulation, collective)  # (V, N, D)
    num_views, n_local, dim = z.shape
    n_global = n_local * collective.world_size

    if gram == "samples" or (gram == "auto" and n_global < dim):  # N×N of the gathered samples: the smaller
        gathered = collective.gather(z.transpose(0, 1).contiguous()).transpose(0, 1)
        kernel = _Gram.apply(gathered)
    else:  # D×D: per-rank Grams summed over ranks, no gather needed
        kernel = collective.sum(_Gram.apply(z.mT))
    trace = torch.diagonal(kernel, dim1=-2, dim2=-1).sum(-1)
    regularizer = torch.log(kernel.pow(2).sum(dim=(-2, -1))) - 2.0 * torch.log(trace)

    if formulation == "paper_two_view":  # one MSE for the pair, reported half on each view
        pair_mse = collective.sum((z[0] - z[1]).pow(2).sum()) / (n_global * dim)
        invariance = (0.5 * invariance_weight * pair_mse).expand(2)
    else:
        mse = collective.sum((z - z.mean(dim=0, keepdim=True)).pow(2).sum(dim=(-2, -1))) / (n_global * dim)
        scale = invariance_weight
        if formulation == "official":
            scale = scale * num_views * dim / ((num_views - 1) if balance_views else 1)
        invariance = scale * mse

    total = regularizer.sum() + invariance.sum()
    return total, {"regularizer": regularizer, "invariance": invariance}
