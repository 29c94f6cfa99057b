"""Every loss is exact over the global batch on 2 gloo processes: value and averaged parameter gradients equal
those of one process holding the concatenated batch; with global_batch=False each rank's loss is its own."""

from __future__ import annotations

import functools
import multiprocessing
import os
import socket
import traceback

import pytest
import torch
import torch.distributed as dist

from frossl_lit.distributed import LOCAL, Collective, gather_rows
from frossl_lit.losses import barlow_twins_loss, frossl_loss, vicreg_loss

WORLD, LOCAL_BATCH, IN_DIM = 2, 12, 6

LOSSES = {
    "frossl_official_features": functools.partial(frossl_loss, formulation="official", invariance_weight=0.5),
    "frossl_paper_two_view": functools.partial(frossl_loss, formulation="paper_two_view"),
    "frossl_4views_paper_multiview": functools.partial(frossl_loss, formulation="paper_multiview"),
    "frossl_4views_balanced_samples_gram": functools.partial(frossl_loss, gram="samples", balance_views=True),
    "vicreg": vicreg_loss,
    "barlow_twins": barlow_twins_loss,
}


def _problem(name: str):
    """Inputs for the whole global batch and a shared linear projector W (the 'parameters')."""
    generator = torch.Generator().manual_seed(0)
    num_views = 4 if "4views" in name else 2
    out_dim = 40 if "samples_gram" in name else 5  # 40 > 24 samples: the N×N branch with a real gather
    inputs = [torch.randn(WORLD * LOCAL_BATCH, IN_DIM, generator=generator, dtype=torch.float64) for _ in range(num_views)]
    weight = torch.randn(IN_DIM, out_dim, generator=generator, dtype=torch.float64)
    return inputs, weight


def _loss_and_grad(name, inputs, weight, collective):
    weight = weight.clone().requires_grad_(True)
    loss, _ = LOSSES[name]([x @ weight for x in inputs], collective=collective)
    loss.backward()
    return loss.detach(), weight.grad


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, queue) -> None:
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
        torch.set_num_threads(1)
        results = {}
        mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        for name in LOSSES:
            inputs, weight = _problem(name)
            local = [x[mine] for x in inputs]
            loss, grad = _loss_and_grad(name, local, weight, Collective(global_batch=True))
            dist.all_reduce(grad)  # what DDP does to parameter gradients: average over ranks
            per_rank_loss, per_rank_grad = _loss_and_grad(name, local, weight, Collective(global_batch=False))
            dist.all_reduce(per_rank_grad)
            results[name] = (loss, grad / WORLD, per_rank_loss, per_rank_grad / WORLD)
        rows = gather_rows(torch.arange(rank + 2, dtype=torch.float64))  # ranks hold 2 and 3 rows
        results["gather_rows"] = rows
        as_numpy = {k: (tuple(t.numpy() for t in v) if isinstance(v, tuple) else v.numpy()) for k, v in results.items()}
        queue.put((rank, as_numpy))  # numpy pickles by value; tensors would travel as short-lived shared memory
        dist.destroy_process_group()
    except Exception:  # report instead of hanging the parent
        queue.put((rank, traceback.format_exc()))


@pytest.fixture(scope="module")
def distributed_results():
    context = multiprocessing.get_context("fork")
    queue, port = context.Queue(), _free_port()
    os.environ.pop("MASTER_ADDR", None)
    processes = [context.Process(target=_worker, args=(rank, port, queue)) for rank in range(WORLD)]
    for process in processes:
        process.start()
    results = dict(queue.get(timeout=120) for _ in range(WORLD))
    for process in processes:
        process.join(timeout=30)
    for rank, value in results.items():
        assert not isinstance(value, str), f"rank {rank} failed:\n{value}"
    as_tensor = torch.from_numpy
    return {
        rank: {k: (tuple(map(as_tensor, v)) if isinstance(v, tuple) else as_tensor(v)) for k, v in value.items()}
        for rank, value in results.items()
    }


@pytest.mark.parametrize("name", list(LOSSES))
def test_global_batch_loss_and_gradients_match_single_process(distributed_results, name):
    inputs, weight = _problem(name)
    expected_loss, expected_grad = _loss_and_grad(name, inputs, weight, LOCAL)
    for rank in range(WORLD):
        loss, grad, _, _ = distributed_results[rank][name]
        torch.testing.assert_close(loss, expected_loss, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", list(LOSSES))
def test_per_gpu_switch_matches_each_ranks_own_loss(distributed_results, name):
    inputs, weight = _problem(name)
    grads = []
    for rank in range(WORLD):
        mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        expected_loss, expected_grad = _loss_and_grad(name, [x[mine] for x in inputs], weight, LOCAL)
        torch.testing.assert_close(distributed_results[rank][name][2], expected_loss, rtol=1e-10, atol=1e-10)
        grads.append(expected_grad)
    for rank in range(WORLD):
        torch.testing.assert_close(distributed_results[rank][name][3], sum(grads) / WORLD, rtol=1e-8, atol=1e-10)
    global_loss = distributed_results[0][name][0]
    assert not torch.allclose(global_loss, distributed_results[0][name][2])  # the switch really changes the loss


def test_gather_rows_handles_uneven_shards(distributed_results):
    expected = torch.tensor([0.0, 1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    for rank in range(WORLD):
        torch.testing.assert_close(distributed_results[rank]["gather_rows"], expected)
