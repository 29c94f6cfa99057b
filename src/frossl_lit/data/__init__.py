from frossl_lit.data.augment import ViewAugment, ViewRecipe
from frossl_lit.data.base import InMemoryDataModule, ShardedBatchSampler, SSLDataModule

__all__ = ["InMemoryDataModule", "SSLDataModule", "ShardedBatchSampler", "ViewAugment", "ViewRecipe"]
