"""FroSSL loss pinned to a straightforward implementation of the formula (float64, values and gradients)."""

from __future__ import annotations

import pytest
import torch

from frossl_lit.losses import frossl_loss


def reference_frossl(views, invariance_weight, normalization):
    """Literal transcription: normalise each view, K = Z^T Z / tr, log ||K||_F^2 via its eigenvalues,
    V·D·λ·MSE to the mean view, summed over views."""
    num_views, dim = len(views), views[0].shape[1]
    normed = []
    for z in views:
        if normalization == "dimension":
            z = z / torch.sqrt((z**2).sum(dim=0))
        elif normalization == "standardize":
            z = (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + 1e-6)
        else:
            z = z / z.norm(dim=1, keepdim=True)
        normed.append(z)
    mean_view = sum(normed) / num_views
    total = torch.zeros((), dtype=views[0].dtype)
    for z in normed:
        k = z.T @ z
        k = k / torch.trace(k)
        eigenvalues = torch.linalg.eigvalsh(k)
        total = total + torch.log((eigenvalues**2).sum())
        total = total + num_views * dim * invariance_weight * ((z - mean_view) ** 2).mean()
    return total


def _views(num_views, n, dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return [
        (base + 0.5 * torch.randn(n, dim, generator=generator, dtype=torch.float64)).requires_grad_(True)
        for _ in range(num_views)
    ]


@pytest.mark.parametrize("normalization", ["dimension", "standardize", "sample"])
@pytest.mark.parametrize("num_views,n,dim", [(2, 64, 16), (4, 32, 48), (8, 20, 10), (3, 10, 40)])
def test_matches_reference_value_and_gradients(normalization, num_views, n, dim):
    views = _views(num_views, n, dim)
    ours, parts = frossl_loss(views, invariance_weight=0.7, normalization=normalization)
    reference = reference_frossl(views, 0.7, normalization)
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(parts["regularizer"].sum() + parts["invariance"].sum(), ours)
    assert parts["regularizer"].shape == (num_views,) and parts["invariance"].shape == (num_views,)
    grads = torch.autograd.grad(ours, views)
    reference_grads = torch.autograd.grad(reference, views)
    for got, expected in zip(grads, reference_grads):
        torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("n,dim", [(64, 16), (16, 64)])
def test_feature_and_sample_gram_branches_agree(n, dim):
    views = _views(3, n, dim, seed=1)
    by_features, _ = frossl_loss(views, gram="features")
    by_samples, _ = frossl_loss(views, gram="samples")
    torch.testing.assert_close(by_features, by_samples, rtol=1e-10, atol=1e-10)
    grads_f = torch.autograd.grad(by_features, views)
    grads_s = torch.autograd.grad(by_samples, views)
    for a, b in zip(grads_f, grads_s):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("normalization", ["dimension", "standardize", "sample"])
def test_invariant_to_permuting_samples(normalization):
    views = _views(4, 40, 12, seed=2)
    permutation = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    original, _ = frossl_loss(views, normalization=normalization)
    permuted, _ = frossl_loss([v[permutation] for v in views], normalization=normalization)
    torch.testing.assert_close(original, permuted, rtol=1e-10, atol=1e-10)


def test_regularizer_bounds_and_collapse():
    """log ||K/tr K||_F^2 is 0 for a rank-one (collapsed) embedding and -log(D) for a white one."""
    n, dim = 256, 8
    collapsed = torch.randn(n, 1, dtype=torch.float64).repeat(1, dim)
    _, parts = frossl_loss([collapsed, collapsed])
    torch.testing.assert_close(parts["regularizer"], torch.zeros(2, dtype=torch.float64), atol=1e-9, rtol=0)
    white = torch.linalg.qr(torch.randn(n, dim, dtype=torch.float64))[0]
    _, parts = frossl_loss([white, white])
    expected = torch.full((2,), -torch.log(torch.tensor(float(dim), dtype=torch.float64)).item(), dtype=torch.float64)
    torch.testing.assert_close(parts["regularizer"], expected)
    torch.testing.assert_close(parts["invariance"], torch.zeros(2, dtype=torch.float64))


def test_loss_decreases_on_a_toy_problem():
    torch.manual_seed(0)
    data = torch.randn(256, 10)
    projector = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16))
    optimizer = torch.optim.Adam(projector.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        views = [projector(data + 0.1 * torch.randn_like(data)) for _ in range(2)]
        loss, _ = frossl_loss(views)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5


def test_rejects_bad_arguments():
    views = _views(2, 8, 4)
    with pytest.raises(ValueError, match="normalization"):
        frossl_loss(views, normalization="batch")
    with pytest.raises(ValueError, match="at least 2 views"):
        frossl_loss(views[:1])
