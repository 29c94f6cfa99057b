"""CorInfoMax (Ozsoy, Hamdan, Arik, Yuret, Erdogan, NeurIPS 2022, arXiv 2209.07999): maximise the correlative
information between the two views' embeddings, i.e. the log-determinant of each branch's covariance (the "big-bang"
factor that spreads the embeddings over all dimensions) minus a mean squared error between the views (the
attraction factor).

The embeddings z_v (N, D), v = 1, 2, are first projected onto the unit sphere (``normalize``: the official code's
``--normalize_on`` and the FroSSL fork's ``F.normalize`` in ``training_step``). Each branch keeps a running mean μ_v
(D) and a running covariance R_v (D, D) estimated with forgetting factors λ_μ (``la_mu``) and λ_R (``la_R``, the
weight of the *old* estimate), and the loss of a batch reads the estimates updated with it:

    μ_v' = λ_μ μ_v + (1 − λ_μ) (1/N) Σ_i z_v,i
    R_v' = λ_R R_v + (1 − λ_R) (1/N) Σ_i (z_v,i − μ_v')(z_v,i − μ_v')ᵀ
    L_cov = −( logdet(R_1' + ε I) + logdet(R_2' + ε I) ) / D
    L_inv = (1/(N D)) Σ_i ‖z_1,i − z_2,i‖²
    L     = L_cov + α L_inv

with ε = ``R_eps_weight`` and α = ``alpha_tradeoff`` (the official ``sim_loss_weight``; its ``cov_loss_weight`` is 1).
The old estimates μ_v, R_v carry no gradient (the sources detach them after every step); the batch's own terms in μ_v'
and R_v' do, so the gradient flows through the batch mean inside the centring as in the sources. The covariance part
is computed in the estimates' dtype (the sources hold them in float64, so ``z − μ'`` promotes to float64 there too);
the invariance in the embeddings' dtype, as ``F.mse_loss`` there. Sources: serdarozsoy/corinfomax-ssl@c0b917e
``cifars-tiny/loss.py`` (``CovarianceLoss``) and ``imagenet100_resnet18/pretrain/loss.py`` (``CovarianceLossv2``, the
same maths), OFSkean/FroSSL@e841c57 ``solo/losses/corinfomax.py`` (``CorInfoMax_Loss``, the same maths).

The estimates are the method's state (buffers of :class:`frossl_lit.methods.corinfomax.CorInfoMax`): this function
reads them and returns the new ones, detached, for the method to store once the optimizer has stepped. Every sum over
the batch goes through the :class:`Collective`: with ``global_batch=True`` the loss, its gradient and the new
estimates of every rank are those of one process holding the concatenated batch (what the official ImageNet code does
by all-gathering z before the loss); ``global_batch=False`` gives each rank its own batch's (the FroSSL fork, which
neither gathers nor synchronises the estimates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from frossl_lit.losses.common import float32_maths, unit_rows
from frossl_lit.runtime.distributed import LOCAL, Collective


class RunningMoments(NamedTuple):
    """The running estimates of CorInfoMax, one per branch: ``covariances`` (2, D, D) and ``means`` (2, D)."""

    covariances: torch.Tensor
    means: torch.Tensor


def _fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"CorInfoMax's {name}={value} must be a forgetting factor in [0, 1]")


@float32_maths
def corinfomax_loss(
    views: Sequence[torch.Tensor],
    covariances: torch.Tensor,
    means: torch.Tensor,
    invariance_weight: float = 500.0,
    covariance_forgetting: float = 0.01,
    mean_forgetting: float = 0.01,
    epsilon: float = 1e-6,
    normalize: bool = True,
    collective: Collective = LOCAL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], RunningMoments]:
    """CorInfoMax loss of two embeddings (N, D) given each branch's running covariance ``covariances`` (2, D, D) and
    mean ``means`` (2, D) (see the module docstring; ``invariance_weight`` = α, ``covariance_forgetting`` = λ_R,
    ``mean_forgetting`` = λ_μ, ``epsilon`` = ε).

    Returns ``(total, {"covariance", "invariance"}, RunningMoments(new covariances, new means))``: the parts
    unweighted (L_cov and L_inv), the new estimates detached, in the dtype of ``covariances``.
    """
    if len(views) != 2:
        raise ValueError(f"CorInfoMax is defined on 2 views, got {len(views)}; set augment.num_views=2")
    za, zb = views
    if za.ndim != 2 or za.shape != zb.shape:
        raise ValueError(f"CorInfoMax needs two (N, D) embeddings of one shape, got {tuple(za.shape)} and {tuple(zb.shape)}")
    dim = za.shape[1]
    if tuple(covariances.shape) != (2, dim, dim) or tuple(means.shape) != (2, dim):
        raise ValueError(f"CorInfoMax needs one running covariance (2, {dim}, {dim}) and mean (2, {dim}) per branch, "
                         f"got {tuple(covariances.shape)} and {tuple(means.shape)}")
    if not invariance_weight >= 0:
        raise ValueError(f"CorInfoMax's invariance_weight={invariance_weight} must be >= 0")
    _fraction("covariance_forgetting", covariance_forgetting)
    _fraction("mean_forgetting", mean_forgetting)
    if not epsilon > 0:
        raise ValueError(f"CorInfoMax's epsilon={epsilon} must be > 0")

    if normalize:
        za, zb = unit_rows(za), unit_rows(zb)
    n = za.shape[0] * collective.world_size
    invariance = collective.sum((za - zb).pow(2).sum()) / (n * dim)

    dtype = torch.promote_types(za.dtype, covariances.dtype)
    old_covariances, old_means = covariances.detach().to(dtype), means.detach().to(dtype)
    eye = torch.eye(dim, dtype=dtype, device=za.device)
    covariance = za.new_zeros((), dtype=dtype)
    new_covariances, new_means = [], []
    for branch, z in enumerate((za.to(dtype), zb.to(dtype))):
        batch_mean = collective.sum(z.sum(dim=0)) / n
        mean = mean_forgetting * old_means[branch] + (1.0 - mean_forgetting) * batch_mean
        centred = z - mean
        batch_covariance = collective.sum(centred.T @ centred) / n
        estimate = covariance_forgetting * old_covariances[branch] + (1.0 - covariance_forgetting) * batch_covariance
        covariance = covariance - torch.logdet(estimate + epsilon * eye) / dim
        new_covariances.append(estimate.detach())
        new_means.append(mean.detach())

    out = za.dtype  # the total and parts in the embeddings' dtype, like every loss here; the maths above in `dtype`
    total = covariance.to(out) + invariance_weight * invariance
    state = RunningMoments(torch.stack(new_covariances), torch.stack(new_means))
    return total, {"covariance": covariance.to(out), "invariance": invariance}, state
