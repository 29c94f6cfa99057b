"""FroSSL loss, each formulation pinned to a straightforward transcription of the official code it names
(float64, values and gradients)."""

from __future__ import annotations

import pytest
import torch

from frossl_lit.losses import frossl_loss


def _regularizer(z):
    """log ||K/tr K||_F^2 through the eigenvalues of the D×D Gram matrix (never the code's own branch)."""
    k = z.T @ z
    eigenvalues = torch.linalg.eigvalsh(k / torch.trace(k))
    return torch.log((eigenvalues**2).sum())


def reference_official(views, invariance_weight, balance_views=False):
    """OFSkean/FroSSL multiview_frossl_loss_func (HEAD): F.normalize(z, dim=0), V·D·λ·MSE to the mean view."""
    num_views, dim = len(views), views[0].shape[1]
    normed = [z / torch.sqrt((z**2).sum(dim=0)) for z in views]
    mean_view = sum(normed) / num_views
    factor = num_views / (num_views - 1) if balance_views else num_views
    return sum(_regularizer(z) + factor * dim * invariance_weight * ((z - mean_view) ** 2).mean() for z in normed)


def reference_paper_two_view(views, invariance_weight):
    """frossl_loss_func (the paper's 2-view runs): (z - mean) / std (unbiased), columns to norm √D, λ·MSE(a, b)."""
    dim = views[0].shape[1]
    normed = []
    for z in views:
        z = (z - z.mean(dim=0)) / z.std(dim=0)
        normed.append(dim**0.5 * z / z.norm(dim=0))
    za, zb = normed
    return _regularizer(za) + _regularizer(zb) + invariance_weight * ((za - zb) ** 2).mean()


def reference_paper_multiview(views, invariance_weight):
    """Paper-era multiview_frossl_loss_func (before 2024-08-06): rows to norm √D, λ·MSE to the mean view."""
    dim = views[0].shape[1]
    normed = [dim**0.5 * z / z.norm(dim=1, keepdim=True) for z in views]
    mean_view = sum(normed) / len(normed)
    return sum(_regularizer(z) + invariance_weight * ((z - mean_view) ** 2).mean() for z in normed)


REFERENCES = {
    "official": reference_official,
    "paper_two_view": reference_paper_two_view,
    "paper_multiview": reference_paper_multiview,
}


