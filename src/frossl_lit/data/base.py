"""The DataModule base every dataset shares, and the contract each follows.

A DataModule says how to build its datasets and nothing else: :meth:`SSLDataModule.train_dataset`,
:meth:`~SSLDataModule.val_dataset` and optionally :meth:`~SSLDataModule.bank_dataset`. The base class's
:meth:`~SSLDataModule.setup` (the only ``setup``) builds them once; everyone else reads the built ones through
:attr:`~SSLDataModule.train_set`, :attr:`~SSLDataModule.val_set` and :attr:`~SSLDataModule.bank_set`.

Loaders yield ``(uint8 images, labels)``; :meth:`SSLDataModule.on_after_batch_transfer` turns a training batch
into V augmented views on the training device and an evaluation batch into normalised images. Datasets that fit
in memory are indexed a whole batch at a time (:mod:`.memory`), and the module shards batches over DDP ranks itself
(:class:`~frossl_lit.data.sampler.ShardedBatchSampler`: the trainer runs with ``use_distributed_sampler=false`` and
the data order is a pure function of seed, epoch and rank).

Exact resume: the augmentation of each training batch is seeded from (seed, rank, epoch, batch index), and the
module's checkpointed state holds the position in the epoch (:mod:`frossl_lit.runtime.loop_position`), so a run
resumed from a checkpoint written mid-epoch continues that epoch at its next batch with the same views as a run
never interrupted.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from frossl_lit.data.augment import ViewAugment
from frossl_lit.data.formats import check_reader
from frossl_lit.data.sampler import ShardedBatchSampler
from frossl_lit.runtime.errors import UserError
from frossl_lit.runtime.loop_position import batches_consumed, batches_fetched


def stratified_subset(dataset: Dataset, size: int, seed: int = 0) -> Dataset:
    """``size`` items of a labelled dataset (a ``labels`` tensor), every class in proportion; in-memory images
    stay one tensor (a dataset with ``take(index)``), file datasets become a ``Subset``."""
    from sklearn.model_selection import train_test_split
    from torch.utils.data import Subset

    labels = dataset.labels.numpy()
    stratify = labels if min(size, len(labels) - size) >= len(set(labels.tolist())) else None
    keep, _ = train_test_split(range(len(labels)), train_size=size, stratify=stratify, random_state=seed)
    index = torch.tensor(sorted(keep))
    if hasattr(dataset, "take"):
        return dataset.take(index)
    subset = Subset(dataset, index.tolist())
    subset.labels = dataset.labels[index]
    return subset


class SSLDataModule(L.LightningDataModule):
    """Shared loaders, sharding and device-side augmentation; subclasses provide the datasets.

    Subclasses implement :meth:`train_dataset` and :meth:`val_dataset` (``None`` when there is nothing to evaluate
    against), may implement :meth:`bank_dataset`, and set ``num_classes`` (0 when unlabelled: then no probe and no
    kNN run; :meth:`setup` sets it to 0 when there is no validation set). ``format`` and ``stream`` are the data
    config's (:mod:`frossl_lit.data.formats`): a dataset's own module reads ``native`` files only.
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
        format: str = "native",
        stream: str | None = None,
    ) -> None:
        super().__init__()
        check_reader(type(self), format)
        self.format, self.stream = format, stream
        self.augment = augment
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.pin_memory, self.seed = num_workers, pin_memory, seed
        self._train: Dataset | None = None
        self._val: Dataset | None = None
        self._bank: Dataset | None = None
        self._resume_position: dict[str, int] | None = None
        self._bank_subset: Dataset | None = None

    # -- what subclasses provide: called once each, by setup ----------------------------------------------------
    def train_dataset(self) -> Dataset:
        """The training images: ``(uint8 image or per-view crops, label)`` items, label -1 when unlabelled."""
        raise NotImplementedError

    def val_dataset(self) -> Dataset | None:
        """The labelled validation images, un-augmented; ``None`` when there are none."""
        raise NotImplementedError

    def bank_dataset(self) -> Dataset | None:
        """Labelled training images for the kNN bank, un-augmented; ``None``: the training set itself."""
        return None

    # -- the built datasets ---------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build the datasets, once (later calls do nothing)."""
        if self._train is not None:
            return
        self._train = self.train_dataset()
        self._val = self.val_dataset() if self.num_classes else None
        if self._val is None:
            self.num_classes = 0  # nothing to evaluate against: no probe, no kNN
        else:
            bank = self.bank_dataset()
            self._bank = self._train if bank is None else bank

    @property
    def train_set(self) -> Dataset:
        """The training dataset (built on first use)."""
        self.setup()
        return self._train

    @property
    def val_set(self) -> Dataset | None:
        """The validation dataset (built on first use); ``None`` without labels."""
        self.setup()
        return self._val

    @property
    def bank_set(self) -> Dataset | None:
        """The kNN bank's dataset (built on first use): the training set unless the module has its own; ``None``
        without labels."""
        self.setup()
        return self._bank

    @property
    def has_labels(self) -> bool:
        return self.num_classes > 0 and self._val is not None

    # -- loaders ----------------------------------------------------------------------------------------------------
    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _require_one_batch(self, images: int, whose: str = "the") -> None:
        """Refuse a global batch larger than the ``images`` training images."""
        _, world = self._rank_and_world()
        if images < self.batch_size * world:
            raise UserError(
                f"data.batch_size={self.batch_size} × {world} device(s) is more than {whose} {images} training "
                f"images: not one batch fits; set data.batch_size={max(1, images // world)} or lower"
            )

    def _worker_options(self) -> dict[str, Any]:
        """The DataLoader settings every loader shares: workers, pinned memory on CUDA, persistent workers."""
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory and torch.cuda.is_available(),
            "persistent_workers": self.num_workers > 0,
        }

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        rank, world = self._rank_and_world()
        sampler = ShardedBatchSampler(len(dataset), batch_size, shuffle, self.seed, rank, world)
        # in-memory datasets take a whole batch of indices at once; file datasets one index at a time + collate
        batching = {"batch_size": None, "sampler": sampler} if getattr(dataset, "batched_indexing", False) else {"batch_sampler": sampler}
        return DataLoader(dataset, **batching, **self._worker_options())

    def train_dataloader(self) -> DataLoader:
        self._require_one_batch(len(self.train_set))
        loader = self._loader(self.train_set, self.batch_size, shuffle=True)
        if self._resume_position is not None:  # a resumed run continues its epoch at the next batch
            sampler = loader.batch_sampler if isinstance(loader.batch_sampler, ShardedBatchSampler) else loader.sampler
            sampler.resume_at(**self._resume_position)
            self._resume_position = None
        return loader

    def val_dataloader(self) -> DataLoader | list:
        val = self.val_set
        return self._loader(val, self.eval_batch_size, shuffle=False) if self.has_labels else []

    def bank_dataloader(self, size: int | None = None) -> DataLoader | None:
        """The kNN bank (labelled training images, un-augmented); ``size``: a stratified subset of that many,
        the same every time (seeded by ``seed``)."""
        bank = self.bank_set
        if bank is None or not self.has_labels:
            return None
        if size is not None and size < len(bank):
            if self._bank_subset is None or len(self._bank_subset) != size:
                self._bank_subset = stratified_subset(bank, size, self.seed)
            bank = self._bank_subset
        return self._loader(bank, self.eval_batch_size, shuffle=False)

    # -- batches on the device --------------------------------------------------------------------------------------
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
        index in the epoch, so that a resumed run draws the same views as the uninterrupted one and every epoch
        draws fresh ones."""
        trainer = self.trainer
        batch = batches_fetched(trainer)  # this batch's index: the loop counts it just after this hook
        return hash((self.seed, trainer.global_rank, trainer.current_epoch, batch)) & (2**63 - 1)

    def state_dict(self) -> dict[str, Any]:
        """Saved with every checkpoint: the seed and the position in the training data (epoch, batches done), so
        that a run resumed from a checkpoint written mid-epoch continues that epoch at its next batch."""
        state: dict[str, Any] = {"seed": self.seed}
        done = batches_consumed(self.trainer)
        if done is not None:
            state["position"] = {"epoch": self.trainer.current_epoch, "batches_done": done}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state.get("seed", self.seed)
        self._resume_position = state.get("position")
