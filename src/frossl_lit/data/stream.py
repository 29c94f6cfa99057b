"""LitData streaming: any DataModule's splits as LitData chunks (:func:`write_stream`, run by
``python -m frossl_lit.prepare``), and :class:`StreamingDataModule`, which trains from them (``data.format=litdata
data.stream=DIR``, a local folder or an ``s3://`` / ``gs://`` URL that LitData streams and caches).

Layout of a stream ``DIR``: ``DIR/train`` (and ``DIR/val``, ``DIR/bank`` when the source has them) hold LitData chunks
of items ``{"image", "label", "index"}``; ``DIR/frossl_meta.json`` the number and names of classes, how images are
stored and the source's config. Images are stored as the source holds them: an in-memory dataset's uint8 arrays
(cropped and coloured on the device, as from memory), an image folder's files byte for byte (decoded crop-aware in
the workers, as from the folder: :mod:`.decode`). Nothing is re-encoded.

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
from frossl_lit.data.decode import Crop, decode_views, eval_resize
from frossl_lit.runtime.errors import DataNotFoundError, UserError

META_FILE = "frossl_meta.json"
FORMATS = ("native", "litdata")


def _is_url(location: str) -> bool:
    return "://" in location


def _read_text(location: str) -> str:
    """A small file from a local path or a URL (fsspec: s3:// needs s3fs, gs:// gcsfs)."""
    if not _is_url(location):
        return Path(location).expanduser().read_text()
    import fsspec

    with fsspec.open(location, "r") as handle:
        return handle.read()


def _read_labels(location: str) -> np.ndarray:
    if not _is_url(location):
        return np.load(Path(location).expanduser())
    import io

    import fsspec

    with fsspec.open(location, "rb") as handle:
        return np.load(io.BytesIO(handle.read()))


# -- writing -----------------------------------------------------------------------------------------------------
def _unwrap(dataset: Dataset) -> tuple[Dataset, list[int]]:
    """The dataset holding the images, and the indices into it (a ``Subset`` is followed)."""
    from torch.utils.data import Subset

    indices = list(range(len(dataset)))
    while isinstance(dataset, Subset):
        indices = [dataset.indices[i] for i in indices]
        dataset = dataset.dataset
    return dataset, indices


def _records(dataset: Dataset, block: int = 1024):
    """``(image as stored, label, how)`` for every item in order: an image file's bytes (``encoded``) or a uint8
    C×H×W array (``array``, read a block of indices at a time from in-memory datasets)."""
    source, indices = _unwrap(dataset)
    if hasattr(source, "paths"):
        for index in indices:
            yield Path(source.paths[index]).read_bytes(), int(source.labels[index]), "encoded"
    elif getattr(source, "batched_indexing", False):
        for start in range(0, len(indices), block):
            images, labels = source[torch.tensor(indices[start : start + block])]
            for image, label in zip(images.numpy(), labels.tolist()):
                yield np.ascontiguousarray(image), int(label), "array"
    else:
        raise UserError(f"{type(source).__name__} is neither image files nor in-memory images: it cannot be streamed")


def write_split(dataset: Dataset, out: str, chunk_bytes: str = "64MB", progress: bool = True, label: str = "") -> str:
    """Write one split as LitData chunks in ``out`` (items in the dataset's order, labels also in
    ``<out>_labels.npy``); returns how images are stored (``encoded`` or ``array``)."""
    from litdata.streaming.writer import BinaryWriter
    from tqdm.auto import tqdm

    Path(out).mkdir(parents=True, exist_ok=True)
    writer = BinaryWriter(out, chunk_bytes=chunk_bytes)
    kinds, labels = set(), []
    records = tqdm(_records(dataset), total=len(dataset), desc=f"writing {label or out}", unit="img", disable=not progress, mininterval=1.0)
    for position, (image, target, how) in enumerate(records):
        writer.add_item(position, {"image": image, "label": target, "index": position})
        labels.append(target)
        kinds.add(how)
    writer.done()
    writer.merge()
    np.save(Path(out).parent / f"{Path(out).name}_labels.npy", np.asarray(labels, dtype=np.int64))
    return kinds.pop() if kinds else "array"


def write_stream(datamodule: SSLDataModule, out: str, chunk_bytes: str = "64MB", progress: bool = True, source: dict | None = None) -> dict:
    """Convert a DataModule's training split, its validation split and (when it differs from training) its kNN
    bank into a stream at ``out``; returns the metadata written beside them."""
    out_path = Path(out).expanduser()
    if _is_url(out):
        raise UserError(f"out={out}: write the stream to a local folder, then copy it to object storage (e.g. aws s3 sync)")
    if (out_path / META_FILE).exists() or any((out_path / s).exists() for s in ("train", "val", "bank")):
        raise UserError(f"{out_path} already holds a stream; delete it or choose another out=")
    datamodule.setup("fit")
    train = datamodule._train
    splits = {"train": train}
    if datamodule.has_labels:
        splits["val"] = datamodule._val
        bank = datamodule.bank_dataset()
        if bank is not None and bank is not train:
            splits["bank"] = bank
    kinds = {name: write_split(dataset, str(out_path / name), chunk_bytes, progress, name) for name, dataset in splits.items()}
    if len(set(kinds.values())) != 1:
        raise UserError(f"the splits store images differently ({kinds}); this DataModule cannot be streamed")
    meta = {
        "version": 1,
        "images": kinds["train"],
        "num_classes": int(datamodule.num_classes) if datamodule.has_labels else 0,
        "class_names": list(getattr(datamodule, "class_names", []) or []),
        "splits": {name: len(dataset) for name, dataset in splits.items()},
        "short_side": _median_short_side(train) if kinds["train"] == "encoded" else None,
        "source": source or {},
    }
    (out_path / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def _median_short_side(dataset: Dataset, probes: int = 32) -> int | None:
    from frossl_lit.data.folder import median_short_side

    source, indices = _unwrap(dataset)
    return median_short_side([source.paths[i] for i in indices], probes)


# -- reading -----------------------------------------------------------------------------------------------------
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


class StreamingDataModule(SSLDataModule):
    """Train from a stream written by ``python -m frossl_lit.prepare`` (``data.format=litdata data.stream=DIR``).

    Built by :func:`frossl_lit.data.datamodule` in place of the dataset's own module: the dataset's config keys
    that only locate its native files (``root``, ``holdout_fraction``, …) are accepted and unused; the recipe, batch
    sizes, workers and seed are the dataset config's as usual.
    """

    reads_streams = True

    def __init__(
        self,
        *args,
        stream: str | None = None,
        cache_dir: str | None = None,
        fit_small_images: bool = True,
        **source_keys,
    ) -> None:
        shared = ("augment", "batch_size", "eval_batch_size", "num_workers", "pin_memory", "seed")
        super().__init__(*args, **{k: v for k, v in source_keys.items() if k in shared}, format="litdata", stream=stream)
        if not stream:
            raise UserError("data.format=litdata needs data.stream=DIR (a folder written by python -m frossl_lit.prepare, or an s3:// URL)")
        stream = str(stream).rstrip("/")
        self.stream = stream if _is_url(stream) else str(Path(stream).expanduser().resolve())
        self.cache_dir = cache_dir
        try:
            self.meta = json.loads(_read_text(f"{self.stream}/{META_FILE}"))
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
            from frossl_lit.data.folder import fit_recipe_to_images

            fit_recipe_to_images(self.augment, int(self.meta["short_side"]), self.stream)

    def _eval_crop(self) -> Crop | None:
        if not self.encoded:
            return None
        size = self.augment.eval_size or self.augment.recipes[0].size
        return Crop(size, random=False, fraction=size / eval_resize(size))

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            splits = self.meta["splits"]
            self._train = StreamItems(f"{self.stream}/train", _read_labels(f"{self.stream}/train_labels.npy"), None, self.cache_dir)
            if self.num_classes and "val" in splits:
                self._val = StreamItems(f"{self.stream}/val", _read_labels(f"{self.stream}/val_labels.npy"), self._eval_crop(), self.cache_dir)
                bank = "bank" if "bank" in splits else "train"
                self._bank = StreamItems(f"{self.stream}/{bank}", _read_labels(f"{self.stream}/{bank}_labels.npy"), self._eval_crop(), self.cache_dir)

    def bank_dataset(self) -> Dataset | None:
        return getattr(self, "_bank", None)

    def train_dataloader(self) -> DataLoader:
        from litdata import StreamingDataset

        self.setup()
        crops = [Crop(r.size, tuple(r.scale), tuple(r.ratio), r.random_resized_crop) for r in self.augment.view_recipes()] if self.encoded else None
        dataset = StreamingDataset(
            f"{self.stream}/train", cache_dir=self.cache_dir, shuffle=True, drop_last=True, seed=self.seed, transform=_TrainItem(crops)
        )
        _, world = self._rank_and_world()
        images = self.meta["splits"]["train"]
        if images < self.batch_size * world:
            raise UserError(
                f"data.batch_size={self.batch_size} × {world} device(s) is more than the stream's {images} training "
                f"images: not one batch fits; set data.batch_size={max(1, images // world)} or lower"
            )
        loader = _train_loader_class()(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            drop_last=True,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )
        trainer = self.trainer
        if trainer is not None and hasattr(trainer, "fit_loop"):
            loader.consumed = lambda: int(trainer.fit_loop.epoch_loop.batch_progress.current.processed) if trainer.state.fn == "fit" else None
        if self._loader_state is not None:  # a resumed run: continue the epoch after the batches it had trained on
            loader.load_state_dict(self._loader_state)
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


def datamodule(cfg) -> SSLDataModule:
    """The DataModule a ``data`` config describes: its own ``_target_`` (``data.format=native``), or a
    :class:`StreamingDataModule` reading ``data.stream`` (``data.format=litdata``)."""
    from hydra.utils import instantiate

    fmt = cfg.get("format", "native")
    if fmt not in FORMATS:
        raise UserError(f"data.format={fmt!r} must be one of {', '.join(FORMATS)}")
    if fmt == "litdata":
        return instantiate(cfg, _target_=f"{__name__}.StreamingDataModule")
    return instantiate(cfg)
