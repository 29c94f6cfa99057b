"""Every loss is exact over the global batch on 2 gloo processes: value and averaged parameter gradients equal
those of one process holding the concatenated batch; with global_batch=False each rank's loss is its own. The
evaluation helpers are exact too: uneven shards gather whole, and top-k accuracy sums every rank's counts."""

from __future__ import annotations

import functools

import pytest
import torch

from frossl_lit.evaluation import top_k_metrics
from frossl_lit.losses import barlow_twins_loss, frossl_loss, vicreg_loss
from frossl_lit.runtime.distributed import gather_rows
from tests.ddp_harness import (
    WORLD,
    assert_global_batch_exact,
    assert_per_gpu_is_each_ranks_own,
    run_on_two_ranks,
)

LOSSES = {
    "frossl_official_features": functools.partial(frossl_loss, formulation="official", invariance_weight=0.5),
    "frossl_paper_two_view": functools.partial(frossl_loss, formulation="paper_two_view"),
    "frossl_4views_paper_multiview": functools.partial(frossl_loss, formulation="paper_multiview"),
    "frossl_4views_balanced_samples_gram": functools.partial(frossl_loss, gram="samples", balance_views=True),
    "vicreg": vicreg_loss,
    "barlow_twins": barlow_twins_loss,
}
# 7 queries over 10 classes: rank 0 holds 3 (2 right at top-1), rank 1 holds 4 (1 right at top-1, 3 in the top 5)
SCORES = torch.eye(10)[[0, 1, 2, 3, 4, 5, 6]] + torch.linspace(0, 0.5, 10)
LABELS = torch.tensor([0, 1, 9, 3, 8, 9, 2])


def _evaluation_on_rank(rank: int) -> dict:
    shard = slice(0, 3) if rank == 0 else slice(3, 7)
    metrics = top_k_metrics(10, prefix="")
    metrics.update(SCORES[shard], LABELS[shard])
    figures = metrics.compute()
    return {
        "gather_rows": gather_rows(torch.arange(rank + 2, dtype=torch.float64)),  # ranks hold 2 and 3 rows
        "top1": figures["top1"].double(), "top5": figures["top5"].double(),
    }


@pytest.fixture(scope="module")
def distributed_results():
    return run_on_two_ranks(LOSSES, extra=_evaluation_on_rank)


@pytest.mark.parametrize("name", list(LOSSES))
def test_global_batch_loss_and_gradients_match_single_process(distributed_results, name):
    assert_global_batch_exact(distributed_results, name, LOSSES[name])


@pytest.mark.parametrize("name", list(LOSSES))
def test_per_gpu_switch_matches_each_ranks_own_loss(distributed_results, name):
    assert_per_gpu_is_each_ranks_own(distributed_results, name, LOSSES[name])


def test_gather_rows_handles_uneven_shards(distributed_results):
    expected = torch.tensor([0.0, 1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    for rank in range(WORLD):
        torch.testing.assert_close(distributed_results[rank]["gather_rows"], expected)


def test_top_k_accuracy_counts_every_ranks_queries(distributed_results):
    whole = top_k_metrics(10, prefix="")
    whole.update(SCORES, LABELS)
    expected = {name: value.double() for name, value in whole.compute().items()}
    assert expected["top1"] == pytest.approx(3 / 7) and expected["top5"] > expected["top1"]
    for rank in range(WORLD):
        assert distributed_results[rank]["top1"] == pytest.approx(expected["top1"])
        assert distributed_results[rank]["top5"] == pytest.approx(expected["top5"])
