"""Write any DataModule's splits as a LitData stream (:func:`write_stream`, run by ``python -m frossl_lit.prepare``)
into a local folder or S3 (:mod:`.s3`); the layout is :mod:`frossl_lit.data.streams`'. Only that command imports
this module."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from frossl_lit.data.base import SSLDataModule
from frossl_lit.data.streams.layout import META_FILE, SPLITS, is_url, labels_file, split_dir
from frossl_lit.data.streams.s3 import check as check_s3
from frossl_lit.data.streams.s3 import holds_objects, is_s3, upload_file, upload_folder
from frossl_lit.runtime.errors import UserError


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
    bank into a stream at ``out``, a local folder or an ``s3://bucket/prefix`` URL; returns the metadata written
    beside them. For S3 each split is written to a temporary folder (``TMPDIR``), uploaded and deleted before the
    next, and the metadata file goes last: a stream whose upload broke off holds no ``frossl_meta.json``."""
    if is_s3(out):
        out = out.rstrip("/")
        check_s3(out)  # endpoint, credentials and bucket, before any conversion
        if holds_objects(out):
            raise UserError(f"{out} already holds objects; delete them (aws s3 rm --recursive {out}) or choose another out=")
        with tempfile.TemporaryDirectory(prefix="frossl-stream-") as staging:
            return _write(datamodule, Path(staging), chunk_bytes, progress, source, upload_to=out)
    if is_url(out):
        raise UserError(f"out={out}: streams are written to a local folder or to s3://; write one locally, then copy it (e.g. gsutil rsync)")
    out_path = Path(out).expanduser()
    if (out_path / META_FILE).exists() or any((out_path / s).exists() for s in SPLITS):
        raise UserError(f"{out_path} already holds a stream; delete it or choose another out=")
    return _write(datamodule, out_path, chunk_bytes, progress, source)


def _write(datamodule: SSLDataModule, out_path: Path, chunk_bytes: str, progress: bool, source: dict | None,
           upload_to: str | None = None) -> dict:
    datamodule.setup("fit")
    train = datamodule.train_set
    splits = {"train": train}
    if datamodule.has_labels:
        splits["val"] = datamodule.val_set
        bank = datamodule.bank_set
        if bank is not None and bank is not train:
            splits["bank"] = bank
    kinds = {}
    for name, dataset in splits.items():
        kinds[name] = write_split(dataset, str(out_path / name), chunk_bytes, progress, name)
        if upload_to is not None:
            upload_folder(out_path / name, split_dir(upload_to, name), progress, name)
            upload_file(out_path / f"{name}_labels.npy", labels_file(upload_to, name))
            shutil.rmtree(out_path / name)
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
    if upload_to is not None:
        upload_file(out_path / META_FILE, f"{upload_to}/{META_FILE}")
    return meta


def _median_short_side(dataset: Dataset, probes: int = 32) -> int | None:
    from frossl_lit.data.folder import median_short_side

    source, indices = _unwrap(dataset)
    return median_short_side([source.paths[i] for i in indices], probes)
