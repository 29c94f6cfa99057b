"""The seeded DDP sharding of every map-style loader (:mod:`frossl_lit.data.sampler`)."""

from __future__ import annotations

import torch

from frossl_lit.data.sampler import ShardedBatchSampler


def test_sharded_sampler_training_covers_disjoint_equal_batches():
    shards = [list(ShardedBatchSampler(100, 8, shuffle=True, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 100 // 24 for s in shards)
    flat = torch.cat([torch.cat(s) for s in shards])
    assert len(flat) == len(set(flat.tolist())) == 4 * 24
    sampler = ShardedBatchSampler(100, 8, shuffle=True, seed=1)
    first = torch.cat(list(sampler))
    sampler.set_epoch(1)
    assert not torch.equal(first, torch.cat(list(sampler)))


def test_sharded_sampler_evaluation_is_exact_partition():
    shards = [torch.cat(list(ShardedBatchSampler(11, 4, shuffle=False, rank=r, world_size=2))) for r in range(2)]
    assert sorted(torch.cat(shards).tolist()) == list(range(11))


def test_a_resumed_sampler_continues_its_epoch_after_the_batches_done():
    whole = list(ShardedBatchSampler(100, 8, shuffle=True, seed=1))
    resumed = ShardedBatchSampler(100, 8, shuffle=True, seed=1)
    resumed.resume_at(epoch=0, batches_done=5)
    assert [b.tolist() for b in resumed] == [b.tolist() for b in whole[5:]]
    assert len(list(resumed)) == len(whole)  # the next pass is a whole epoch again
    finished = ShardedBatchSampler(100, 8, shuffle=True, seed=1)
    finished.resume_at(epoch=0, batches_done=len(whole))  # the epoch was over: the next one starts
    next_epoch = ShardedBatchSampler(100, 8, shuffle=True, seed=1)
    next_epoch.set_epoch(1)
    assert finished.epoch == 1 and [b.tolist() for b in finished] == [b.tolist() for b in next_epoch]
