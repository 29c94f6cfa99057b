"""MMCR: the loss equals an independent float64 transcription of its formula, is exact under DDP, and the method
trains from the config (the multirun of every method: tests/methods/test_sweep.py)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from frossl_lit.losses.mmcr import mmcr_loss
from frossl_lit.methods.mmcr import MMCR
from frossl_lit.train import train
from tests.conftest import TINY, compose_config, tiny_digits, tiny_fit, tiny_method
from tests.ddp_harness import assert_global_batch_exact, assert_per_gpu_is_each_ranks_own, run_on_two_ranks


def reference(views: list[np.ndarray], local_weight: float) -> float:
    """−‖C‖_* + λ/N Σ_i ‖Z_i‖_* from the paper, with numpy: rows to unit norm, C_i = mean over views."""
    unit = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in views]
    centroids = sum(unit) / len(unit)
    loss = -np.linalg.svd(centroids, compute_uv=False).sum()
    manifolds = [np.stack([u[i] for u in unit]) for i in range(len(views[0]))]
    return loss + local_weight * np.mean([np.linalg.svd(m, compute_uv=False).sum() for m in manifolds])


@pytest.mark.parametrize("num_views,local_weight,n,d", [(2, 0.0, 32, 16), (4, 0.0, 16, 64), (3, 0.5, 24, 8)])
def test_equals_the_formula_in_float64(num_views, local_weight, n, d):
    generator = torch.Generator().manual_seed(num_views)
    views = [torch.randn(n, d, generator=generator, dtype=torch.float64) for _ in range(num_views)]
    total, parts = mmcr_loss(views, local_weight)
    assert total.item() == pytest.approx(reference([v.numpy() for v in views], local_weight), rel=1e-12)
    assert parts["centroid_nuclear_norm"] > 0


def test_identical_views_spread_apart_score_best():
    aligned = torch.eye(8, dtype=torch.float64)
    collapsed = torch.ones(8, 8, dtype=torch.float64)
    assert mmcr_loss([aligned, aligned])[0] < mmcr_loss([aligned, aligned.roll(1, 0)])[0] < 0
    assert mmcr_loss([aligned, aligned])[0] < mmcr_loss([collapsed, collapsed])[0]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least 2 views"):
        mmcr_loss([torch.randn(4, 3)])
    with pytest.raises(ValueError, match="local_weight=-1"):
        mmcr_loss([torch.randn(4, 3)] * 2, local_weight=-1)


LOSSES = {"mmcr": mmcr_loss, "mmcr_4views_local": functools.partial(mmcr_loss, local_weight=0.3)}


@pytest.fixture(scope="module")
def distributed_results():
    return run_on_two_ranks(LOSSES)


@pytest.mark.parametrize("name", list(LOSSES))
def test_global_batch_exact_on_two_processes(distributed_results, name):
    assert_global_batch_exact(distributed_results, name, LOSSES[name])
    assert_per_gpu_is_each_ranks_own(distributed_results, name, LOSSES[name])


@pytest.mark.slow  # 10 s; MMCR trains (2 views) in the multirun test below
def test_module_trains_four_views(tmp_path):
    module = tiny_method(MMCR, local_weight=0.1)
    trainer, _ = tiny_fit(tmp_path, [], module=module, datamodule=tiny_digits(num_views=4), max_steps=3)
    assert trainer.global_step == 3 and all(torch.isfinite(p).all() for p in module.parameters())


def test_trains_from_its_config_with_four_views(tmp_path):
    summary = train(compose_config([*TINY, "method=mmcr", "augment.num_views=4", "trainer.max_steps=3"], tmp_path))
    assert summary["method"] == "mmcr" and summary["global_step"] == 3 and summary["knn_top1"] is not None