def _views(num_views, n, dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return [
        (base + 0.5 * torch.randn(n, dim, generator=generator, dtype=torch.float64)).requires_grad_(True)
        for _ in range(num_views)
    ]


CASES = [(2, 64, 16), (4, 32, 48), (8, 20, 10), (3, 10, 40)]
FORMULATION_CASES = [
    (formulation, *case) for formulation in REFERENCES for case in CASES if formulation != "paper_two_view" or case[0] == 2
] + [("paper_two_view", 2, 10, 40)]


def _assert_matches(ours, parts, reference, views):
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(parts["regularizer"].sum() + parts["invariance"].sum(), ours)
    assert parts["regularizer"].shape == (len(views),) and parts["invariance"].shape == (len(views),)
    grads = torch.autograd.grad(ours, views)
    reference_grads = torch.autograd.grad(reference, views)
    for got, expected in zip(grads, reference_grads):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("formulation,num_views,n,dim", FORMULATION_CASES)
def test_each_formulation_matches_its_reference_value_and_gradients(formulation, num_views, n, dim):
    views = _views(num_views, n, dim)
    ours, parts = frossl_loss(views, invariance_weight=0.7, formulation=formulation)
    _assert_matches(ours, parts, REFERENCES[formulation](views, 0.7), views)


@pytest.mark.parametrize("num_views,n,dim", CASES)
def test_balanced_views_keep_the_two_view_weight(num_views, n, dim):
    """balance_views: the official invariance ÷ (V − 1), i.e. V·D·λ times the unbiased variance across the views
    (identical to the official loss at V = 2)."""
    views = _views(num_views, n, dim)
    ours, parts = frossl_loss(views, invariance_weight=0.7, balance_views=True)
    _assert_matches(ours, parts, reference_official(views, 0.7, balance_views=True), views)
    if num_views == 2:
        torch.testing.assert_close(ours, frossl_loss(views, invariance_weight=0.7)[0], rtol=0, atol=0)


def test_balance_keeps_the_invariance_per_view_independent_of_the_view_count():
    """Views = one signal + independent noise: balanced, the mean invariance per view is the same at V = 2, 4, 8
    (its ratio to the regulariser does not move); the official weighting grows it as V − 1."""
    generator = torch.Generator().manual_seed(0)
    signal = torch.randn(512, 64, generator=generator, dtype=torch.float64)

    def per_view(num_views, balance):
        views = [signal + 0.3 * torch.randn(512, 64, generator=generator, dtype=torch.float64) for _ in range(num_views)]
        return frossl_loss(views, balance_views=balance)[1]["invariance"].mean()

    balanced = torch.stack([per_view(v, True) for v in (2, 4, 8)])
    official = torch.stack([per_view(v, False) for v in (2, 4, 8)])
    torch.testing.assert_close(balanced / balanced[0], torch.ones(3, dtype=torch.float64), rtol=0.03, atol=0)
    torch.testing.assert_close(official / official[0], torch.tensor([1.0, 3.0, 7.0], dtype=torch.float64), rtol=0.03, atol=0)


def test_paper_multiview_is_balanced_by_construction():
    views = _views(4, 16, 8)
    balanced, _ = frossl_loss(views, formulation="paper_multiview", balance_views=True)
    plain, _ = frossl_loss(views, formulation="paper_multiview")
    torch.testing.assert_close(balanced, plain, rtol=0, atol=0)


def test_paper_two_view_pre_august_2024_code_differs_by_a_constant():
    """Before 2024-08-06 frossl_loss_func divided Z^T Z by N, not by its trace: 2·log(D²/N) per view, same gradients."""
    n, dim = 32, 8
    views = _views(2, n, dim)
    ours, _ = frossl_loss(views, formulation="paper_two_view")
    normed = []
    for z in views:
        z = (z - z.mean(dim=0)) / z.std(dim=0)
        normed.append(dim**0.5 * z / torch.norm(z, dim=0))
    old = sum(torch.log(torch.linalg.norm(z.T @ z / n, ord="fro") ** 2) for z in normed)
    old = old + ((normed[0] - normed[1]) ** 2).mean()
    offset = 2 * 2 * torch.log(torch.tensor(dim**2 / n, dtype=torch.float64))
    torch.testing.assert_close(old - ours, offset)
    for got, expected in zip(torch.autograd.grad(ours, views), torch.autograd.grad(old, views)):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


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


@pytest.mark.parametrize("formulation", ["official", "paper_two_view", "paper_multiview"])
def test_invariant_to_permuting_samples(formulation):
    views = _views(2 if formulation == "paper_two_view" else 4, 40, 12, seed=2)
    permutation = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    original, _ = frossl_loss(views, formulation=formulation)
    permuted, _ = frossl_loss([v[permutation] for v in views], formulation=formulation)
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
    with pytest.raises(ValueError, match="formulation"):
        frossl_loss(views, formulation="batch")
    with pytest.raises(ValueError, match="exactly 2 views"):
        frossl_loss(_views(3, 8, 4), formulation="paper_two_view")
    with pytest.raises(ValueError, match="at least 2 views"):
        frossl_loss(views[:1])


@pytest.mark.parametrize("gram", ["features", "samples"])
def test_the_one_product_gram_backward_equals_autograds(gram):
    from frossl_lit.losses.frossl import _Gram

    generator = torch.Generator().manual_seed(3)
    a = torch.randn(2, 6, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(_Gram.apply, (a,))
    views = [torch.randn(16, 24, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    total, _ = frossl_loss(views, gram=gram)
    total.backward()
    plain = [v.detach().clone().requires_grad_(True) for v in views]
    z = torch.stack(plain)
    z = z / z.pow(2).sum(dim=-2, keepdim=True).sqrt()
    kernel = z.mT @ z if gram == "features" else z @ z.mT
    regularizer = torch.log(kernel.pow(2).sum(dim=(-2, -1))) - 2 * torch.log(torch.diagonal(kernel, dim1=-2, dim2=-1).sum(-1))
    invariance = 3 * 24 * (z - z.mean(0, keepdim=True)).pow(2).mean(dim=(-2, -1))
    (regularizer.sum() + invariance.sum()).backward()
    for mine, reference in zip(views, plain):
        torch.testing.assert_close(mine.grad, reference.grad, rtol=1e-10, atol=1e-12)
