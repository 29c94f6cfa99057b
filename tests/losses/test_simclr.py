"""SimCLR: NT-Xent equals an independent float64 transcription of the paper's formula (2 views) and of
solo-learn's multi-positive form (V > 2), is exact under DDP with the global batch as negatives (gradients through
the gather), and the method trains from its config."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from frossl_lit.losses.simclr import simclr_loss
from frossl_lit.train import train
from tests.conftest import TINY, compose_config
from tests.ddp_harness import assert_global_batch_exact, assert_per_gpu_is_each_ranks_own, run_on_two_ranks


def reference(views: list[np.ndarray], temperature: float) -> float:
    """The paper's ℓ(i, j) = −log exp(s_ij/τ) / Σ_(k≠i) exp(s_ik/τ) over the 2N (VN) stacked embeddings, one
    anchor at a time in plain loops; with V > 2 the positives' exponentials are summed in the numerator."""
    num_views, n = len(views), len(views[0])
    z = np.concatenate([v / np.linalg.norm(v, axis=1, keepdims=True) for v in views])  # row a = view a // n, sample a % n
    s = z @ z.T / temperature
    losses = []
    for a in range(num_views * n):
        others = [b for b in range(num_views * n) if b != a]
        positives = [b for b in others if b % n == a % n]
        losses.append(-np.log(sum(np.exp(s[a, b]) for b in positives) / sum(np.exp(s[a, b]) for b in others)))
    return float(np.mean(losses))


@pytest.mark.parametrize("num_views,temperature,n,d", [(2, 0.1, 16, 8), (2, 0.5, 7, 32), (4, 0.2, 9, 6)])
def test_equals_the_formula_in_float64(num_views, temperature, n, d):
    generator = torch.Generator().manual_seed(num_views + n)
    views = [torch.randn(n, d, generator=generator, dtype=torch.float64) for _ in range(num_views)]
    total, parts = simclr_loss(views, temperature)
    assert total.item() == pytest.approx(reference([v.numpy() for v in views], temperature), rel=1e-12)
    assert -1 <= parts["positive_similarity"] <= 1


def test_the_gradient_is_the_formulas():
    """Autograd through the logsumexp form equals autograd through the exponentials as written in the paper."""
    generator = torch.Generator().manual_seed(5)
    views = [torch.randn(6, 5, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    simclr_loss(views, 0.3)[0].backward()
    plain = [v.detach().clone().requires_grad_(True) for v in views]
    z = torch.nn.functional.normalize(torch.cat(plain), dim=1)
    similarity = torch.exp(z @ z.T / 0.3)
    index = torch.arange(6).repeat(3)
    positive = (index[:, None] == index[None, :]) & ~torch.eye(18, dtype=torch.bool)
    negative = index[:, None] != index[None, :]
    pos, neg = (similarity * positive).sum(1), (similarity * negative).sum(1)
    (-torch.log(pos / (pos + neg)).mean()).backward()
    for mine, expected in zip(views, plain):
        torch.testing.assert_close(mine.grad, expected.grad, rtol=1e-10, atol=1e-12)


def test_aligned_spread_views_score_better_than_collapsed_ones():
    spread = torch.eye(8, dtype=torch.float64)
    collapsed = torch.ones(8, 8, dtype=torch.float64)
    assert simclr_loss([spread, spread])[0] < simclr_loss([spread, spread.roll(1, 0)])[0]
    assert simclr_loss([spread, spread])[0] < simclr_loss([collapsed, collapsed])[0]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least 2 views"):
        simclr_loss([torch.randn(4, 3)])
    with pytest.raises(ValueError, match="temperature=0"):
        simclr_loss([torch.randn(4, 3)] * 2, temperature=0)


LOSSES = {"simclr": functools.partial(simclr_loss, temperature=0.2), "simclr_4views": functools.partial(simclr_loss, temperature=0.5)}


@pytest.fixture(scope="module")
def distributed_results():
    return run_on_two_ranks(LOSSES)


@pytest.mark.parametrize("name", list(LOSSES))
def test_global_batch_exact_on_two_processes(distributed_results, name):
    """The negatives are the global batch and their gradients reach the rank that embedded them."""
    assert_global_batch_exact(distributed_results, name, LOSSES[name])
    assert_per_gpu_is_each_ranks_own(distributed_results, name, LOSSES[name])


def test_trains_from_its_config_with_four_views(tmp_path):
    summary = train(compose_config([*TINY, "method=simclr", "augment.num_views=4", "trainer.max_steps=3"], tmp_path))
    assert summary["method"] == "simclr" and summary["global_step"] == 3 and summary["knn_top1"] is not None


def test_a_bad_temperature_is_one_line_before_the_run(tmp_path):
    from frossl_lit.runtime.errors import UserError

    with pytest.raises(UserError, match=r"method.temperature=0 must be a temperature > 0"):
        train(compose_config([*TINY, "method=simclr", "method.temperature=0"], tmp_path))
