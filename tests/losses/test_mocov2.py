"""MoCo v2+: the loss equals an independent float64 transcription of InfoNCE with a queue (the MoCo paper's eq. 1,
symmetrised as solo-learn), is exact under DDP, the queue is filled from the global batch (2 ranks = one process),
a queue smaller than the global batch is refused, and the method trains from its config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from frossl_lit.losses.mocov2 import mocov2_loss
from frossl_lit.methods.queue import KeyQueue
from frossl_lit.runtime.errors import UserError
from frossl_lit.train import train
from tests.conftest import TINY, compose_config
from tests.ddp_harness import (
    LOCAL_BATCH,
    WORLD,
    assert_global_batch_exact,
    assert_per_gpu_is_each_ranks_own,
    run_on_two_ranks,
)


def reference(q: list[np.ndarray], k: list[np.ndarray], queues: np.ndarray, t: float) -> float:
    """ℓ = −log exp(q·k⁺/t) / (exp(q·k⁺/t) + Σ_queue exp(q·k/t)) per query, mean over the batch, (ℓ12 + ℓ21)/2."""
    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)
    q, k = [unit(x) for x in q], [unit(x) for x in k]
    directions = []
    for view, other in ((0, 1), (1, 0)):
        losses = []
        for i in range(len(q[view])):
            positive = np.exp(q[view][i] @ k[other][i] / t)
            negatives = sum(np.exp(q[view][i] @ key / t) for key in queues[other])
            losses.append(-np.log(positive / (positive + negatives)))
        directions.append(np.mean(losses))
    return float(sum(directions) / 2)


def _queues(size=7, dim=5):
    return F.normalize(torch.randn(2, size, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("temperature", [0.1, 0.2, 1.0])
def test_equals_the_formula_in_float64(temperature):
    generator = torch.Generator().manual_seed(3)
    q = [torch.randn(11, 5, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    k = [torch.randn(11, 5, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    total, _ = mocov2_loss(q, k, _queues(), temperature)
    expected = reference([x.detach().numpy() for x in q], [x.detach().numpy() for x in k], _queues().numpy(), temperature)
    assert total.item() == pytest.approx(expected, rel=1e-12)
    total.backward()
    assert all(x.grad is None for x in k)  # keys come from the target: no gradient


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="2 views"):
        mocov2_loss([torch.randn(4, 5)] * 3, [torch.randn(4, 5)] * 3, _queues().float())
    with pytest.raises(ValueError, match="temperature=-1"):
        mocov2_loss([torch.randn(4, 5)] * 2, [torch.randn(4, 5)] * 2, _queues().float(), temperature=-1)


def test_the_queue_dequeues_the_oldest_keys_and_wraps_around():
    torch.manual_seed(0)
    queue = KeyQueue(2, 5, 3)
    initial = queue.keys.clone()
    batches = [[torch.full((2, 3), float(b)), torch.full((2, 3), -float(b))] for b in range(1, 4)]
    for batch in batches:
        queue.push(batch)
    assert queue.pointer.item() == 6 % 5
    expected = initial.clone()
    for slot, value in zip([0, 1, 2, 3, 4, 0], [1, 1, 2, 2, 3, 3]):
        expected[0, slot], expected[1, slot] = value, -value
    torch.testing.assert_close(queue.keys, expected)
    with pytest.raises(ValueError, match="smaller than the global batch"):
        queue.push([torch.zeros(6, 3)] * 2)


def _mocov2(views, collective):  # the harness passes one list: queries of 2 views, then their keys
    return mocov2_loss(views[:2], views[2:], _queues(), 0.2, collective=collective)


LOSSES = {"mocov2_4views": _mocov2}
KEYS = torch.randn(2, WORLD * LOCAL_BATCH, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)


def _queue_on_rank(rank: int) -> dict:
    torch.manual_seed(0)  # every rank starts from the same queue, as every rank is seeded alike in a run
    queue = KeyQueue(2, 40, 5).double()
    mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    for _ in range(2):
        queue.push([KEYS[0, mine], KEYS[1, mine]])
    return {"queue_keys": queue.keys.clone(), "queue_pointer": queue.pointer.clone()}


@pytest.fixture(scope="module")
def distributed_results():
    return run_on_two_ranks(LOSSES, extra=_queue_on_rank)


def test_global_batch_exact_on_two_processes(distributed_results):
    assert_global_batch_exact(distributed_results, "mocov2_4views", _mocov2)
    assert_per_gpu_is_each_ranks_own(distributed_results, "mocov2_4views", _mocov2)


def test_the_queue_is_filled_from_the_global_batch(distributed_results):
    torch.manual_seed(0)
    single = KeyQueue(2, 40, 5).double()
    for _ in range(2):
        single.push([KEYS[0], KEYS[1]])
    for rank in range(WORLD):
        torch.testing.assert_close(distributed_results[rank]["queue_keys"], single.keys, rtol=0, atol=0)
        assert int(distributed_results[rank]["queue_pointer"]) == int(single.pointer) == 48 % 40


def test_trains_from_its_config_and_pushes_every_step_into_the_queue(tmp_path):
    summary = train(compose_config([*TINY, "method=mocov2", "method.queue_size=1024", "trainer.max_steps=3"], tmp_path))
    assert summary["method"] == "mocov2" and summary["global_step"] == 3
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["queue.pointer"].item() == 3 * 64 and state["queue.keys"].shape == (2, 1024, 32)
    torch.testing.assert_close(state["queue.keys"].norm(dim=-1), torch.ones(2, 1024))


def test_with_gradient_accumulation_every_micro_batch_is_enqueued(tmp_path):
    train(compose_config([*TINY, "method=mocov2", "method.queue_size=1024", "trainer.max_steps=2",
                          "+trainer.accumulate_grad_batches=2", "callbacks.knn=null", "callbacks.labelfree=null"], tmp_path))
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["queue.pointer"].item() == 2 * 2 * 64


@pytest.mark.parametrize("overrides,message", [
    (["method.queue_size=32"], r"method.queue_size=32 must be a whole number of keys of at least one global batch \(64\)"),
    (["method.queue_size=100", "data.batch_size=128"], r"method.queue_size=100 .* \(128\)"),
    (["method.queue_size=abc"], r"method.queue_size='abc'"),
    (["method.temperature=-0.1"], r"method.temperature=-0.1 must be a temperature > 0"),
    (["method.momentum_end=-1"], r"method.momentum_end=-1 is a momentum"),
    (["augment.num_views=3"], r"augment.num_views=3 gives 3 views in all, but MoCoV2 takes exactly 2"),
])
def test_bad_values_are_one_line_before_the_run(overrides, message, tmp_path):
    with pytest.raises(UserError, match=message):
        train(compose_config([*TINY, "method=mocov2", *overrides], tmp_path))


@pytest.mark.slow  # 15 s: two real DDP processes (the loss and the queue are pinned on 2 ranks above)
def test_two_ddp_processes_fill_one_queue_from_the_global_batch(tmp_path):
    from tests.conftest import run_cli

    result = run_cli([*TINY, "method=mocov2", "method.queue_size=1024", "trainer=ddp", "trainer.devices=2",
                      "trainer.max_steps=4", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["queue.pointer"].item() == 4 * 2 * 64  # four steps of the global batch
