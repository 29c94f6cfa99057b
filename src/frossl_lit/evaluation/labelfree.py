"""Label-free representation metrics: RankMe, α-ReQ and LiDAR, for model selection without labels.

Pure functions: a tensor in, a 0-d float64 tensor out (on the input's device), no logging, no ``.item()``. Every
one casts its input to float64 first, so the figures do not depend on the precision features were computed in.
A non-finite input, or a spectrum for which a formula is undefined (0/0), gives NaN rather than an exception, so
that an evaluation callback on one DDP rank never raises where the others go on. Bad shapes raise ``ValueError``.

The callback that measures them during training is :class:`frossl_lit.callbacks.LabelFreeEvaluation`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["alpha_req", "lidar", "rankme"]


def _nan(like: Tensor) -> Tensor:
    return torch.full((), float("nan"), dtype=torch.float64, device=like.device)


def _smooth_rank(values: Tensor, eps: float) -> Tensor:
    """``exp(−Σ_k p_k log p_k)`` with ``p_k = v_k / ||v||_1 + eps`` of non-negative ``values`` (NaN when all are 0)."""
    total = values.abs().sum()
    if not total > 0:
        return _nan(values)
    p = values / total + eps
    return torch.exp(-(p * torch.log(p)).sum())


def _as_float64(x: Tensor, name: str, ndim: int, shape: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape {shape}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d tensor of shape {shape}, got shape {tuple(x.shape)}")
    if x.is_complex():
        raise ValueError(f"{name}: expected real features, got {x.dtype}")
    return x.detach().to(torch.float64)


def rankme(features: Tensor, eps: float = 1e-7) -> Tensor:
    """RankMe of an (N, D) representation matrix: the smooth rank of its singular values.

    Garrido, Balestriero, Najman & LeCun, *RankMe: Assessing the Downstream Performance of Pretrained
    Self-Supervised Representations by Their Rank*, ICML 2023 (arXiv 2210.02885), its definition of RankMe (the
    smooth rank of Roy & Vetterli 2007 applied to the singular values)::

        p_k    = σ_k(Z) / ||σ(Z)||_1 + ε,          k = 1 … min(N, D)
        RankMe = exp(−Σ_k p_k log p_k)

    with σ_k(Z) the singular values of the embedding matrix Z itself (not centred, as in the paper) and
    ε = 1e-7 (the paper's value for float32 embeddings). It lies near 1 for a rank-one Z and near min(N, D)
    for an isotropic one. NaN for an all-zero or non-finite Z.
    """
    if eps < 0:
        raise ValueError(f"rankme: eps={eps} must be >= 0")
    z = _as_float64(features, "rankme", 2, "(N samples, D features)")
    if z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"rankme: need at least one sample and one feature, got shape {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        return _nan(z)
    try:
        singular_values = torch.linalg.svdvals(z)
    except torch.linalg.LinAlgError:
        return _nan(z)
    return _smooth_rank(singular_values, eps)


def alpha_req(features: Tensor, rtol: float | None = None, fit_range: tuple[int, int] | None = None) -> Tensor:
    """α-ReQ: the decay coefficient α of the eigenspectrum of the feature covariance, ``λ_k ∝ k^(−α)``.

    Agrawal, Mondal, Ghosh & Richards, *α-ReQ: Assessing Representation Quality in Self-Supervised Learning by
    measuring eigenspectrum decay*, NeurIPS 2022. The eigenvalues ``λ_1 ≥ λ_2 ≥ …`` of the covariance
    ``Σ = 1/(N−1) Σ_i (z_i − z̄)(z_i − z̄)^T`` (computed as the squared singular values of the centred features over
    N − 1, which resolves small eigenvalues better than an eigen-decomposition of Σ) are fitted by ordinary least
    squares in log-log space::

        log λ_k = c − α log k        ⇒   α = −Σ_k (x_k − x̄)(y_k − ȳ) / Σ_k (x_k − x̄)²,  x = log k, y = log λ_k

    The range, stated because the fit depends on it:

    - eigenvalues that are numerically zero are dropped: ``λ_k ≤ rtol² · λ_1`` (i.e. singular values
      ``σ_k ≤ rtol · σ_1``), with ``rtol`` by default ``max(N, D) · ε_dtype`` of the input's dtype (float32 for
      integer input), the tolerance of ``numpy.linalg.matrix_rank``; at most ``min(N − 1, D)`` remain;
    - ``fit_range=(first, last)`` then keeps ranks ``first ≤ k ≤ last`` (1-based, inclusive; ``None``: all kept
      ones). The authors' later library, reptrix, fits ranks 6–100 weighted by 1/k by default; this function fits
      unweighted, over every positive eigenvalue unless told otherwise.

    A larger α is a faster decay (fewer effective dimensions); α ≈ 1 is what the paper associates with good linear
    probes. NaN when fewer than two eigenvalues remain to fit, or for non-finite features.
    """
    z = _as_float64(features, "alpha_req", 2, "(N samples, D features)")
    n, d = z.shape
    if n < 2 or d < 1:
        raise ValueError(f"alpha_req: need at least 2 samples and 1 feature for a covariance, got shape {tuple(z.shape)}")
    if fit_range is not None:
        first, last = (int(v) for v in fit_range)
        if first < 1 or last < first:
            raise ValueError(f"alpha_req: fit_range={tuple(fit_range)} must be (first, last) with 1 <= first <= last")
    if rtol is None:
        dtype = features.dtype if features.is_floating_point() else torch.float32
        rtol = max(n, d) * torch.finfo(dtype).eps
    if rtol < 0:
        raise ValueError(f"alpha_req: rtol={rtol} must be >= 0")
    if not torch.isfinite(z).all():
        return _nan(z)
    try:
        singular_values = torch.linalg.svdvals(z - z.mean(dim=0, keepdim=True))
    except torch.linalg.LinAlgError:
        return _nan(z)
    ranks = torch.arange(1, len(singular_values) + 1, dtype=torch.float64, device=z.device)
    keep = singular_values > rtol * singular_values[0]
    if fit_range is not None:
        keep &= (ranks >= first) & (ranks <= last)
    if int(keep.sum()) < 2:
        return _nan(z)
    x = torch.log(ranks[keep])
    y = torch.log(singular_values[keep] ** 2 / (n - 1))
    x, y = x - x.mean(), y - y.mean()
    return -(x * y).sum() / (x * x).sum()


def lidar(views: Tensor, delta: float = 1e-4, eps: float = 1e-8) -> Tensor:
    """LiDAR: the smooth rank of the LDA matrix of the surrogate task "which sample is this view of".

    Thilak, Huang, Saremi, Dinh, Goh, Nakkiran, Susskind & Littwin, *LiDAR: Sensing Linear Probing Performance in
    Joint Embedding SSL Architectures*, ICLR 2024 (arXiv 2312.04000). ``views`` holds Q augmented views
    of each of N samples, ``z_iq`` (N, Q, D); each sample is a surrogate class::

        μ_i = 1/Q Σ_q z_iq,   μ = 1/N Σ_i μ_i
        Σ_b = 1/(N−1) Σ_i (μ_i − μ)(μ_i − μ)^T                                  (between-class)
        Σ_w = 1/(N(Q−1)) Σ_i Σ_q (z_iq − μ_i)(z_iq − μ_i)^T + δ I                (within-class)
        Σ_lidar = Σ_w^(−1/2) Σ_b Σ_w^(−1/2),   λ its D eigenvalues
        p_k = λ_k / ||λ||_1 + ε,   LiDAR = exp(−Σ_k p_k log p_k)

    The paper's own text could not be consulted here: this is the formula as specified for this project, which
    agrees with an independent public transcription of the paper (1/(N−1) between-class, 1/(N(Q−1)) within-class,
    δ = 1e-4 and ε = 1e-8 as in stable-pretraining's LiDAR callback). The two normalisations only matter through
    the size of δ against Σ_w: scaling Σ_b scales every λ_k and leaves p unchanged. With δ = 0 LiDAR is invariant
    to any invertible linear map of the embedding (the eigenvalues are those of Σ_w⁻¹ Σ_b); δ > 0 makes that
    approximate. At most min(N − 1, D) eigenvalues are non-zero.

    Computed without a matrix square root: with the Cholesky factor ``Σ_w = L L^T`` and
    ``M = [μ_1 − μ, …, μ_N − μ] / √(N−1)``, ``L⁻¹ Σ_b L⁻ᵀ = (L⁻¹M)(L⁻¹M)^T`` is similar to Σ_lidar (by the
    orthogonal ``Σ_w^(−1/2) L``), so λ are the squared singular values of ``L⁻¹M``, padded with zeros to D.
    NaN for non-finite views, a singular Σ_w (possible only with δ = 0) or Σ_b = 0 (every sample the same).
    """
    if delta < 0 or eps < 0:
        raise ValueError(f"lidar: delta={delta} and eps={eps} must be >= 0")
    z = _as_float64(views, "lidar", 3, "(N samples, Q views, D features)")
    n, q, d = z.shape
    if n < 2 or q < 2 or d < 1:
        raise ValueError(
            f"lidar: need N >= 2 samples (surrogate classes), Q >= 2 views of each and D >= 1 features, got shape "
            f"{tuple(z.shape)} (N, Q, D)"
        )
    if not torch.isfinite(z).all():
        return _nan(z)
    class_means = z.mean(dim=1)  # (N, D)
    spread = (z - class_means.unsqueeze(1)).reshape(n * q, d)
    within = spread.T @ spread / (n * (q - 1)) + delta * torch.eye(d, dtype=z.dtype, device=z.device)
    between = (class_means - class_means.mean(dim=0)).T / (n - 1) ** 0.5  # M, (D, N): Σ_b = M M^T
    factor, info = torch.linalg.cholesky_ex(within)
    if int(info) != 0:
        return _nan(z)
    try:
        whitened = torch.linalg.solve_triangular(factor, between, upper=False)
        eigenvalues = torch.linalg.svdvals(whitened) ** 2
    except torch.linalg.LinAlgError:
        return _nan(z)
    eigenvalues = torch.cat([eigenvalues, eigenvalues.new_zeros(d - len(eigenvalues))])
    return _smooth_rank(eigenvalues, eps)
