"""A queue of past keys (MoCo's negatives), filled from the global batch, held in buffers (so in every checkpoint)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from frossl_lit.runtime.distributed import all_gather_cat


class KeyQueue(nn.Module):
    """``num_queues`` queues of ``size`` unit-norm keys of ``dim`` dimensions sharing one write pointer (MoCo v2+:
    one queue per view). Starts from random unit vectors, as the MoCo code does (``init="zeros"``: from zeros, as
    SwAV's queue).

    :meth:`push` writes every rank's keys (the global batch, gathered) at the pointer and moves it on, wrapping
    around; the pointer stays on the device, so a push costs no host read. Every rank holds the same queue.
    """

    def __init__(self, num_queues: int, size: int, dim: int, init: str = "random") -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"method.queue_size={size} must be a positive number of keys")
        if init not in ("random", "zeros"):
            raise ValueError(f"KeyQueue init={init!r} must be 'random' or 'zeros'")
        self.size = size
        start = F.normalize(torch.randn(num_queues, size, dim), dim=-1) if init == "random" else torch.zeros(num_queues, size, dim)
        self.register_buffer("keys", start)
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: Sequence[torch.Tensor]) -> None:
        """Enqueue ``keys[q]`` (this rank's N × D keys for queue q) of every rank, dequeuing the oldest."""
        new = torch.stack([all_gather_cat(k.detach()) for k in keys]).to(self.keys.dtype)  # (queues, global N, D)
        count = new.shape[1]
        if count > self.size:
            raise ValueError(f"method.queue_size={self.size} is smaller than the global batch ({count}): a batch would overwrite itself")
        index = (self.pointer + torch.arange(count, device=new.device)) % self.size
        self.keys.index_copy_(1, index, new)
        self.pointer.add_(count).remainder_(self.size)
