"""Train from a LitData stream (``data.format=litdata data.stream=DIR``): :class:`StreamingDataModule`.

Training shuffles chunk order and items within chunks (LitData's shuffle, seeded by ``data.seed`` and the epoch),
gives every DDP rank (over all nodes) a disjoint share of equal length (``drop_last``), and resumes mid-epoch from
the loader's state, saved with the DataModule's in every checkpoint as of the batches training consumed.
Evaluation splits (validation and the kNN bank) are read by index in order, with the same rank striding as the
other formats, so metrics over ranks stay exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from frossl_lit.data.base import SSLDataModule
from frossl_lit.data.decode import Crop, decode_views, eval_crop, view_crops
from frossl_lit.data.streams.layout import META_FILE, is_url, labels_file, read_labels, read_text, split_dir
from frossl_lit.data.streams.s3 import check as check_s3
from frossl_lit.data.streams.s3 import is_s3
from frossl_lit.runtime.errors import DataNotFoundError, UserError
from frossl_lit.runtime.loop_position import batches_consumed


class StreamItems(Dataset):
    """A split of a stream read by index (evaluation and the kNN bank): ``(image, label)`` where image is the
    uint8 array, or for encoded files the evaluation crop (``crop``)."""

    def __init__(self, location: str, labels: np.ndarray, crop: Crop | None = None, cache_dir: str | None = None) -> None:
        self.location, self.crop, self.cache_dir = location, crop, cache_dir
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self._stream = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict:  # workers open their own reader
        return {**self.__dict__, "_stream": None}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._stream is None:
            from litdata import StreamingDataset

            self._stream = StreamingDataset(self.location, cache_dir=self.cache_dir)
        image = self._stream[int(index)]["image"]
        if self.crop is not None:
            return decode_views(bytes(image), [self.crop])[0], self.labels[index]
        return torch.from_numpy(np.asarray(image)), self.labels[index]


class _TrainItem:
    """LitData transform of a training item: ``(image or per-view crops, label)``."""

    def __init__(self, crops: list[Crop] | None) -> None:
        self.crops = crops

    def __call__(self, item: dict) -> tuple[Any, int]:
        if self.crops is not None:
            return tuple(decode_views(bytes(item["image"]), self.crops)), item["label"]
        return torch.from_numpy(np.asarray(item["image"])), item["label"]


def _train_loader_class():
    from litdata import StreamingDataLoader

    class TrainLoader(StreamingDataLoader):
        """LitData's loader, whose state counts the batches training consumed: Lightning fetches a batch ahead,
        so the loader's own count (batches yielded) would skip one batch on resume."""

        consumed = None  # () -> batches of this epoch training consumed, or None outside a fit

        def state_dict(self) -> dict[str, Any]:
            done = self.consumed() if self.consumed is not None else None
            if done is None:
                return super().state_dict()
            if done >= len(self):  # the epoch is over: the next starts afresh (reshuffled)
                return {"current_epoch": self.current_epoch, "epoch_complete": True}
            samples = done * self.batch_size
            return {
                "dataset": self.dataset.state_dict(samples, self.num_workers, self.batch_size),
                "current_epoch": self.current_epoch,
                "num_samples_yielded": samples,
                "latest_worker_idx": (done - 1) % max(1, self.num_workers),
            }

        def load_state_dict(self, state: dict[str, Any]) -> None:
            if state.get("epoch_complete"):
                self.current_epoch, self.restore = state["current_epoch"], False
                return
            super().load_state_dict(state)

    return TrainLoader


def _with_this_cache(state: dict[str, Any], dataset) -> dict[str, Any]:
    """A loader state saved while streaming a URL, with this process's chunk cache in place of the saved run's.

    LitData records where it cached a URL's chunks and refuses a state whose cache folder differs, so a run resumed
    on another node or with another ``data.cache_dir`` (a job's own scratch disk) would stop. The cache only holds
    copies of the URL's chunks, which the state's URL still names (and LitData still checks): the position is the
    same. Local streams keep their state as saved (their folder is the data itself)."""
    saved = state.get("dataset")
    url = getattr(getattr(dataset, "input_dir", None), "url", None)
    if not isinstance(saved, dict) or not url or saved.get("input_dir_url") != url:
        return state
    here = {"input_dir_path": dataset.input_dir.path, "cache_dir_path": getattr(dataset.cache_dir, "path", None)}
    return {**state, "dataset": {**saved, **here}}


