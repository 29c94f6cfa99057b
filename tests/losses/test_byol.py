"""BYOL: the loss equals an independent float64 transcription of the paper's symmetrised normalised MSE (and of
solo-learn's sum over view pairs with more views), the target gets no gradient, the loss is exact under DDP, and
the method trains from its config with an EMA target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frossl_lit.losses.byol import byol_loss
from frossl_lit.train import train
from tests.conftest import TINY, compose_config
from tests.ddp_harness import assert_global_batch_exact, assert_per_gpu_is_each_ranks_own, run_on_two_ranks


def reference(predictions: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """Σ over target views t and other views v of mean_i ‖p̄_vi − z̄_ti‖² (the paper's eq. 2, ℒ + ℒ̃ for 2 views)."""
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    total = 0.0
    for t, z in enumerate(targets):
        for v, p in enumerate(predictions):
            if v != t:
                total += np.mean(np.sum((unit(p) - unit(z)) ** 2, axis=1))
    return total


@pytest.mark.parametrize("num_views,num_targets", [(2, 2), (4, 2), (3, 3)])
def test_equals_the_formula_in_float64(num_views, num_targets):
    generator = torch.Generator().manual_seed(num_views)
    p = [torch.randn(10, 7, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(num_views)]
    z = [torch.randn(10, 7, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(num_targets)]
    total, parts = byol_loss(p, z)
    expected = reference([x.detach().numpy() for x in p], [x.detach().numpy() for x in z])
    assert total.item() == pytest.approx(expected, rel=1e-12)
    total.backward()
    assert all(x.grad is None for x in z)  # the target branch is a stop-gradient
    assert -1 <= parts["cosine_similarity"] <= 1


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least 2 views"):
        byol_loss([torch.randn(4, 3)], [torch.randn(4, 3)])
    with pytest.raises(ValueError, match="1 to 2 views"):
        byol_loss([torch.randn(4, 3)] * 2, [torch.randn(4, 3)] * 3)


def _byol(views, collective):  # the harness passes one list: predictions of 2 views, then their targets
    return byol_loss(views[:2], views[2:], collective=collective)


LOSSES = {"byol_4views": _byol}


@pytest.fixture(scope="module")
def distributed_results():
    return run_on_two_ranks(LOSSES)


def test_global_batch_exact_on_two_processes(distributed_results):
    assert_global_batch_exact(distributed_results, "byol_4views", _byol)
    assert_per_gpu_is_each_ranks_own(distributed_results, "byol_4views", _byol)


def test_trains_from_its_config_and_the_target_follows_the_online_network(tmp_path):
    summary = train(compose_config([*TINY, "method=byol", "trainer.max_steps=3"], tmp_path))
    assert summary["method"] == "byol" and summary["global_step"] == 3
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    online, target = state["backbone.features.0.weight"], state["target.backbone.features.0.weight"]
    assert not torch.equal(online, target) and state["target_momentum"].item() > 0.99


@pytest.mark.parametrize("overrides,message", [
    (["method.momentum_start=1.2"], r"method.momentum_start=1.2 is a momentum: it must lie in \[0, 1\]"),
    (["method.momentum_start=0.999", "method.momentum_end=0.99"], r"method.momentum_start=0.999 exceeds method.momentum_end=0.99"),
    (["method.momentum_schedule=linear"], r"method.momentum_schedule='linear' must be cosine or constant"),
    (["method.predictor=null"], r"method.predictor=None is needed: BYOL predicts one branch from the other; drop the"),
])
def test_bad_momenta_are_one_line_before_the_run(overrides, message, tmp_path):
    from frossl_lit.runtime.errors import UserError

    with pytest.raises(UserError, match=message):
        train(compose_config([*TINY, "method=byol", *overrides], tmp_path))
