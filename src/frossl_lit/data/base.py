"""The DataModule base every dataset shares.

Loaders yield ``(uint8 images, labels)``; :meth:`SSLDataModule.on_after_batch_transfer` turns a training batch
into V augmented views on the training device and an evaluation batch into normalised images. Datasets that fit
in memory are indexed a whole batch at a time (no per-sample Python, no collate), and the module shards batches
over DDP ranks itself with a seeded, epoch-aware sampler (so the trainer runs with
``use_distributed_sampler=false`` and the data order is a pure function of seed, epoch and rank).

Exact resume: the augmentation of each training batch is seeded from (seed, rank, epoch, batch index), and the
module's checkpointed state holds the position in the epoch, so a run resumed from a checkpoint written mid-epoch
continues that epoch at its next batch with the same views as a run never interrupted.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from frossl_lit.data.augment import ViewAugment
from frossl_lit.runtime.errors import UserError


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


def stratified_subset(dataset: Dataset, size: int, seed: int = 0) -> Dataset:
    """``size`` items of a labelled dataset (a ``labels`` tensor), every class in proportion; in-memory images
    stay one tensor (batched indexing), file datasets become a ``Subset``."""
    from sklearn.model_selection import train_test_split
    from torch.utils.data import Subset

    labels = dataset.labels.numpy()
    stratify = labels if min(size, len(labels) - size) >= len(set(labels.tolist())) else None
    keep, _ = train_test_split(range(len(labels)), train_size=size, stratify=stratify, random_state=seed)
    index = torch.tensor(sorted(keep))
    if isinstance(dataset, TensorImages):
        return TensorImages(dataset.images[index], dataset.labels[index])
    subset = Subset(dataset, index.tolist())
    subset.labels = dataset.labels[index]
    return subset


class SSLDataModule(L.LightningDataModule):
    """Shared loaders, sharding and device-side augmentation; subclasses provide the datasets.

    Subclasses implement :meth:`train_dataset` and :meth:`val_dataset` (``None`` when there are no labels) and
    set ``num_classes`` (0 when unlabelled: then no probe and no kNN run). ``format``: ``native`` reads the
    dataset's own files; ``litdata`` (with ``stream``, built by :func:`frossl_lit.data.datamodule`) reads the
    LitData chunks ``python -m frossl_lit.prepare`` wrote from them (:mod:`frossl_lit.data.stream`).
    """

    num_classes: int = 0
    reads_streams = False  # True only on the StreamingDataModule

    def __init__(
        self,
        augment: ViewAugment,
        batch_size: int = 256,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        pin_memory: bool = True,
        seed: int = 0,
        format: str = "native",
        stream: str | None = None,
    ) -> None:
        super().__init__()
        if format != "native" and not self.reads_streams:
            raise UserError(
                f"data.format={format!r}: build the DataModule with frossl_lit.data.datamodule(cfg.data), which reads "
                f"a stream for data.format=litdata (data.format must be native or litdata)"
            )
        self.format, self.stream = format, stream
        self.augment = augment
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.pin_memory, self.seed = num_workers, pin_memory, seed
        self._train: Dataset | None = None
        self._val: Dataset | None = None
        self._resume_position: dict[str, int] | None = None
        self._bank_subset: Dataset | None = None

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
            raise UserError(
                f"data.batch_size={self.batch_size} × {world} device(s) is more than the {len(self._train)} training "
                f"images: not one batch fits; set data.batch_size={max(1, len(self._train) // world)} or lower"
            )
        loader = self._loader(self._train, self.batch_size, shuffle=True)
        if self._resume_position is not None:  # a resumed run continues its epoch at the next batch
            sampler = loader.batch_sampler if isinstance(loader.batch_sampler, ShardedBatchSampler) else loader.sampler
            sampler.resume_at(**self._resume_position)
            self._resume_position = None
        return loader

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        return self._loader(self._val, self.eval_batch_size, shuffle=False) if self.has_labels else []

    def bank_dataloader(self, size: int | None = None) -> DataLoader | None:
        """The kNN bank (labelled training images, un-augmented); ``size``: a stratified subset of that many,
        the same every time (seeded by ``seed``)."""
        self.setup()
        bank = self.bank_dataset()
        if bank is None or not self.has_labels:
            return None
        if size is not None and size < len(bank):
            if self._bank_subset is None or len(self._bank_subset) != size:
                self._bank_subset = stratified_subset(bank, size, self.seed)
            bank = self._bank_subset
        return self._loader(bank, self.eval_batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if self.trainer is not None and self.trainer.training:
            self.augment.reseed(self._augmentation_seed())
            return self.make_views(images), labels
        return self.augment.eval_transform(images), labels

    def make_views(self, images: Any) -> list[torch.Tensor]:
        """A training batch's V views: crop and colour on the device (file datasets whose workers crop override
        this with ``augment.colour_views``)."""
        return self.augment.views(images)

    # -- exact resume: the data order and the augmentation stream are functions of (seed, rank, epoch, batch) ---
    def _augmentation_seed(self) -> int:
        """Seed of this batch's augmentations: a function of the run's seed, the rank, the epoch and the batch's
        index in the epoch (Lightning counts the batch as ready just after this hook), so that a resumed run draws
        the same views as the uninterrupted one and every epoch draws fresh ones."""
        trainer = self.trainer
        batch = int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)
        return hash((self.seed, trainer.global_rank, trainer.current_epoch, batch)) & (2**63 - 1)

    def state_dict(self) -> dict[str, Any]:
        """Saved with every checkpoint: the seed and the position in the training data (epoch, batches done), so
        that a run resumed from a checkpoint written mid-epoch continues that epoch at its next batch."""
        state: dict[str, Any] = {"seed": self.seed}
        trainer = self.trainer
        if trainer is not None and trainer.state.fn == "fit":
            done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
            state["position"] = {"epoch": trainer.current_epoch, "batches_done": done}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state.get("seed", self.seed)
        self._resume_position = state.get("position")


class InMemoryDataModule(SSLDataModule):
    """A dataset held as uint8 tensors: subclasses implement :meth:`load` returning train and val arrays.

    ``tune_fraction > 0`` carves a tuning split from the training images (stratified, seeded by ``tune_seed``)
    and validates on it instead of the dataset's validation split, which then is never read: hyperparameter
    searches (``python -m frossl_lit.compare``) select on it and report on the untouched split. Pretraining sees
    only the rest of the training images.
    """

    def __init__(self, *args, tune_fraction: float = 0.0, tune_seed: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= tune_fraction < 1.0:
            raise UserError(f"data.tune_fraction={tune_fraction} is a fraction of the training images: it must lie in [0, 1), e.g. 0.2")
        self.tune_fraction, self.tune_seed = tune_fraction, tune_seed

    def _carve_tuning_split(self, train_x: torch.Tensor, train_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(train images, train labels, tuning images, tuning labels)`` from the training split alone."""
        from sklearn.model_selection import train_test_split

        classes = len(torch.unique(train_y))
        if math.ceil(self.tune_fraction * len(train_y)) < classes:
            raise UserError(
                f"data.tune_fraction={self.tune_fraction} keeps fewer than the {classes} classes a stratified split of "
                f"{len(train_y)} training images needs; raise it to at least {classes / len(train_y):.3g}"
            )
        keep, tune = train_test_split(
            np.arange(len(train_y)), test_size=self.tune_fraction, stratify=train_y.numpy(), random_state=self.tune_seed
        )
        keep, tune = torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(tune))
        return train_x[keep], train_y[keep], train_x[tune], train_y[tune]

    def load(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Return ``(train_images, train_labels, val_images, val_labels)``, images uint8 (N, C, H, W)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            train_x, train_y, val_x, val_y = self.load()
            if self.tune_fraction > 0 and train_y is not None:  # select on training images, never the reported split
                train_x, train_y, val_x, val_y = self._carve_tuning_split(train_x, train_y)
            self._train = TensorImages(train_x, train_y)
            self._val = TensorImages(val_x, val_y) if (val_x is not None and self.num_classes) else None
        super().setup(stage)
