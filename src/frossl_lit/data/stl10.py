"""STL-10 from its official binary layout (``stl10_binary/*.bin``), memory-mapped.

Pretraining uses train (5,000 labelled) + unlabeled (100,000); the probe learns from the labelled part of each
batch (unlabelled samples carry label -1 and are ignored), kNN uses train as the bank, and test is validation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from frossl_lit.data.base import SSLDataModule
from frossl_lit.runtime.errors import DataNotFoundError

PIXELS = 3 * 96 * 96


def read_images(path: Path) -> np.ndarray:
    """Memory-map an STL-10 ``*_X.bin`` (column-major 3×96×96 uint8 images) as (N, 3, 96, 96) row-major views."""
    if not path.is_file():
        raise DataNotFoundError(f"{path} is missing")
    size = path.stat().st_size
    if size == 0 or size % PIXELS:
        raise DataNotFoundError(
            f"{path} has {size} bytes, not a whole number of 96×96×3 images ({PIXELS} bytes each): the file is "
            f"truncated or not an STL-10 image file. Re-extract stl10_binary.tar.gz or re-download (data.download=true)."
        )
    return np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)


def read_labels(path: Path, count: int) -> np.ndarray:
    if not path.is_file():
        raise DataNotFoundError(f"{path} is missing")
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1  # files store 1..10
    if len(labels) != count or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataNotFoundError(
            f"{path} holds {len(labels)} labels in {labels.min(initial=0) + 1}..{labels.max(initial=0) + 1}; expected "
            f"{count} labels in 1..10 to match its image file. Re-extract the STL-10 archive."
        )
    return labels


class MappedImages(Dataset):
    """A memory-mapped uint8 image array indexed a batch at a time (copies only the batch)."""

    batched_indexing = True

    def __init__(self, images: np.ndarray, labels: np.ndarray | None) -> None:
        self.images = images
        self.labels = torch.from_numpy(labels) if labels is not None else torch.full((len(images),), -1, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        order = np.sort(index.numpy())  # memmap reads fastest in file order; the batch order is irrelevant
        return torch.from_numpy(np.ascontiguousarray(self.images[order])), self.labels[torch.from_numpy(order)]


class _Concat(ConcatDataset):
    batched_indexing = True

    def __getitem__(self, index: torch.Tensor):
        parts_x, parts_y, offset = [], [], 0
        for dataset in self.datasets:
            mine = index[(index >= offset) & (index < offset + len(dataset))] - offset
            if len(mine):
                x, y = dataset[mine]
                parts_x.append(x)
                parts_y.append(y)
            offset += len(dataset)
        return torch.cat(parts_x), torch.cat(parts_y)


class STL10DataModule(SSLDataModule):
    num_classes = 10

    def __init__(self, *args, root: str, download: bool = False, use_unlabeled: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.root, self.use_unlabeled = Path(root).expanduser(), use_unlabeled
        self.directory = self.root / "stl10_binary" if (self.root / "stl10_binary").is_dir() else self.root
        needed = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"] + (["unlabeled_X.bin"] if use_unlabeled else [])
        missing = [name for name in needed if not (self.directory / name).is_file()]
        if missing and download:
            import torchvision

            torchvision.datasets.STL10(str(self.root), split="train+unlabeled", download=True)
            self.directory, missing = self.root / "stl10_binary", []
        if missing:
            raise DataNotFoundError(
                f"STL-10 not found: looked in {self.root / 'stl10_binary'} (missing: {', '.join(missing)}).\n"
                f"  - to download it (needs a network, 2.6 GB): add data.download=true\n"
                f"  - to use a copy elsewhere: data.root=/path/to/folder (the folder that holds stl10_binary/)\n"
                f"  - without the unlabeled split: data.use_unlabeled=false"
            )

    def _labelled(self, split: str) -> MappedImages:
        images = read_images(self.directory / f"{split}_X.bin")
        return MappedImages(images, read_labels(self.directory / f"{split}_y.bin", len(images)))

    def train_dataset(self) -> Dataset:
        train = self._labelled("train")
        if not self.use_unlabeled:
            return train
        return _Concat([train, MappedImages(read_images(self.directory / "unlabeled_X.bin"), None)])

    def val_dataset(self) -> Dataset:
        return self._labelled("test")

    def bank_dataset(self) -> Dataset:
        return self._labelled("train")
