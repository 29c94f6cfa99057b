"""Datasets, loaders and device-side augmentation.

- :mod:`.formats`: which data formats exist and which DataModule reads each; :func:`datamodule` builds the
  DataModule of a ``data`` config (every entry point calls it);
- :mod:`.base`: :class:`SSLDataModule`, the loaders and the contract every DataModule follows (it builds its
  datasets in ``train_dataset`` / ``val_dataset`` / ``bank_dataset``; others read ``train_set`` / ``val_set`` /
  ``bank_set``); :mod:`.sampler`: :class:`ShardedBatchSampler`, the seeded DDP sharding;
- the datasets: :mod:`.memory` (:class:`InMemoryDataModule`), :mod:`.digits`, :mod:`.cifar`, :mod:`.stl10`,
  :mod:`.folder` (image folders, decoded crop-aware by :mod:`.decode`), :mod:`.tiny_imagenet` (its download's
  layout, over the folder machinery), :mod:`.streams` (LitData: the reader, and
  the writer ``python -m frossl_lit.prepare`` runs);
- :mod:`.augment`: :class:`ViewRecipe` and :class:`ViewAugment`, the batched views made on the training device.
"""

from frossl_lit.data.augment import ViewAugment, ViewRecipe
from frossl_lit.data.base import SSLDataModule
from frossl_lit.data.formats import FORMATS, datamodule
from frossl_lit.data.memory import InMemoryDataModule
from frossl_lit.data.sampler import ShardedBatchSampler

__all__ = [
    "FORMATS", "InMemoryDataModule", "SSLDataModule", "ShardedBatchSampler", "ViewAugment", "ViewRecipe", "datamodule",
]
