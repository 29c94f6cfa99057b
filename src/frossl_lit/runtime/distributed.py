"""Autograd-aware collectives, and the `Collective` object the losses take to be exact over the global batch.

Every loss here is written in terms of *sums over samples* (column sums, Gram matrices, squared errors). Summing
those over ranks with :func:`all_reduce_sum` makes the loss on every rank equal to the loss of one process that
holds the concatenated batch. The backward of that sum is again a sum over ranks: each rank's loss is the same
global loss, and Lightning's DDP *averages* parameter gradients over ranks, so summing the incoming gradients
here and averaging them there gives exactly the single-process gradient. A raw ``dist.all_reduce`` on a tensor in
the graph passes the gradient through unsummed and silently divides it by the world size (the bug in solo-learn's
Barlow Twins). Written by hand, not taken from ``torch.distributed.nn``: the backward of that module's
``all_reduce`` changed meaning between releases, and these two functions are the whole contract the tests pin.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


def _dist_ready() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class _AllGatherCat(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, differentiable (identity when not distributed)."""
    return _AllReduceSum.apply(tensor) if _dist_ready() else tensor


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate equal-sized per-rank tensors along dim 0, differentiable (identity when not distributed)."""
    return _AllGatherCat.apply(tensor) if _dist_ready() else tensor


@dataclass(frozen=True)
class Collective:
    """How a loss combines per-rank sums: ``global_batch=True`` sums over ranks, False keeps each rank's own batch.

    Losses call ``sum`` on every per-sample sum they form, and ``gather`` where they need the samples themselves.
    With ``global_batch=False`` (or a single process) both are the identity, which reproduces the per-GPU losses
    of the official FroSSL and solo-learn code.
    """

    global_batch: bool = True

    @property
    def world_size(self) -> int:
        return dist.get_world_size() if (self.global_batch and _dist_ready()) else 1

    @property
    def rank(self) -> int:
        """This process's place in :meth:`gather`'s output (its rows start at ``rank × local batch``)."""
        return dist.get_rank() if (self.global_batch and _dist_ready()) else 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(tensor) if self.global_batch else tensor

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return all_gather_cat(tensor) if self.global_batch else tensor


LOCAL = Collective(global_batch=False)


@torch.no_grad()
def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate per-rank tensors with *different* numbers of rows (no autograd; for evaluation)."""
    if not _dist_ready():
        return tensor
    world = dist.get_world_size()
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    padded = torch.zeros((max(sizes), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])
