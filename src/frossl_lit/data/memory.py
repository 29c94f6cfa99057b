"""Datasets held in memory as uint8 tensors (digits, CIFAR): :class:`TensorImages`, indexed a whole batch at a time
(no per-sample Python, no collate), and :class:`InMemoryDataModule`, whose subclasses only load the arrays."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch.utils.data import Dataset

from frossl_lit.data.base import SSLDataModule
from frossl_lit.runtime.errors import UserError


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

    def take(self, index: torch.Tensor) -> TensorImages:
        """The images at ``index``, still one tensor (see :func:`frossl_lit.data.base.stratified_subset`)."""
        return TensorImages(self.images[index], self.labels[index])


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

    def load(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Return ``(train_images, train_labels, val_images, val_labels)``, images uint8 (N, C, H, W)."""
        raise NotImplementedError

    def train_dataset(self) -> Dataset:
        train_x, train_y, _, _ = self._arrays
        return TensorImages(train_x, train_y)

    def val_dataset(self) -> Dataset | None:
        _, _, val_x, val_y = self._arrays
        return TensorImages(val_x, val_y) if val_x is not None else None

    @functools.cached_property
    def _arrays(self) -> tuple[torch.Tensor | None, ...]:
        """:meth:`load`'s arrays, read once; with ``tune_fraction`` the tuning split in place of validation."""
        train_x, train_y, val_x, val_y = self.load()
        if self.tune_fraction > 0 and train_y is not None:  # select on training images, never the reported split
            train_x, train_y, val_x, val_y = self._carve_tuning_split(train_x, train_y)
        return train_x, train_y, val_x, val_y

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
