from frossl_lit.data.augment import ViewAugment, ViewRecipe
from frossl_lit.data.base import InMemoryDataModule, ShardedBatchSampler, SSLDataModule
from frossl_lit.data.stream import datamodule

__all__ = ["InMemoryDataModule", "SSLDataModule", "ShardedBatchSampler", "ViewAugment", "ViewRecipe", "datamodule"]
