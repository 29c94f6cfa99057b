"""The DataModule base every dataset shares.

Loaders yield ``(uint8 images, labels)``; :meth:`SSLDataModule.on_after_batch_transfer` turns a training batch
into V augmented views on the training device and an evaluation batch into normalised images. Datasets that fit
in memory are indexed a whole batch at a time (no per-sample Python, no collate), and the module shards batches
over DDP ranks itself with a seeded, epoch-aware sampler (so the trainer runs with
``use_distributed_sampler=false`` and the data order is a pure function of seed, epoch and rank).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from frossl_lit.data.augment import ViewAugment


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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.shuffle:
            return self.size // (self.batch_size * self.world_size)
        return math.ceil(len(range(self.rank, self.size, self.world_size)) / self.batch_size)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
            global_batch = self.batch_size * self.world_size
            for step in range(len(self)):
                start = step * global_batch + self.rank * self.batch_size
                yield order[start : start + self.batch_size]
        else:
            mine = torch.arange(self.rank, self.size, self.world_size)
            yield from mine.split(self.batch_size)


class TensorImages(Dataset):
    """uint8 images (N, C, H, W) and labels (N,), indexed by a tensor of indices (one call per batch)."""

    batched_indexing = True

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.images = images
        self.labels = labels if labels is not None else torch.full((len(images),), -1, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class SSLDataModule(L.LightningDataModule):
    """Shared loaders, sharding and device-side augmentation; subclasses provide the datasets.

    Subclasses implement :meth:`train_dataset` and :meth:`val_dataset` (``None`` when there are no labels) and
    set ``num_classes`` (0 when unlabelled: then no probe and no kNN run).
    """

    num_classes: int = 0

    def __init__(
        self,
        augment: ViewAugment,
        batch_size: int = 256,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        pin_memory: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.augment = augment
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.pin_memory, self.seed = num_workers, pin_memory, seed
        self._train: Dataset | None = None
        self._val: Dataset | None = None
        self._seeded_rank: int | None = None

    # -- what subclasses provide ----------------------------------------------------------------------------
    def train_dataset(self) -> Dataset:
        raise NotImplementedError

    def val_dataset(self) -> Dataset | None:
        raise NotImplementedError

    def bank_dataset(self) -> Dataset | None:
        """Labelled training images for the kNN bank (no augmentation); the training set by default."""
        return self._train if self.num_classes else None

    # -- Lightning hooks --------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            self._train = self.train_dataset()
            self._val = self.val_dataset() if self.num_classes else None
        rank = self._rank_and_world()[0]
        if self._seeded_rank != rank:  # once per rank: evaluation passes call setup() again every epoch, and
            # re-seeding there would replay epoch 0's augmentations in every epoch
            self.augment.reseed(self.seed + 1000 * rank)
            self._seeded_rank = rank

    @property
    def has_labels(self) -> bool:
        return self.num_classes > 0 and self._val is not None

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        rank, world = self._rank_and_world()
        sampler = ShardedBatchSampler(len(dataset), batch_size, shuffle, self.seed, rank, world)
        # in-memory datasets take a whole batch of indices at once; file datasets one index at a time + collate
        batching = {"batch_size": None, "sampler": sampler} if getattr(dataset, "batched_indexing", False) else {"batch_sampler": sampler}
        return DataLoader(
            dataset,
            **batching,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        rank, world = self._rank_and_world()
        if len(self._train) < self.batch_size * world:
            raise ValueError(
                f"the training set has {len(self._train)} images, fewer than one global batch "
                f"({self.batch_size} × {world} devices); lower data.batch_size"
            )
        return self._loader(self._train, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        return self._loader(self._val, self.eval_batch_size, shuffle=False) if self.has_labels else []

    def bank_dataloader(self) -> DataLoader | None:
        self.setup()
        bank = self.bank_dataset()
        return self._loader(bank, self.eval_batch_size, shuffle=False) if (bank is not None and self.has_labels) else None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if self.trainer is not None and self.trainer.training:
            return self.augment(images), labels
        return self.augment.eval_transform(images), labels

    # -- checkpointed state: the augmentation stream restarts from the epoch's seed ---------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state.get("seed", self.seed)


class InMemoryDataModule(SSLDataModule):
    """A dataset held as uint8 tensors: subclasses implement :meth:`load` returning train and val arrays."""

    def load(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Return ``(train_images, train_labels, val_images, val_labels)``, images uint8 (N, C, H, W)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            train_x, train_y, val_x, val_y = self.load()
            self._train = TensorImages(train_x, train_y)
            self._val = TensorImages(val_x, val_y) if (val_x is not None and self.num_classes) else None
        super().setup(stage)
