"""Run loss functions on 2 gloo processes and compare them with one process holding the whole batch.

``run_on_two_ranks(losses)`` returns, per rank and loss name, ``(loss, averaged gradient)`` with the global-batch
collective and the same with the per-GPU one; ``assert_*`` compare them with the single-process figures. Any loss
test can use it (``tests/runtime/test_distributed.py`` for the built-in losses, a new method's own test for its loss).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable

import torch
import torch.distributed as dist

from frossl_lit.runtime.distributed import LOCAL, Collective
from tests.conftest import free_port

WORLD, LOCAL_BATCH, IN_DIM = 2, 12, 6


def problem(name: str):
    """Inputs for the whole global batch and a shared linear projector W (the 'parameters'): 4 views when the
    name says ``4views``, an output wider than the 24 samples when it says ``samples_gram``."""
    generator = torch.Generator().manual_seed(0)
    num_views = 4 if "4views" in name else 2
    out_dim = 40 if "samples_gram" in name else 5
    inputs = [torch.randn(WORLD * LOCAL_BATCH, IN_DIM, generator=generator, dtype=torch.float64) for _ in range(num_views)]
    weight = torch.randn(IN_DIM, out_dim, generator=generator, dtype=torch.float64)
    return inputs, weight


def loss_and_grad(loss: Callable, inputs, weight, collective):
    weight = weight.clone().requires_grad_(True)
    value, _ = loss([x @ weight for x in inputs], collective=collective)
    value.backward()
    return value.detach(), weight.grad


def _worker(rank: int, port: int, queue, losses: dict, extra: Callable | None) -> None:
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
        torch.set_num_threads(1)
        results = {}
        mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        for name, loss in losses.items():
            inputs, weight = problem(name)
            local = [x[mine] for x in inputs]
            value, grad = loss_and_grad(loss, local, weight, Collective(global_batch=True))
            dist.all_reduce(grad)  # what DDP does to parameter gradients: average over ranks
            per_rank_value, per_rank_grad = loss_and_grad(loss, local, weight, Collective(global_batch=False))
            dist.all_reduce(per_rank_grad)
            results[name] = (value, grad / WORLD, per_rank_value, per_rank_grad / WORLD)
        results.update(extra(rank) if extra else {})
        as_numpy = {k: (tuple(t.numpy() for t in v) if isinstance(v, tuple) else v.numpy()) for k, v in results.items()}
        queue.put((rank, as_numpy))  # numpy pickles by value; tensors would travel as short-lived shared memory
        dist.destroy_process_group()
    except Exception:  # report instead of hanging the parent
        queue.put((rank, traceback.format_exc()))


def run_on_two_ranks(losses: dict[str, Callable], extra: Callable[[int], dict] | None = None) -> dict:
    """``{rank: {name: (loss, grad, per-GPU loss, per-GPU grad)}}`` (plus what ``extra(rank)`` returns, run on
    each rank with the process group up)."""
    context = multiprocessing.get_context("fork")
    queue, port = context.Queue(), free_port()
    os.environ.pop("MASTER_ADDR", None)
    processes = [context.Process(target=_worker, args=(rank, port, queue, losses, extra)) for rank in range(WORLD)]
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


def assert_global_batch_exact(results: dict, name: str, loss: Callable) -> None:
    """Every rank's loss and averaged gradient equal one process's on the concatenated batch."""
    inputs, weight = problem(name)
    expected_loss, expected_grad = loss_and_grad(loss, inputs, weight, LOCAL)
    for rank in range(WORLD):
        value, grad, _, _ = results[rank][name]
        torch.testing.assert_close(value, expected_loss, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-10)


def assert_per_gpu_is_each_ranks_own(results: dict, name: str, loss: Callable) -> None:
    """With ``global_batch=False`` each rank's loss is that of its own shard, and the gradient their average."""
    inputs, weight = problem(name)
    grads = []
    for rank in range(WORLD):
        mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        expected_loss, expected_grad = loss_and_grad(loss, [x[mine] for x in inputs], weight, LOCAL)
        torch.testing.assert_close(results[rank][name][2], expected_loss, rtol=1e-10, atol=1e-10)
        grads.append(expected_grad)
    for rank in range(WORLD):
        torch.testing.assert_close(results[rank][name][3], sum(grads) / WORLD, rtol=1e-8, atol=1e-10)
    assert not torch.allclose(results[0][name][0], results[0][name][2])  # the switch really changes the loss