class StreamingDataModule(SSLDataModule):
    """Train from a stream written by ``python -m frossl_lit.prepare`` (``data.format=litdata data.stream=DIR``).

    Built by :func:`frossl_lit.data.datamodule` in place of the dataset's own module: the dataset's config keys
    that only locate its native files (``root``, ``holdout_fraction``, …) are accepted and unused; the recipe, batch
    sizes, workers, seed and evaluation crop (``eval_resize``) are the dataset config's as usual.
    """

    def __init__(
        self,
        *args,
        stream: str | None = None,
        cache_dir: str | None = None,
        fit_small_images: bool = True,
        eval_resize: int | None = None,
        **source_keys,
    ) -> None:
        shared = ("augment", "batch_size", "eval_batch_size", "num_workers", "pin_memory", "seed")
        super().__init__(*args, **{k: v for k, v in source_keys.items() if k in shared}, format="litdata", stream=stream)
        if not stream:
            raise UserError("data.format=litdata needs data.stream=DIR (a folder written by python -m frossl_lit.prepare, or an s3:// URL)")
        stream = str(stream).rstrip("/")
        self.stream = stream if is_url(stream) else str(Path(stream).expanduser().resolve())
        self.cache_dir = cache_dir
        self.eval_resize = eval_resize  # an image folder's evaluation resize (data.eval_resize), as from its files
        if is_s3(self.stream):  # endpoint, credentials and bucket, before LitData's long-retrying client meets them
            check_s3(self.stream)
        try:
            self.meta = json.loads(read_text(f"{self.stream}/{META_FILE}"))
        except FileNotFoundError:
            raise DataNotFoundError(
                f"{self.stream} holds no stream ({META_FILE} missing). Write one first: python -m frossl_lit.prepare "
                f"data=<dataset> data.root=<its files> out={self.stream}"
            ) from None
        except ImportError as error:
            raise UserError(f"reading {self.stream} needs a filesystem package: {error} (e.g. pip install s3fs)") from None
        self.encoded = self.meta["images"] == "encoded"
        self._loader_state: dict | None = None
        self._train_loader: DataLoader | None = None
        self.num_classes = int(self.meta["num_classes"])
        self.class_names = self.meta.get("class_names", [])
        if self.encoded and fit_small_images and self.meta.get("short_side"):
            self.augment = self.augment.fitted_to(int(self.meta["short_side"]), self.stream)

    def _items(self, split: str, crop: Crop | None = None) -> StreamItems:
        return StreamItems(split_dir(self.stream, split), read_labels(labels_file(self.stream, split)), crop, self.cache_dir)

    def _eval_crop(self) -> Crop | None:
        return eval_crop(self.augment.eval_image_size, self.eval_resize) if self.encoded else None

    def train_dataset(self) -> Dataset:
        return self._items("train")

    def val_dataset(self) -> Dataset | None:
        return self._items("val", self._eval_crop()) if "val" in self.meta["splits"] else None

    def bank_dataset(self) -> Dataset | None:
        return self._items("bank" if "bank" in self.meta["splits"] else "train", self._eval_crop())

    def train_dataloader(self) -> DataLoader:
        from litdata import StreamingDataset

        crops = view_crops(self.augment.view_recipes()) if self.encoded else None
        dataset = StreamingDataset(
            split_dir(self.stream, "train"), cache_dir=self.cache_dir, shuffle=True, drop_last=True, seed=self.seed,
            transform=_TrainItem(crops),
        )
        self._require_one_batch(self.meta["splits"]["train"], "the stream's")
        loader = _train_loader_class()(dataset, batch_size=self.batch_size, drop_last=True, **self._worker_options())
        trainer = self.trainer
        if trainer is not None:
            loader.consumed = lambda: batches_consumed(trainer)
        if self._loader_state is not None:  # a resumed run: continue the epoch after the batches it had trained on
            loader.load_state_dict(_with_this_cache(self._loader_state, dataset))
            self._loader_state = None
        self._train_loader = loader
        return loader

    def make_views(self, images):
        return self.augment.colour_views(images) if self.encoded else self.augment.views(images)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._train_loader is not None and self._train_loader.consumed is not None:
            state["stream_loader"] = self._train_loader.state_dict()  # as of the batches training consumed
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._resume_position = None  # the stream's loader state holds the position
        self._loader_state = state.get("stream_loader")
