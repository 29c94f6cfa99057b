"""The batch sampler every map-style DataModule loader uses: :class:`ShardedBatchSampler` shards batches over DDP ranks
itself, seeded and epoch-aware, so the trainer runs with ``use_distributed_sampler=false`` and the data order is a
pure function of seed, epoch and rank; :meth:`~ShardedBatchSampler.resume_at` continues an epoch mid-way."""

from __future__ import annotations

import math

import torch


class ShardedBatchSampler:
    """Yields index tensors, one per batch, for this rank.

    Training (``shuffle=True``): a permutation seeded by ``seed + epoch``; each step takes the next
    ``batch_size × world_size`` indices and this rank its slice, dropping the incomplete last global batch so
    every rank holds the same number of samples (the global-batch losses rely on it).
    Evaluation (``shuffle=False``): rank r takes indices ``r, r + W, r + 2W, …`` in order, nothing dropped or
    repeated, so metrics summed over ranks are exact.
    """

    def __init__(
        self, size: int, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be positive")
        self.size, self.batch_size, self.shuffle = size, batch_size, shuffle
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches to skip) for the next pass

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue ``epoch`` after its first ``batches_done`` batches (the next epoch when that was all of it)."""
        if batches_done >= len(self):
            self.epoch, self._resume = epoch + 1, None
        else:
            self.epoch, self._resume = epoch, (epoch, batches_done)

    def __len__(self) -> int:
        if self.shuffle:
            return self.size // (self.batch_size * self.world_size)
        return math.ceil(len(range(self.rank, self.size, self.world_size)) / self.batch_size)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
            global_batch = self.batch_size * self.world_size
            first = self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0
            self._resume = None
            for step in range(first, len(self)):
                start = step * global_batch + self.rank * self.batch_size
                yield order[start : start + self.batch_size]
        else:
            mine = torch.arange(self.rank, self.size, self.world_size)
            yield from mine.split(self.batch_size)
