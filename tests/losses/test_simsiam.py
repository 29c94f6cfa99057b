"""SimSiam: the loss equals an independent float64 transcription of the paper's eq. 2, the stop-gradient holds, it
is exact under DDP, and the predictor trains at a fixed learning rate from the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frossl_lit.losses.simsiam import simsiam_loss
from frossl_lit.train import build, train
from tests.conftest import TINY, compose_config
from tests.ddp_harness import assert_global_batch_exact, assert_per_gpu_is_each_ranks_own, run_on_two_ranks


def reference(p: list[np.ndarray], z: list[np.ndarray]) -> float:
    """D(p, z) = −(p/‖p‖)·(z/‖z‖) averaged over the batch; L = D(p1, z2)/2 + D(p2, z1)/2 (Algorithm 1)."""
    def d(a, b):
        return -np.mean([np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(a, b)])
    return d(p[0], z[1]) / 2 + d(p[1], z[0]) / 2


def test_equals_the_formula_in_float64_and_stops_the_gradient_of_the_projections():
    generator = torch.Generator().manual_seed(2)
    p = [torch.randn(12, 9, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    z = [torch.randn(12, 9, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    total, _ = simsiam_loss(p, z)
    assert total.item() == pytest.approx(reference([x.detach().numpy() for x in p], [x.detach().numpy() for x in z]), rel=1e-12)
    total.backward()
    assert all(x.grad is None for x in z) and all(x.grad.abs().sum() > 0 for x in p)
    assert simsiam_loss([z[1], z[0]], z)[0].item() == pytest.approx(-1.0)  # perfect predictions: −1


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="2 views"):
        simsiam_loss([torch.randn(4, 3)] * 3, [torch.randn(4, 3)] * 3)


def _simsiam(views, collective):  # the harness passes one list: predictions, then projections
    return simsiam_loss(views[:2], views[2:], collective=collective)


LOSSES = {"simsiam_4views": _simsiam}


@pytest.fixture(scope="module")
def distributed_results():
    return run_on_two_ranks(LOSSES)


def test_global_batch_exact_on_two_processes(distributed_results):
    assert_global_batch_exact(distributed_results, "simsiam_4views", _simsiam)
    assert_per_gpu_is_each_ranks_own(distributed_results, "simsiam_4views", _simsiam)


def test_trains_from_its_config_and_the_predictor_keeps_the_peak_lr(tmp_path):
    summary = train(compose_config([*TINY, "method=simsiam", "trainer.max_steps=3"], tmp_path))
    assert summary["method"] == "simsiam" and summary["global_step"] == 3
    groups = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"][0]["param_groups"]
    assert [g.get("static_lr", False) for g in groups] == [False, False, True, True]  # predictor: weights, biases + norms
    assert [g["lr"] for g in groups[2:]] == [2e-3, 2e-3] and all(g["lr"] < 1e-4 for g in groups[:2])  # in warm-up
    _, module, _, _ = build(compose_config([*TINY, "method=simsiam"], tmp_path / "again"))
    assert {id(p) for g in module.param_groups() if g.get("static_lr") for p in g["params"]} == {id(p) for p in module.predictor.parameters()}


def test_four_views_are_one_line_before_the_run(tmp_path):
    from frossl_lit.runtime.errors import UserError

    with pytest.raises(UserError, match=r"augment.num_views=4 gives 4 views in all, but SimSiam takes exactly 2"):
        train(compose_config([*TINY, "method=simsiam", "augment.num_views=4"], tmp_path))
