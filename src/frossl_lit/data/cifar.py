"""CIFAR-10 and CIFAR-100 from their official python-pickle layouts (no checksum insisted on for local copies)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from frossl_lit.data.memory import InMemoryDataModule
from frossl_lit.runtime.errors import DataNotFoundError, UserError


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
        raise DataNotFoundError(
            f"{path} is not a readable CIFAR pickle batch ({type(error).__name__}: {error}). It may be truncated "
            f"or corrupt: delete it and re-create the dataset (data.download=true where a network exists, or "
            f"../shared/tools/cifar10_from_jpg.py for CIFAR-10)."
        ) from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataNotFoundError(
            f"{path}: expected 'data' of shape (N, 3072) and N labels, found data {data.shape} and "
            f"{len(labels)} labels; this is not a CIFAR batch file."
        )
    return data.reshape(-1, 3, 32, 32), labels


class CIFARDataModule(InMemoryDataModule):
    """CIFAR-10/100. ``root`` may be the folder holding ``cifar-10-batches-py`` (torchvision's convention) or
    that folder itself.

    Validation is the official test batch; with ``holdout_fraction > 0`` it is instead a stratified, seeded
    fraction carved from the training batches (for copies without a test batch, such as the one
    ``../shared/tools/cifar10_from_jpg.py`` makes). ``train_fraction < 1`` then pretrains on a stratified, seeded
    subset of the remaining training images (the kNN bank is that subset too).
    """

    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_file = "test_batch"
    label_key = "labels"
    num_classes = 10
    downloader = "CIFAR10"

    def __init__(
        self,
        *args,
        root: str,
        download: bool = False,
        holdout_fraction: float = 0.0,
        train_fraction: float = 1.0,
        split_seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= holdout_fraction < 1.0:
            raise ValueError(f"data.holdout_fraction={holdout_fraction} must lie in [0, 1)")
        if not 0.0 < train_fraction <= 1.0:
            raise ValueError(f"data.train_fraction={train_fraction} must lie in (0, 1]")
        self.root, self.download = Path(root).expanduser(), download
        self.holdout_fraction, self.train_fraction, self.split_seed = holdout_fraction, train_fraction, split_seed
        self.directory = self._locate()

    def _locate(self) -> Path:
        for candidate in (self.root / self.folder, self.root):
            if all((candidate / name).is_file() for name in self.train_files):
                return candidate
        if self.download:
            import torchvision

            getattr(torchvision.datasets, self.downloader)(str(self.root), train=True, download=True)
            getattr(torchvision.datasets, self.downloader)(str(self.root), train=False, download=True)
            return self.root / self.folder
        missing = [name for name in self.train_files if not (self.root / self.folder / name).is_file()]
        raise DataNotFoundError(
            f"{self.downloader} not found: looked for {self.root / self.folder} (missing: {', '.join(missing)}); "
            f"to download it (needs a network) add data.download=true; to use a copy elsewhere set "
            f"data.root=/path/to/folder (the folder that holds {self.folder}/); offline CIFAR-10 from the JPEG archive: "
            f"python ../shared/tools/cifar10_from_jpg.py ../shared/data/cifar10-train-jpg.tar.gz DIR, then data.root=DIR "
            f"data.holdout_fraction=0.1"
        )

    def load(self):
        parts = [_read_batch(self.directory / name, self.label_key) for name in self.train_files]
        train_x = np.concatenate([p[0] for p in parts])
        train_y = np.concatenate([p[1] for p in parts])
        if self.holdout_fraction > 0:
            from sklearn.model_selection import train_test_split

            held_out, classes = int(np.ceil(self.holdout_fraction * len(train_y))), len(np.unique(train_y))
            if held_out < classes:
                raise UserError(
                    f"data.holdout_fraction={self.holdout_fraction} holds out {held_out} of the {len(train_y)} training "
                    f"images, fewer than the {classes} classes a stratified split needs; raise it to at least "
                    f"{classes / len(train_y):.3g}"
                )
            train_idx, val_idx = train_test_split(
                np.arange(len(train_y)), test_size=self.holdout_fraction, stratify=train_y, random_state=self.split_seed
            )
            val_x, val_y = train_x[val_idx], train_y[val_idx]
            train_x, train_y = train_x[train_idx], train_y[train_idx]
        else:
            test_path = self.directory / self.test_file
            if not test_path.is_file():
                raise DataNotFoundError(
                    f"{test_path} is missing, so there is no validation split. Either restore the official test "
                    f"batch, or carve validation from training with data.holdout_fraction=0.1."
                )
            val_x, val_y = _read_batch(test_path, self.label_key)
        if self.train_fraction < 1.0:  # a stratified, seeded subset for short studies (validation untouched)
            from sklearn.model_selection import train_test_split

            keep, _ = train_test_split(
                np.arange(len(train_y)), train_size=self.train_fraction, stratify=train_y, random_state=self.split_seed
            )
            train_x, train_y = train_x[np.sort(keep)], train_y[np.sort(keep)]
        as_tensor = torch.from_numpy
        return as_tensor(train_x), as_tensor(train_y), as_tensor(np.ascontiguousarray(val_x)), as_tensor(val_y)


class CIFAR100DataModule(CIFARDataModule):
    folder = "cifar-100-python"
    train_files = ("train",)
    test_file = "test"
    label_key = "fine_labels"
    num_classes = 100
    downloader = "CIFAR100"
