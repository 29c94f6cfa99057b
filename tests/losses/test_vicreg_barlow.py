"""VICReg and Barlow Twins pinned to straightforward implementations of the papers' formulas (float64)."""

from __future__ import annotations

import pytest
import torch

from frossl_lit.losses import barlow_twins_loss, vicreg_loss


def reference_vicreg(a, b, lam=25.0, mu=25.0, nu=1.0):
    n, dim = a.shape
    invariance = ((a - b) ** 2).sum() / (n * dim)

    def variance(z):  # hinge on the std of each dimension (unbiased), target 1, eps 1e-4
        return torch.clamp(1.0 - torch.sqrt(torch.cov(z.T).diagonal() + 1e-4), min=0).mean()

    def covariance(z):
        c = torch.cov(z.T)
        return sum(c[i, j] ** 2 for i in range(dim) for j in range(dim) if i != j) / dim

    # official code: variance averaged over the two views, covariance summed
    return lam * invariance + mu * (variance(a) + variance(b)) / 2 + nu * (covariance(a) + covariance(b))


def reference_barlow(a, b, lam=0.0051):
    n, dim = a.shape
    za = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + 1e-5)
    zb = (b - b.mean(0)) / torch.sqrt(b.var(0, unbiased=False) + 1e-5)
    c = torch.einsum("ni,nj->ij", za, zb) / n
    on = sum((1 - c[i, i]) ** 2 for i in range(dim))
    off = sum(c[i, j] ** 2 for i in range(dim) for j in range(dim) if i != j)
    return on + lam * off


def _pair(n, dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    noise = [0.3 * torch.randn(n, dim, generator=generator, dtype=torch.float64) for _ in range(2)]
    # scale some dimensions below 1 so the variance hinge is active
    scale = torch.linspace(0.2, 1.5, dim, dtype=torch.float64)
    return [((base + e) * scale).requires_grad_(True) for e in noise]


@pytest.mark.parametrize("n,dim", [(32, 8), (16, 24)])
def test_vicreg_matches_reference(n, dim):
    a, b = _pair(n, dim)
    ours, parts = vicreg_loss([a, b])
    reference = reference_vicreg(a, b)
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-9)
    assert parts["variance"] > 0 and set(parts) == {"invariance", "variance", "covariance"}
    for got, expected in zip(torch.autograd.grad(ours, [a, b]), torch.autograd.grad(reference, [a, b])):
        torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("n,dim", [(32, 8), (16, 24)])
def test_barlow_matches_reference(n, dim):
    a, b = _pair(n, dim, seed=1)
    ours, _ = barlow_twins_loss([a, b])
    reference = reference_barlow(a, b)
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-9)
    for got, expected in zip(torch.autograd.grad(ours, [a, b]), torch.autograd.grad(reference, [a, b])):
        torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-10)


def test_barlow_scale_and_identity_minimum():
    z = torch.linalg.qr(torch.randn(64, 8, dtype=torch.float64))[0]
    z = z - z.mean(0)
    loss, parts = barlow_twins_loss([z, z], scale=0.1)
    torch.testing.assert_close(parts["on_diagonal"], torch.zeros((), dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(loss, 0.1 * (parts["on_diagonal"] + 0.0051 * parts["off_diagonal"]))


def test_two_view_methods_reject_other_view_counts():
    views = [torch.randn(8, 4) for _ in range(3)]
    with pytest.raises(ValueError, match="2 views"):
        vicreg_loss(views)
    with pytest.raises(ValueError, match="2 views"):
        barlow_twins_loss(views)
